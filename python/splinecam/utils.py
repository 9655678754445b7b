"""The original SplineCam's ``splinecam.utils``: :mod:`splinecam.compat.utils`."""
import sys

from splinecam.compat import utils as _module

sys.modules[__name__] = _module
