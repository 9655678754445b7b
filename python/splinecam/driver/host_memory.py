"""The host allocator's settings for a partition's many large, short-lived arrays.

Every batch of a forward pass allocates its tensors afresh (torch's CPU allocator does
not cache), and glibc serves allocations above its mmap threshold with fresh pages from
the kernel, returning them on free: every batch then pays a page fault per 4 KiB, which
under a hypervisor costs more than the arithmetic of the batch. Raising the threshold
to its maximum (32 MiB) and the trim threshold keeps those allocations in the heap, so
that the next batch reuses pages that are already mapped. The driver sizes batches to
stay below the threshold (``Network.rows_for``). The engine's own large outputs are
allocated uninitialised (``src/splinecam/host_memory.h``).

:func:`tune` runs once, at the first partition; ``SPLINECAM_TUNE_MALLOC=0`` leaves the
allocator alone. It changes only how the process's heap is reused (memory freed below
the trim threshold stays with the process for reuse), never what is computed.
"""
from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["tune", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

_M_TRIM_THRESHOLD = -1  # mallopt parameters of glibc's malloc.h
_M_MMAP_THRESHOLD = -3

#: Allocations up to this size come from the heap (glibc's largest allowed value).
MMAP_THRESHOLD = 32 << 20
#: Free memory at the top of the heap kept for reuse before it is returned: a few
#: batches' temporaries (each batch's tensors stay near 8 MB). It is part of the fixed
#: overhead above ``memory_limit`` (see the README's "Large slices").
TRIM_THRESHOLD = 128 << 20

_state = {"done": False, "tuned": False}


def tune() -> bool:
    """Set glibc's mmap and trim thresholds once per process (see the module doc);
    whether they are set (False on other C libraries or when disabled)."""
    if _state["done"]:
        return _state["tuned"]
    _state["done"] = True
    if os.environ.get("SPLINECAM_TUNE_MALLOC", "1") == "0" or platform.system() != "Linux" \
            or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        ok = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    except (OSError, AttributeError):
        return False
    _state["tuned"] = ok
    return ok
