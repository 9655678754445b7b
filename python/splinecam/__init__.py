"""splinecam: exact linear regions and decision boundaries of 2-D slices of
piecewise-linear neural networks."""
from ._core import build_info as _core_build_info

__version__ = "0.1.0"


def build_info() -> dict:
    """How the extension was built: version, whether CUDA code was compiled, for which
    architectures and with which CUDA version, and the C++ compiler."""
    return dict(_core_build_info())
