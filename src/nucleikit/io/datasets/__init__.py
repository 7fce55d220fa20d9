"""Data set readers: one module per data set, one shared record type.

Each reader handles the oddities its data README lists and names them in its
module docstring. Point data sets yield :class:`~nucleikit.io.datasets.base.PointSample`.
"""

from nucleikit.io.datasets.base import PointSample, find_shared_dir
from nucleikit.io.datasets.crchisto import CRCHisto

__all__ = ["CRCHisto", "PointSample", "find_shared_dir"]
