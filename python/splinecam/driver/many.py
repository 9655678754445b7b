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
import inspect
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
    from splinecam.driver import engine
    # The options are checked once, as partition checks them (unknown ones refused).
    try:
        args = inspect.signature(engine.partition).bind(None, slice, progress=False, **options)
    except TypeError as e:
        raise TypeError(f"partition_many got an option that splinecam.partition does not take: {e}") from None
    args.apply_defaults()
    run_opts = {k: v for k, v in args.arguments.items()
                if k not in ("model", "slice", "progress", "max_depth", "store", "client")}
    checked = engine.checked_options(slice, **run_opts)
    max_depth = args.arguments["max_depth"]
    total = len(checkpoints) if hasattr(checkpoints, "__len__") else None
    bar = _bar(total, progress)
    states = []  # state dicts: loaded into a private copy of model, or copied straight into its network
    todo = enumerate(checkpoints)
    try:
        while True:
            # A group of checkpoints made into networks, their tolerances measured
            # together; a checkpoint that fails stops the group, and raises once the
            # partitions before it are out.
            group, error, size = [], None, GROUP
            for i, ck in todo:
                try:
                    group.append((i, *_network(i, ck, slice, model, states)))
                except Exception as e:  # noqa: BLE001 - re-raised below, in order
                    error = e
                    break
                if len(group) == 1:
                    size = _group_size(group[0][2])
                if len(group) >= size:
                    break
            tols = _tolerances([net for _, _, net in group], slice, checked[0]["rtol"])
            for (i, m, net), tol in zip(group, tols):
                P = engine.partition_checked(m, slice, checked, max_depth, False, network=net, tolerances=tol)
                P.run_info["checkpoint"] = i
                if bar is not None:
                    bar.set_postfix_str(f"regions={P.num_regions}", refresh=False)
                    bar.update(1)
                yield P
            if error is not None:
                raise error
            if len(group) < size:
                return
    finally:
        if bar is not None:
            bar.close()


#: Checkpoints made into networks (and measured) at a time, at most; and the most
#: memory their float64 weights may take together (a large model goes one at a time).
GROUP = 32
GROUP_BYTES = 64 << 20


def _group_size(net) -> int:
    """Checkpoints per group for networks like ``net`` (see :data:`GROUP_BYTES`)."""
    nbytes = sum(t.numel() * t.element_size() for t in net.gm.parameters()) + \
        sum(t.numel() * t.element_size() for t in net.gm.buffers())
    return max(1, min(GROUP, GROUP_BYTES // max(nbytes, 1)))


def _network(i: int, ck, slice: Slice, model, states: list):
    """``(model, network)`` of checkpoint ``i``: the model it runs on (for its device)
    and its float64 network, made now (a state dict's model is reused for the next)."""
    from splinecam.network.model import Network
    try:
        if isinstance(ck, Mapping):
            if model is None:
                raise TypeError(f"checkpoint {i} is a state dict: pass the architecture as model=...")
            if not states:
                states.append(_StateDicts(model))
            return states[0].load(i, ck, slice)
        if isinstance(ck, torch.nn.Module):
            return ck, Network.from_model(ck, slice.input_shape)
    except ValueError as e:  # NaN weights, a training-mode model, ...: say which checkpoint
        if str(e).startswith(f"checkpoint {i}"):
            raise
        raise type(e)(f"checkpoint {i}: {e}") from None
    raise TypeError(f"checkpoint {i} is a {type(ck).__name__}: each checkpoint must be a torch.nn.Module or a "
                    "state dict")


def _tolerances(nets, slice: Slice, rtol: float) -> list:
    """Per network, its tolerances on the slice, measured together for the networks of
    one traced structure (:meth:`Tolerances.for_slice_many`); ``None`` (measured by the
    partition itself) for a network alone of its kind."""
    from splinecam.driver.tolerance import Tolerances
    kinds = {}
    for k, net in enumerate(nets):
        kinds.setdefault(id(net._memo), []).append(k)
    out = [None] * len(nets)
    for ks in kinds.values():
        if len(ks) > 1:
            for k, t in zip(ks, Tolerances.for_slice_many([nets[k] for k in ks], slice, rtol)):
                out[k] = t
    return out


class _StateDicts:
    """State dicts of one architecture, made into networks. The first is loaded into a
    private copy of ``model`` (``load_state_dict`` checks it) and traced; each later one
    with the same keys and shapes is copied straight into a copy of that network, as
    float64, without loading it into the model (what ``load_state_dict`` and the
    model's own checks would cost per checkpoint). Anything else - other keys, other
    shapes, a model with state outside its tensors - is loaded into the model and
    checked as the first was."""

    def __init__(self, model: torch.nn.Module):
        self.work = copy.deepcopy(model).eval()
        self.template = None
        own = self.work.state_dict()
        self.shapes = {k: tuple(v.shape) for k, v in own.items() if isinstance(v, torch.Tensor)}
        # state the template's copy cannot take from a state dict: non-persistent buffers,
        # extra state (get_extra_state), non-tensor entries
        self.direct = len(self.shapes) == len(own) and not any(
            m._non_persistent_buffers_set or type(m).get_extra_state is not torch.nn.Module.get_extra_state
            for m in self.work.modules())

    def load(self, i: int, state: Mapping, slice: Slice):
        """``(model, network)`` of checkpoint ``i``."""
        from splinecam.network.model import Network
        if self.template is not None and len(state) == len(self.shapes) and all(
                isinstance(v, torch.Tensor) and self.shapes.get(k) == tuple(v.shape) for k, v in state.items()):
            net = self.template._with_state_dict(state)
            if net is not None:
                return self.work, net
        try:
            self.work.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"checkpoint {i} does not fit the model: {e}") from None
        net = Network.from_model(self.work, slice.input_shape)
        if self.direct and self.template is None:  # never handed out: each checkpoint gets its own copy
            mine = net._with_state_dict(state)
            if mine is not None:
                self.template, net = net, mine
        return self.work, net


def _bar(total, enabled):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    from splinecam.driver import engine
    return tqdm(total=total, desc="splinecam", unit="checkpoint", delay=engine.PROGRESS_DELAY)
