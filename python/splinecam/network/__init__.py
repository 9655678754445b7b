"""The network side: a torch model traced into affine glue and piecewise-linear
nonlinearities (:mod:`.model`), its per-vertex row layouts and batched evaluation;
what is supported (:mod:`.ops`); traces kept per architecture (:mod:`.cache`)."""
from splinecam.network.model import SUPPORTED_MODULES, Network, RowLayout, UnsupportedModelError

__all__ = ["Network", "RowLayout", "SUPPORTED_MODULES", "UnsupportedModelError"]
