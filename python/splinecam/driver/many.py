"""Many checkpoints of one architecture on one slice: :func:`partition_many`.

A training run, a sweep over seeds or a benchmark computes the same slice for hundreds
of small models that differ in their weights only. Each is an ordinary
:func:`splinecam.partition`; what they share is shared without being asked for: the
traced graph, its layouts and segments are kept per architecture
(:mod:`splinecam.network.cache`), so a checkpoint costs its weights'
copy, its tolerances and its geometry, not a trace.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Iterable, Iterator, List, Optional, Union

import torch

from splinecam.slice import Slice

if TYPE_CHECKING:  # pragma: no cover
    from splinecam.result.partition import Partition

__all__ = ["partition_many"]


def partition_many(checkpoints: Iterable[Union[torch.nn.Module, Mapping]], slice: Slice, *,
                   model: Optional[torch.nn.Module] = None, progress: bool = True, lazy: bool = False,
                   **options) -> Union[List["Partition"], Iterator["Partition"]]:
    """The partitions of ``slice`` for a sequence of checkpoints of one architecture.

    Parameters
    ----------
    checkpoints : iterable of torch.nn.Module or of state dicts
        The models (each in eval mode), or state dicts of ``model`` (as
        ``model.state_dict()`` returns them, e.g. saved during training).
    slice : Slice
        The slice, the same for all.
    model : torch.nn.Module, optional
        The architecture that state dicts are loaded into (a private copy of it, in eval
        mode: ``model`` itself is not changed). Needed when ``checkpoints`` holds state
        dicts.
    progress : bool
        One progress bar over the checkpoints (the partitions show none of their own).
    lazy : bool
        Return an iterator that computes each partition when it is asked for (a long run
        need not hold every partition in memory) instead of a list.
    **options
        Passed to :func:`splinecam.partition` for each checkpoint (``rtol``,
        ``decision_boundary``, ``threads``, ``tiles``, ...); not ``store``, which holds one
        partition.

    Returns
    -------
    list of Partition, or an iterator of them (``lazy=True``), in the order of
    ``checkpoints``; :func:`splinecam.plot.animate` draws them as frames.

    Examples
    --------
    >>> states = []                                    # doctest: +SKIP
    >>> for step in range(1000):                       # doctest: +SKIP
    ...     train_step(net); states.append(copy.deepcopy(net.state_dict()))
    >>> parts = splinecam.partition_many(states, sl, model=net)          # doctest: +SKIP
    >>> splinecam.plot.animate(parts, "training.gif")                    # doctest: +SKIP
    """
    if not isinstance(slice, Slice):
        raise TypeError(f"slice must be a splinecam.Slice; got {type(slice).__name__}")
    for name in ("store", "client"):
        if options.get(name) is not None:
            raise ValueError(f"partition_many does not take {name}=: it applies to one partition; call "
                             f"splinecam.partition(model, slice, {name}=...) for the checkpoint that needs it")
    if model is not None and not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (the architecture of the state dicts); got "
                        f"{type(model).__name__}")
    if isinstance(checkpoints, (torch.nn.Module, Mapping)):
        raise TypeError("checkpoints must be a sequence of models or state dicts; for one model call "
                        "splinecam.partition(model, slice)")
    run = _run(checkpoints, slice, model, progress, options)
    return run if lazy else list(run)


def _run(checkpoints, slice, model, progress, options) -> Iterator["Partition"]:
    from splinecam.driver.engine import partition
    total = len(checkpoints) if hasattr(checkpoints, "__len__") else None
    bar = _bar(total, progress)
    work = None  # the private copy that state dicts are loaded into
    try:
        for i, ck in enumerate(checkpoints):
            if isinstance(ck, Mapping):
                if model is None:
                    raise TypeError(f"checkpoint {i} is a state dict: pass the architecture as model=...")
                if work is None:
                    work = copy.deepcopy(model).eval()
                try:
                    work.load_state_dict(ck)
                except RuntimeError as e:
                    raise ValueError(f"checkpoint {i} does not fit the model: {e}") from None
                m = work
            elif isinstance(ck, torch.nn.Module):
                m = ck
            else:
                raise TypeError(f"checkpoint {i} is a {type(ck).__name__}: each checkpoint must be a "
                                "torch.nn.Module or a state dict")
            P = partition(m, slice, progress=False, **options)
            P.run_info["checkpoint"] = i
            if bar is not None:
                bar.set_postfix_str(f"regions={P.num_regions}", refresh=False)
                bar.update(1)
            yield P
    finally:
        if bar is not None:
            bar.close()


def _bar(total, enabled):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    from splinecam.driver import engine
    return tqdm(total=total, desc="splinecam", unit="checkpoint", delay=engine.PROGRESS_DELAY)
