"""Argument and value checks shared by the entry points: one clear sentence per problem,
saying what is wrong and how to fix it (``ValueError``)."""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch

__all__ = ["MAX_RTOL", "MAX_VALUE", "check_rtol", "check_positive_int", "check_memory_limit", "check_partition_args",
           "check_finite_rows", "values_at", "format_bytes"]

#: Largest snapping tolerance :func:`splinecam.partition` accepts. Beyond it, lines
#: farther apart than ``rtol`` times the slice's diameter are merged: visibly wrong.
MAX_RTOL = 1e-4

#: Largest magnitude of a model's value at the slice that a partition computes with:
#: squares and products of values must not overflow float64 (~1.8e308).
MAX_VALUE = 1e150


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_rtol(rtol) -> float:
    """``rtol`` as a float; finite and in ``[0, MAX_RTOL]``."""
    ok = isinstance(rtol, numbers.Real) and not isinstance(rtol, (bool, np.bool_))
    r = float(rtol) if ok else math.nan
    if not (0.0 <= r <= MAX_RTOL):
        raise ValueError(f"rtol must be a finite number in [0, {MAX_RTOL:g}] (the snapping tolerance, relative to "
                         f"each unit's largest value over the slice; the default 1e-10 suits float64); got {rtol!r}")
    return r


def check_positive_int(value, name: str, *, optional: bool = False, what: str = "") -> "int | None":
    """``value`` as an int >= 1 (``None`` passes when ``optional``)."""
    if value is None and optional:
        return None
    if not _is_int(value) or value < 1:
        allowed = "None or a positive integer" if optional else "a positive integer"
        raise ValueError(f"{name} must be {allowed}{f' ({what})' if what else ''}; got {value!r}")
    return int(value)


def check_memory_limit(memory_limit) -> "int | None":
    """``memory_limit`` in bytes as an int >= 1, or ``None`` (the default)."""
    if memory_limit is None:
        return None
    ok = isinstance(memory_limit, numbers.Real) and not isinstance(memory_limit, (bool, np.bool_))
    if not ok or not (1 <= float(memory_limit) < math.inf):
        raise ValueError(f"memory_limit must be a positive number of bytes (e.g. 2 << 30 for 2 GiB), or None for half "
                         f"of the available memory; got {memory_limit!r}")
    return int(memory_limit)


def check_partition_args(rtol=1e-10, memory_limit=None, chunk=32768, threads=None) -> tuple:
    """The numeric arguments of :func:`splinecam.partition`, checked: ``(rtol,
    memory_limit, chunk, threads)``."""
    return (check_rtol(rtol), check_memory_limit(memory_limit),
            check_positive_int(chunk, "chunk", what="vertices per batch of the forward passes"),
            check_positive_int(threads, "threads", optional=True, what="CPU threads for the engine"))


def format_bytes(n) -> str:
    """``n`` bytes in the largest of B, KiB, MiB, GiB that keeps it >= 1."""
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def values_at(net, l: int) -> str:
    """Which values the rows of layer ``l`` of ``net`` hold, for messages."""
    if l > net.num_layers:
        return "at the model's outputs"
    return f"at the input of hidden layer {l} ('{net.layer_names[l - 1]}')"


def check_finite_rows(rows, where: str) -> None:
    """Raise unless every value of ``rows`` (a numpy array or a torch tensor, on any
    device) is finite and at most :data:`MAX_VALUE` in magnitude. Two reductions, no
    temporary of the array's size: ``min`` and ``max`` propagate NaN, and the largest
    magnitude is one of them."""
    if rows is None or (rows.numel() if isinstance(rows, torch.Tensor) else np.size(rows)) == 0:
        return
    if isinstance(rows, torch.Tensor):
        lo, hi = (float(v) for v in torch.aminmax(rows))
    else:
        lo, hi = float(rows.min()), float(rows.max())
    size = math.nan if math.isnan(lo) or math.isnan(hi) else max(-lo, hi)
    if size <= MAX_VALUE:
        return
    if math.isfinite(size):
        what = f"too large to compute with in float64 ({where}: up to {size:.3g}, the limit is {MAX_VALUE:.0e}, " \
               "beyond which products of them overflow)"
    else:
        what = f"not finite ({where}: {'NaN' if math.isnan(size) else 'infinite'}, the forward pass overflows " \
               "float64)"
    raise ValueError(f"the model's values at the slice are {what}: rescale the inputs or the weights, or use a "
                     "smaller slice (zoom in)")
