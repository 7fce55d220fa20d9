"""Transfer and data-mixing studies of Xing et al. (2019) on any collection of point data sets.

``nucleikit experiment NAME --config FILE -o OUTDIR`` runs one study
(:data:`nucleikit.experiments.registry.STUDIES`): the configuration is parsed
and the data sets are loaded and checked first (:mod:`.config`,
:mod:`.collection`), then each training ("cell", :mod:`.cells`) runs in its
own resumable folder, and the report (:mod:`.report`) is written from the
measured figures. A study's headline comparison runs for every seed of the
configuration (:mod:`.seeds`: mean, spread, "within the noise"); each report
gives the plateau step of its headline trainings (:mod:`.plateau`), and
:mod:`.summary` turns the committed reports into one verdict per finding of
the paper (``tools/experiments_summary.py``).

Place in the layout: the studies layer, at the top of the data flow next to
``cli``. A study trains (``train``), predicts and scores (``infer``,
``metrics``) and writes reports (``export``), so it sits above all of them;
nothing in the library imports it except the ``nucleikit experiment`` and
``nucleikit train`` commands (``cli``). It stays a package of its own rather
than ``train/experiments.py``: putting it inside ``train`` would make
training depend on inference and reporting.
"""
