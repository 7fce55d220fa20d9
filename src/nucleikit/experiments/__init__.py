"""Transfer and data-mixing studies of Xing et al. (2019) on any collection of point data sets.

``nucleikit experiment NAME --config FILE -o OUTDIR`` runs one study
(:data:`nucleikit.experiments.registry.STUDIES`): the configuration is parsed
and the data sets are loaded and checked first (:mod:`.config`,
:mod:`.collection`), then each training ("cell", :mod:`.cells`) runs in its
own resumable folder, and the report (:mod:`.report`) is written from the
measured figures.
"""
