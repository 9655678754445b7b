"""The original SplineCam's ``splinecam.compute``: :mod:`splinecam.compat.compute`."""
import sys

from splinecam.compat import compute as _module

sys.modules[__name__] = _module
