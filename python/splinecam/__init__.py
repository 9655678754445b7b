"""splinecam: exact linear regions and decision boundaries of 2-D slices of
piecewise-linear neural networks.

    import splinecam
    sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    P = splinecam.partition(model.eval(), sl)
    P.num_regions, P.polygons(), P.decision_boundary, P.plot()
"""
import importlib.util as _importlib_util

# torch is needed by nearly every module here, but is deliberately not a declared
# dependency (see pyproject.toml): say so plainly instead of failing deep inside.
if _importlib_util.find_spec("torch") is None:
    raise ImportError(
        "splinecam needs PyTorch (torch >= 2.0), which is not installed.\n"
        "PyTorch is not a declared dependency of splinecam on purpose, so that pip does not "
        "pull in a multi-GB CUDA build you may not want. Install the build you want first:\n"
        "  CPU only:  pip install torch --index-url https://download.pytorch.org/whl/cpu\n"
        "  CUDA:      the command for your CUDA version from https://pytorch.org/get-started/locally/"
    )

try:
    from splinecam._core import build_info as _core_build_info
    from splinecam._core import cuda_device_count as _cuda_device_count
except ModuleNotFoundError as _e:
    if _e.name != __name__ + "._core":
        raise
    raise ImportError(
        "splinecam's compiled extension (splinecam._core) is missing: this looks like a source "
        "checkout that has not been built. Build and install it from the repository root with\n"
        "  pip install -e .     (needs CMake and a C++17 compiler; nvcc too for the CUDA launchers)\n"
        "or\n"
        "  make build           (sets up .venv and does the editable install)"
    ) from None

from splinecam.slice import Slice
from splinecam.network import SUPPORTED_MODULES, UnsupportedModelError
from splinecam.driver import MemoryLimitExceeded, partition, partition_many, partition_tiled
from splinecam.result import Partition

# The version is written once, in pyproject.toml; read it from the installed metadata.
try:
    from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
    from importlib.metadata import version as _metadata_version

    __version__ = _metadata_version("splinecam")
except _PackageNotFoundError:  # pragma: no cover - running from an uninstalled source tree
    __version__ = "0+unknown"

__all__ = ["Slice", "partition", "partition_many", "explore", "Partition", "partition_tiled", "MemoryLimitExceeded",
           "build_info", "cuda_available", "SUPPORTED_MODULES", "UnsupportedModelError"]


def build_info() -> dict:
    """Tell how the compiled extension was built.

    Returns
    -------
    dict
        ``version`` (of the extension), ``cuda`` (bool: whether the CUDA launchers were
        compiled), ``cuda_architectures`` (e.g. ``"80-real,90-real,90-virtual"``),
        ``cuda_version`` and ``compiler``.

    See Also
    --------
    cuda_available : whether a GPU is usable now.

    Examples
    --------
    >>> import splinecam
    >>> sorted(splinecam.build_info())
    ['compiler', 'cuda', 'cuda_architectures', 'cuda_version', 'version']
    """
    return dict(_core_build_info())


def cuda_available() -> bool:
    """Tell whether the extension was built with CUDA and a GPU is usable now.

    Returns
    -------
    bool
        True when the CUDA launchers were compiled and at least one CUDA device is
        visible; then ``splinecam.partition(model.cuda(), slice)`` runs on the GPU.
    """
    return bool(_core_build_info()["cuda"]) and _cuda_device_count() > 0


def __getattr__(name):
    # Subpackages and the original SplineCam's modules (utils, wrappers, compute, plot)
    # load on first use.
    if name == "explore":  # the function; its subpackage is splinecam.explorer
        from splinecam.explorer import explore
        return explore
    if name in ("utils", "wrappers", "compute", "plot", "reference", "testing", "zoo", "cli", "geometry", "analysis",
                "compat", "driver", "network", "result", "backends", "explorer", "io"):
        import importlib
        if name == "backends":
            return importlib.import_module(".driver.backends", __name__)
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'splinecam' has no attribute {name!r}")
