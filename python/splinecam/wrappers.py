"""The original SplineCam's ``splinecam.wrappers``: :mod:`splinecam.compat.wrappers`."""
import sys

from splinecam.compat import wrappers as _module

sys.modules[__name__] = _module
