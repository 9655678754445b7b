"""Traced networks kept per architecture.

Tracing a model (``torch.fx``), copying it to float64 and working out its shapes and
layouts costs milliseconds, more than partitioning a small model. A model whose
structure was traced before - the same architecture at another training step, another
seed, the same model on another slice - reuses that trace: :func:`lookup` finds it by
:func:`_structure_key` and :meth:`Network._with_weights_of` copies the new weights in.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Optional, Sequence

from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from splinecam.network.model import Network

__all__ = ["lookup", "keep", "clear", "has_hooks"]


# -- traced structures, reused -----------------------------------------------------------
#: Traced networks by the structure of their model (:func:`_structure_key`), most recent
#: last: a model partitioned again (a training run, many slices) is not traced again.
_TRACED: "OrderedDict[tuple, Network]" = OrderedDict()
_TRACED_SIZE = 32
_PLAIN = (bool, int, float, str, type(None))


def _structure_key(model: nn.Module, input_shape: Sequence[int]) -> Optional[tuple]:
    """What tracing ``model`` depends on besides its weights' values: every module's
    path, class (and its ``forward``), plain attributes (sizes, strides, slopes, flags)
    and the shapes and dtypes of its parameters and buffers. ``None`` (never reused)
    when a module has hooks, its own ``forward`` or attributes of other kinds, since
    the traced graph may then depend on something this key cannot see."""
    parts = [tuple(int(s) for s in input_shape)]
    for name, m in model.named_modules():
        if has_hooks(m):
            return None
        attrs = []
        for k, v in vars(m).items():
            if k in ("_parameters", "_buffers", "_modules") or "hook" in k or k in _MODULE_INTERNALS:
                continue
            if k == "forward":
                return None
            if isinstance(v, _PLAIN):
                attrs.append((k, v))
            elif isinstance(v, (tuple, list)) and all(isinstance(e, _PLAIN) for e in v):
                attrs.append((k, type(v), tuple(v)))
            else:
                return None
        tensors = tuple((k, None if t is None else (tuple(t.shape), t.dtype))
                        for store in (m._parameters, m._buffers) for k, t in store.items())
        parts.append((name, type(m), getattr(type(m), "forward", None), tuple(attrs), tensors))
    return tuple(parts)


def has_hooks(m: nn.Module) -> bool:
    """Whether module ``m`` has forward hooks of its own (pre-hooks included)."""
    return bool(m._forward_hooks or m._forward_pre_hooks or getattr(m, "_forward_hooks_with_kwargs", None))


_MODULE_INTERNALS = {"_non_persistent_buffers_set", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
                     "_is_full_backward_hook", "_compiled_call_impl", "_version"}


def lookup(model: nn.Module, input_shape: Sequence[int]):
    """``(key, network)``: the structure key of ``model`` (``None``: not reusable) and a
    network with ``model``'s weights made from a kept trace (``None`` when there is none)."""
    key = _structure_key(model, input_shape)
    template = _TRACED.get(key) if key is not None else None
    if template is not None:
        net = template._with_weights_of(model)
        if net is not None:
            _TRACED.move_to_end(key)
            return key, net
    return key, None


def keep(key: Optional[tuple], net: "Network") -> None:
    """Keep ``net`` (freshly traced) for models of structure ``key``, most recent last."""
    if key is None:
        return
    _TRACED[key] = net
    while len(_TRACED) > _TRACED_SIZE:
        _TRACED.popitem(last=False)


def clear() -> None:
    """Forget every kept trace."""
    _TRACED.clear()
