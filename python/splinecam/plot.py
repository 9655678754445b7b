"""``splinecam.plot``: the figures of :mod:`splinecam.analysis.plot`, which also holds the
original SplineCam's ``plot_partition``."""
import sys

from splinecam.analysis import plot as _module

sys.modules[__name__] = _module
