"""What a model may be made of, and the nonlinearities' geometry.

The lists of supported modules, functions and methods (affine glue, elementwise and
max-type nonlinearities, final ops that are dropped), the messages that name an
unsupported node and the line of the model's source that made it, each elementwise
nonlinearity's breakpoints, and the candidate windows of max-type layers (max pooling,
reductions). :mod:`.model` classifies a traced graph's nodes with these.
"""
from __future__ import annotations

import builtins
import math
import operator
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

__all__ = ["UnsupportedModelError", "SUPPORTED_MODULES", "AFFINE_MODULES", "ELEMENTWISE_MODULES", "MAX_MODULES",
           "FINAL_MODULES", "Nonlinearity"]


class UnsupportedModelError(TypeError):
    """The model contains something splinecam cannot partition exactly.

    The message names the module or operation (and its line in the model's source when
    torch.fx records it), says why it is not supported, and lists what is. A subclass
    of :class:`TypeError`.
    """


# -- what is supported ---------------------------------------------------------------------
AFFINE_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool1d, nn.AvgPool2d,
                  nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Identity)
ELEMENTWISE_MODULES = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.Hardtanh)  # ReLU6 is a Hardtanh
MAX_MODULES = (nn.MaxPool1d, nn.MaxPool2d)
FINAL_MODULES = (nn.Softmax, nn.LogSoftmax, nn.Sigmoid)  # dropped when final only
SUPPORTED_MODULES = (nn.Sequential,) + AFFINE_MODULES + ELEMENTWISE_MODULES + (nn.ReLU6,) + MAX_MODULES

_AFFINE_FUNCTIONS = {
    operator.add, operator.sub, operator.neg, operator.pos, operator.getitem, torch.add, torch.sub, torch.neg,
    torch.cat, torch.concat, torch.stack, torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze,
    torch.transpose, torch.permute, torch.movedim, F.linear, F.conv1d, F.conv2d, F.avg_pool1d, F.avg_pool2d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.dropout, F.pad, torch.sum, torch.mean, F.batch_norm,
}
_SCALAR_FUNCTIONS = {operator.mul, operator.truediv, torch.mul, torch.div}  # affine when one side is constant
_AFFINE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "permute", "transpose", "contiguous",
                   "add", "sub", "neg", "sum", "mean", "expand", "repeat", "view_as", "reshape_as", "t",
                   "unflatten", "movedim", "double", "float", "half", "to", "cpu", "cuda", "type", "clone", "narrow", "select", "chunk", "split",
                   "__getitem__"}
_SCALAR_METHODS = {"mul", "div", "__mul__", "__truediv__"}
_KEEP_DTYPE_METHODS = {"double", "float", "half", "to", "cpu", "cuda", "type"}
_META_METHODS = {"size", "dim", "numel"}
_META_FUNCTIONS = {builtins.getattr, len}
_FINAL_FUNCTIONS = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, torch.sigmoid, F.sigmoid,
                    torch.special.expit}
_FINAL_METHODS = {"softmax", "log_softmax", "sigmoid", "sigmoid_"}
_RELU_FUNCTIONS = {F.relu, torch.relu, F.leaky_relu, F.prelu, torch.abs, F.relu6}
_RELU_METHODS = {"relu", "abs", "relu_", "abs_"}


def _supported_list() -> str:
    fns = "F.relu, torch.relu, x.relu(), F.leaky_relu, F.prelu, torch.abs, F.hardtanh, F.relu6, torch.clamp, " \
          "torch.maximum, x.max(dim), x.amax(dim), F.max_pool1d/2d, +, -, torch.cat, indexing, view/reshape/flatten"
    final = ", ".join(m.__name__ for m in FINAL_MODULES) + ", torch.softmax, F.log_softmax, torch.sigmoid, x.sigmoid()"
    return ", ".join(m.__name__ for m in SUPPORTED_MODULES) + "; functions: " + fns + \
        "; as the final op only (dropped): " + final


def _where(node: fx.Node) -> str:
    """The model's source line that created ``node`` (from the traced stack)."""
    trace = node.meta.get("stack_trace") or ""
    lines = [l.strip() for l in trace.strip().splitlines()]
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("File ") and "torch/fx" not in lines[i] and "torch/nn/modules" not in lines[i]:
            code = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith("File ") else ""
            return f" at {lines[i][5:]}" + (f": {code}" if code else "")
    return ""


def _training_message(training: List[Tuple[str, nn.Module]]) -> str:
    """Why a model with modules in training mode is refused, naming the module that
    matters: the first BatchNorm or Dropout in training mode, else the first innermost
    module (one without children) in training mode."""
    kinds = {"BatchNorm": nn.modules.batchnorm._NormBase, "Dropout": nn.modules.dropout._DropoutNd}
    stochastic = [(n, m) for n, m in training if isinstance(m, tuple(kinds.values()))]
    leaves = [(n, m) for n, m in training if next(m.children(), None) is None]
    name, m = (stochastic or leaves or training)[0]
    where = f"module '{name}' ({type(m).__name__})" if name else f"the model ({type(m).__name__})"
    if stochastic:
        present = " and ".join(k for k, t in kinds.items() if any(isinstance(s, t) for _, s in stochastic))
        why = f"{present} then compute{'s' if ' and ' not in present else ''} a different function than at inference"
    else:
        why = "modules in training mode may compute a different function than at inference"
    return f"the model is in training mode ({where} has training=True): {why}. Call model.eval() before " \
           "splinecam.partition(...)."


