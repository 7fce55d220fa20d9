"""Data set readers: one module per data set, one shared record type.

Each reader handles the oddities its data README lists and names them in its
module docstring. Point data sets yield :class:`~nucleikit.io.datasets.base.PointSample`, label
data sets :class:`~nucleikit.io.datasets.base.LabelSample`.
"""

from nucleikit.io.datasets.base import LabelSample, PointSample, find_shared_dir
from nucleikit.io.datasets.crchisto import CRCHisto
from nucleikit.io.datasets.dsb2018 import DSB2018
from nucleikit.io.datasets.folder import point_folder
from nucleikit.io.datasets.monuseg import MoNuSeg

__all__ = ["CRCHisto", "DSB2018", "LabelSample", "MoNuSeg", "PointSample", "find_shared_dir", "point_folder"]
