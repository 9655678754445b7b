"""splinecam: exact linear regions and decision boundaries of 2-D slices of
piecewise-linear neural networks.

    import splinecam
    sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    P = splinecam.partition(model.eval(), sl)
    P.num_regions, P.polygons(), P.decision_boundary, P.plot()
"""
from splinecam._core import build_info as _core_build_info
from splinecam._core import cuda_device_count as _cuda_device_count
from splinecam.slice import Slice
from splinecam.network import SUPPORTED_MODULES, UnsupportedModelError
from splinecam.driver import MemoryLimitExceeded, partition, partition_tiled
from splinecam.result import Partition

__version__ = "0.1.0"

__all__ = ["Slice", "partition", "Partition", "partition_tiled", "MemoryLimitExceeded",
           "build_info", "cuda_available", "SUPPORTED_MODULES", "UnsupportedModelError"]


def build_info() -> dict:
    """How the extension was built: ``version``, ``cuda`` (whether CUDA code was
    compiled), ``cuda_architectures``, ``cuda_version`` and ``compiler``."""
    return dict(_core_build_info())


def cuda_available() -> bool:
    """Whether the extension was built with CUDA and a GPU is usable now."""
    return bool(_core_build_info()["cuda"]) and _cuda_device_count() > 0


def __getattr__(name):
    # Subpackages and the original SplineCam's modules (utils, wrappers, compute, plot)
    # load on first use.
    if name in ("utils", "wrappers", "compute", "plot", "reference", "testing", "zoo", "cli", "geometry", "analysis",
                "compat", "driver", "network", "result", "backends"):
        import importlib
        if name == "backends":
            return importlib.import_module(".driver.backends", __name__)
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'splinecam' has no attribute {name!r}")