def _describe(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"module '{node.target}' ({type(gm.get_submodule(node.target)).__name__})"
    if node.op == "call_method":
        return f"node '{node.name}' (method .{node.target}())"
    name = getattr(node.target, "__name__", str(node.target))
    return f"node '{node.name}' (function {name})"


# -- the nonlinearities ---------------------------------------------------------------------
@dataclass
class Nonlinearity:
    """A hidden layer: one piecewise-linear node of the traced graph."""
    node: fx.Node
    name: str                     # module path, or the node's name for functions
    kind: str                     # "elementwise" or "max"
    inputs: List[fx.Node]         # tensor inputs (per vertex)
    out_shape: Tuple[int, ...] = ()
    breakpoints: Tuple[float, ...] = ()   # elementwise: values of z where the slope changes
    idx: Optional[np.ndarray] = None      # max: (W, k) candidate indices into the flattened inputs
    in_numel: int = 0

    @property
    def width(self) -> int:
        """Units (output elements) of the layer: the labels of its edges."""
        return int(math.prod(self.out_shape))

    @property
    def zero_breakpoint(self) -> Optional[int]:
        """Index of the breakpoint 0 of an elementwise layer (its column ``z - 0`` is
        ``z`` itself, exactly), or None."""
        bps = self.breakpoints
        return bps.index(0.0) if 0.0 in bps else None


def _elementwise_breakpoints(node: fx.Node, gm: fx.GraphModule) -> Optional[Tuple[float, ...]]:
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if isinstance(m, nn.Hardtanh):  # includes ReLU6
            return (float(m.min_val), float(m.max_val))
        if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.PReLU)):
            return (0.0,)
        return None
    if node.op == "call_function":
        if node.target in _RELU_FUNCTIONS:
            return (0.0, 6.0) if node.target is F.relu6 else (0.0,)
        if node.target is F.hardtanh:
            lo = node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)
            hi = node.kwargs.get("max_val", node.args[2] if len(node.args) > 2 else 1.0)
            return (float(lo), float(hi))
        if node.target in (torch.clamp, torch.clip):
            return _clamp_breakpoints(node, node.args[1:])
        return None
    if node.op == "call_method":
        if node.target in _RELU_METHODS:
            return (0.0,)
        if node.target in ("clamp", "clip"):
            return _clamp_breakpoints(node, node.args[1:])
    return None


def _clamp_breakpoints(node, args):
    lo = node.kwargs.get("min", args[0] if len(args) > 0 else None)
    hi = node.kwargs.get("max", args[1] if len(args) > 1 else None)
    for v in (lo, hi):
        if v is not None and not isinstance(v, (int, float)):
            raise UnsupportedModelError(f"clamp with tensor bounds is not supported at node '{node.name}'{_where(node)}")
    return tuple(float(v) for v in (lo, hi) if v is not None)


def _is_max(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), MAX_MODULES)
    if node.op == "call_function":
        return node.target in (torch.maximum, torch.max, torch.amax, F.max_pool1d, F.max_pool2d)
    if node.op == "call_method":
        return node.target in ("max", "amax", "maximum")
    return False


def _pool_indices(in_shape, kernel, stride, padding, dilation, ceil_mode, dims: int) -> Tuple[np.ndarray, tuple]:
    """Candidate indices (W, k) of a max-pool over a (C, *spatial) input; padding
    positions are replaced by the window's first real candidate (a duplicate never wins
    alone and never cuts)."""
    if ceil_mode:
        raise UnsupportedModelError("MaxPool with ceil_mode=True is not supported")
    as2 = (lambda v: (v, v) if isinstance(v, int) else tuple(v))
    if dims == 1:
        k, s, p, d = (1, kernel if isinstance(kernel, int) else kernel[0]), \
                     (1, stride if isinstance(stride, int) else stride[0]), \
                     (0, padding if isinstance(padding, int) else padding[0]), \
                     (1, dilation if isinstance(dilation, int) else dilation[0])
        shape = (in_shape[0], 1, in_shape[1])
    else:
        k, s, p, d = as2(kernel), as2(stride if stride is not None else kernel), as2(padding), as2(dilation)
        shape = tuple(in_shape)
    n = int(math.prod(shape))
    ids = torch.arange(n, dtype=torch.float64).reshape(1, *shape)
    ids = F.pad(ids, (p[1], p[1], p[0], p[0]), value=-1.0)
    cols = F.unfold(ids, kernel_size=k, dilation=d, stride=s)  # (1, C*kk, L)
    C = shape[0]
    kk = k[0] * k[1]
    L = cols.shape[-1]
    idx = cols.reshape(C, kk, L).permute(0, 2, 1).reshape(C * L, kk).numpy().astype(np.int64)
    first = np.argmax(idx >= 0, axis=1)
    fill = idx[np.arange(len(idx)), first]
    idx = np.where(idx >= 0, idx, fill[:, None])
    h_out = (shape[1] + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    w_out = (shape[2] + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    out_shape = (C, w_out) if dims == 1 else (C, h_out, w_out)
    return idx, out_shape


def _reduce_indices(in_shape, dim, keepdim) -> Tuple[np.ndarray, tuple]:
    n = int(math.prod(in_shape))
    ids = np.arange(n).reshape(in_shape)
    if dim is None:
        return ids.reshape(1, n), ((1,) * len(in_shape) if keepdim else ())
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    dims = tuple(d - 1 if d > 0 else d + len(in_shape) + 0 for d in dims)  # drop the batch dimension
    dims = tuple(d % len(in_shape) for d in dims)
    moved = np.moveaxis(ids, dims, tuple(range(-len(dims), 0)))
    keep_shape = moved.shape[: len(in_shape) - len(dims)]
    idx = moved.reshape(int(math.prod(keep_shape)) if keep_shape else 1, -1)
    if keepdim:
        out_shape = tuple(1 if i in dims else s for i, s in enumerate(in_shape))
    else:
        out_shape = keep_shape
    return idx, out_shape
