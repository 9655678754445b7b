"""Turning a torch model into what the engine needs.

The model is traced with ``torch.fx`` into a graph of nodes. Every node is either
*glue* that is affine in its tensor inputs (Linear, Conv, BatchNorm in eval mode,
pooling by averaging, reshaping, indexing, ``+``, ``torch.cat``, ...) or a
*piecewise-linear nonlinearity*:

- elementwise, with breakpoints at constants: ReLU, LeakyReLU, PReLU and ``abs`` (0),
  Hardtanh and ``clamp`` (its bounds), ReLU6 (0 and 6);
- max-type: MaxPool1d/2d, ``x.max(dim)`` / ``amax`` (maxout), ``torch.maximum(a, b)``:
  each output is the maximum of a window of candidates.

Hidden layer ``l`` is the ``l``-th nonlinearity in topological order. A monotone final
op (softmax, log-softmax, sigmoid) is dropped: it changes no decision (a sigmoid's 0.5
level set is its logit's zero level set, and an increasing map of every output keeps
the arg-max). The same ops anywhere else are refused, like anything else, before any
work, naming the node and the line of the model's source that made it.

What counts as glue or as a nonlinearity, and the nonlinearities' breakpoints and
windows, are in :mod:`.ops`; traces kept per architecture in :mod:`.cache`.

Between nonlinearities the driver evaluates the glue on batches of vertex values. For
layer ``l`` it lays out one row per vertex (:class:`RowLayout`): first the breakpoint
columns that the engine cuts along (``z - b`` for every breakpoint ``b``, or the chain
column of a max-type layer), then every tensor that is still needed later, carried
along and interpolated exactly at the vertices the engine creates.
"""
from __future__ import annotations

import builtins
import contextlib
import copy
import math
import operator
import os
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _torch_module

from splinecam.network import cache
from splinecam.network.small_conv import SmallConv2d
from splinecam.network.ops import (
    UnsupportedModelError, AFFINE_MODULES, FINAL_MODULES, SUPPORTED_MODULES, _AFFINE_FUNCTIONS,
    _SCALAR_FUNCTIONS, _AFFINE_METHODS, _SCALAR_METHODS, _KEEP_DTYPE_METHODS, _META_METHODS, _META_FUNCTIONS,
    _FINAL_FUNCTIONS, _FINAL_METHODS, _supported_list, _where, _training_message, _describe, Nonlinearity,
    _elementwise_breakpoints, _is_max, _pool_indices, _reduce_indices)

__all__ = ["Network", "SUPPORTED_MODULES", "UnsupportedModelError", "RowLayout"]

#: The sign probes of Network.magnitudes kept per architecture: those of at most this many values.
_KEEP_SIGNS = 1 << 16

#: Values per batch below which torch evaluates a batch on one thread. A small product
#: split over threads costs more than it saves (16 us on one thread, 53 us on two, for a
#: 27 x 10 linear layer while another process keeps the second core busy): the threads
#: wait for each other at every op. Large batches keep torch's own thread count.
ONE_THREAD_BELOW = 1 << 16


@contextlib.contextmanager
def _threads_for(n_values: int, device: torch.device):
    """torch on one thread for a batch of ``n_values`` values on the CPU below
    :data:`ONE_THREAD_BELOW`; torch's own thread count otherwise (and restored after)."""
    n = torch.get_num_threads()
    if device.type != "cpu" or n_values >= ONE_THREAD_BELOW or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _all_finite(t: torch.Tensor) -> bool:
    """Whether a floating-point tensor holds no NaN or infinity (numpy for a small CPU
    tensor: a torch op costs more than checking its values)."""
    t = t.detach()
    if t.device.type == "cpu" and t.dtype in (torch.float64, torch.float32, torch.float16):
        return bool(np.isfinite(t.numpy()).all())
    return bool(torch.isfinite(t).all())


# -- row layouts -------------------------------------------------------------------------------
@dataclass
class RowLayout:
    """Columns of the per-vertex rows at one hidden layer.

    ``n_cut`` breakpoint columns come first; ``carry`` maps each tensor node that is
    needed later to its column range. An elementwise layer's input is carried unless one
    of its breakpoints is 0: then it is that breakpoint's column, exactly."""
    n_cut: int
    n_cols: int
    carry: Dict[fx.Node, Tuple[int, int]] = field(default_factory=dict)


class Network:
    """A float64 copy of a model as a traced graph split at its nonlinearities."""

    def __init__(self, gm: fx.GraphModule, input_shape: Tuple[int, ...]):
        self.gm = gm
        self.device = torch.device("cpu")
        self.input_shape = tuple(input_shape)
        self.nodes: List[fx.Node] = list(gm.graph.nodes)
        self.pos = {n: i for i, n in enumerate(self.nodes)}
        #: per hidden layer, the rounding floors of activation patterns (splinecam.driver.tolerance)
        self.pattern_floors = None
        #: layouts and segments by layer: they depend on the structure only, so the copies
        #: of a traced template (:meth:`_with_weights_of`) share them
        self._memo: Dict[tuple, object] = {}
        self._plans: Dict[fx.Node, object] = {}  # each node's plan (_plan), shared by the copies
        self._calls: Dict[fx.Node, object] = {}  # each node's plan bound to this copy (_exec)
        self._modules_at: Dict[str, nn.Module] = {}  # this copy's submodules by path
        self._classify()
        self._propagate_shapes()
        self._liveness()

    @property
    def pattern_floors(self) -> Optional[List[np.ndarray]]:
        """Per hidden layer, the rounding floors that activation patterns use (forward
        passes from the input; :meth:`Tolerances.pattern_floors
        <splinecam.driver.tolerance.Tolerances.pattern_floors>`), or None. They may be set
        as a function of the network that makes them, called at the first use: a
        partition whose patterns are never asked for never computes them."""
        f = self._pattern_floors
        if callable(f):
            f = self._pattern_floors = f(self)
        return f

    @pattern_floors.setter
    def pattern_floors(self, value) -> None:
        self._pattern_floors = value

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: nn.Module, input_shape: Sequence[int]) -> "Network":
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        modules = list(model.named_modules())
        training = [(n, m) for n, m in modules if m.training]
        if training:
            raise ValueError(_training_message(training))
        for name, m in modules:
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.running_mean is None:
                raise UnsupportedModelError(
                    f"module '{name}' ({type(m).__name__}) has no running statistics "
                    "(track_running_stats=False): it normalises by the batch, so one input's output depends on the "
                    "others and the model is not a function of its input alone")
        # A kept trace's copy checks the tensors it copies (the ones the graph uses) as it
        # copies them; a model traced now is checked whole.
        key, net = cache.lookup(model, input_shape)
        if net is not None:
            return net
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t.is_floating_point() and not _all_finite(t):
                raise ValueError(_non_finite(name))
        net = cls._trace(model, input_shape)
        if key is None or any(isinstance(v, torch.Tensor) for v in net.static.values()):
            # weights that live outside modules' parameters and buffers (constants the
            # graph computes with) are not refreshed by _with_weights_of: such models
            # are traced at every call
            return net
        # The kept template is never handed out (a caller may move its network to a GPU
        # or set its pattern floors): the caller gets a copy, like every later call.
        mine = net._with_weights_of(model)
        if mine is None:
            return net
        cache.keep(key, net)
        return mine

    @classmethod
    def _trace(cls, model: nn.Module, input_shape: Sequence[int]) -> "Network":
        tracer = _Tracer()
        try:
            graph = tracer.trace(model)
        except Exception as e:
            raise UnsupportedModelError(
                f"torch.fx cannot trace the model ({type(e).__name__}: {e}); splinecam needs a forward() without "
                "data-dependent control flow") from None
        gm = fx.GraphModule(tracer.root, graph)
        gm = copy.deepcopy(gm).to(device="cpu", dtype=torch.float64).eval()
        for m in gm.modules():
            if hasattr(m, "inplace"):
                m.inplace = False
        return cls(gm, tuple(int(s) for s in input_shape))

    def _with_weights_of(self, model: nn.Module) -> Optional["Network"]:
        """This network (a traced template of ``model``'s structure) with ``model``'s
        current weights: the graph, layouts and shapes are shared, every parameter and
        buffer is a new float64 copy. ``None`` when a tensor of the template has no
        counterpart in ``model``; ValueError (naming it) when one holds NaN or infinite
        values."""
        mods = {}
        try:
            gm = _clone_module(self.gm, model, "", mods, check=True)
        except (LookupError, AttributeError):
            return None
        return self._copy_with(gm, mods)

    def _with_state_dict(self, state: Mapping) -> Optional["Network"]:
        """This network (a traced template) with the weights of ``state``, a state dict
        of the template's model (as ``model.state_dict()`` gives it): what
        :meth:`_with_weights_of` makes of that model after ``load_state_dict(state)``,
        without loading it. ``None`` when a tensor of the template has no counterpart of
        its shape in ``state``; ValueError (naming it) when one holds NaN or infinite values."""
        mods = {}
        try:
            gm = _clone_module(self.gm, state, "", mods, check=True)
        except LookupError:
            return None
        return self._copy_with(gm, mods)

    def _copy_with(self, gm: fx.GraphModule, mods: Dict[str, nn.Module]) -> "Network":
        """A copy of this network on the module tree ``gm`` (its modules by path: ``mods``);
        graph, layouts and node plans shared."""
        net = copy.copy(self)
        net.gm, net.static, net.pattern_floors, net._calls, net._modules_at = gm, dict(self.static), None, {}, mods
        return net

    def to(self, device) -> "Network":
        """Move the float64 copy (and its constant tensors) to ``device``: the vertex
        forward passes then run there, on torch tensors instead of numpy arrays."""
        device = torch.device(device)
        if device != self.device:
            self.gm, self._calls, self._modules_at = self.gm.to(device), {}, {}
            self.static = {n: v.to(device) if isinstance(v, torch.Tensor) else v for n, v in self.static.items()}
            self.device = device
        return self

    def _unsupported(self, node: fx.Node, why: str = "") -> UnsupportedModelError:
        return UnsupportedModelError(
            f"{_describe(node, self.gm)}{_where(node)} is not supported{why}: splinecam needs affine layers and "
            f"piecewise-linear nonlinearities. Supported modules: {_supported_list()}")

    def _classify(self):
        gm = self.gm
        self.layers: List[Nonlinearity] = []
        self.kind: Dict[fx.Node, str] = {}
        outputs = [n for n in self.nodes if n.op == "output"]
        out = outputs[0].args[0]
        if not isinstance(out, fx.Node):
            raise UnsupportedModelError("the model must return a single tensor")
        # A monotone final op changes no decision: drop it (softmax / log-softmax keep the
        # arg-max; a sigmoid keeps each output's 0.5 level set at its logit's zero level set
        # and, being increasing, the arg-max of several outputs).
        while isinstance(out, fx.Node) and self._is_final(out):
            out = out.args[0]
        self.output_node = out
        for n in self.nodes:
            if n.op in ("placeholder", "output", "get_attr"):
                self.kind[n] = n.op
                continue
            if self.pos[n] > self.pos[out]:
                self.kind[n] = "dropped"
                continue
            if (n.op == "call_module" and getattr(gm.get_submodule(n.target), "return_indices", False)) or \
                    n.kwargs.get("return_indices") is True:
                raise self._unsupported(n, " with return_indices=True (the indices of the maxima are not piecewise "
                                           "linear in the input; pass return_indices=False)")
            bps = _elementwise_breakpoints(n, gm)
            if bps is not None:
                self.kind[n] = "nonlinear"
                self.layers.append(Nonlinearity(n, n.target if n.op == "call_module" else n.name, "elementwise",
                                                [n.args[0]], breakpoints=bps))
            elif _is_max(n, gm):
                self.kind[n] = "nonlinear"
                self.layers.append(Nonlinearity(n, n.target if n.op == "call_module" else n.name, "max", []))
            elif self._is_affine(n):
                self.kind[n] = "affine"
            elif self._is_final(n):
                raise self._unsupported(n, " inside the network (softmax, log-softmax and sigmoid are only "
                                           "dropped as the final op)")
            else:
                raise self._unsupported(n)

    def _is_final(self, n: fx.Node) -> bool:
        if n.op == "call_module":
            return isinstance(self.gm.get_submodule(n.target), FINAL_MODULES)
        if n.op == "call_function":
            return n.target in _FINAL_FUNCTIONS
        return n.op == "call_method" and n.target in _FINAL_METHODS

    def _is_affine(self, n: fx.Node) -> bool:
        if n.op == "call_module":
            return isinstance(self.gm.get_submodule(n.target), AFFINE_MODULES + (nn.Sequential,))
        if n.op == "call_function":
            if n.target in _AFFINE_FUNCTIONS or n.target in _META_FUNCTIONS:
                return True
            return n.target in _SCALAR_FUNCTIONS  # checked once shapes are known

        if n.op == "call_method":
            return n.target in _AFFINE_METHODS or n.target in _META_METHODS or n.target in _SCALAR_METHODS
        return False

    # -- static information: shapes, constants, batch-dependent values ----------------------
    def _run_all(self, x: torch.Tensor, record: Dict) -> None:
        env = {}
        for n in self.nodes:
            if n.op == "output" or self.kind.get(n) == "dropped":
                continue
            env[n] = self._exec(n, env, x)
            record[n] = env[n]

    def _exec(self, n: fx.Node, env: Dict, x=None):
        """Node ``n`` evaluated on the tensors of ``env`` (``x``: the input, for the
        placeholder), by the node's call (:func:`_plan`) bound to this copy's modules."""
        fn = self._calls.get(n)
        if fn is None:
            plan = self._plans.get(n)
            if plan is None:
                plan = self._plans[n] = _plan(n)
            fn = self._calls[n] = plan(self)
        return fn(env, x)

    def _submodule(self, target: str) -> nn.Module:
        """This copy's submodule at ``target`` (recorded when the copy was made)."""
        m = self._modules_at.get(target)
        if m is None:
            m = self._modules_at[target] = self.gm.get_submodule(target)
        return m

    def _static_env(self, b: int) -> Dict:
        """The graph's constants for a batch of ``b`` inputs (batch-size templates made)."""
        return {n: v.materialize(b) if isinstance(v, _BatchTemplate) else v for n, v in self.static.items()}

    def _z_columns(self, l: int, lay: RowLayout) -> Tuple[int, int]:
        """The columns of elementwise layer ``l``'s rows (layout ``lay``) that hold its
        input ``z`` itself: where it is carried, else the breakpoint-0 block ``z - 0``."""
        nl = self.layers[l - 1]
        z = nl.inputs[0]
        if z in lay.carry:
            return lay.carry[z]
        k, N = nl.zero_breakpoint, nl.width
        return k * N, (k + 1) * N

    def _propagate_shapes(self):
        runs = []
        for batch in (2, 3):
            rec: Dict = {}
            x = torch.randn((batch,) + self.input_shape, dtype=torch.float64,
                            generator=torch.Generator().manual_seed(batch))
            try:
                with torch.no_grad():
                    self._run_all(x, rec)
            except UnsupportedModelError:
                raise
            except Exception as e:
                raise ValueError(f"the model cannot take inputs of shape {self.input_shape} (from the slice): "
                                 f"{type(e).__name__}: {e}") from None
            runs.append(rec)
        r2, r3 = runs
        self.shape: Dict[fx.Node, Tuple[int, ...]] = {}   # per-vertex tensors: shape without batch
        self.static: Dict[fx.Node, object] = {}           # constants and batch-dependent meta values
        for n in r2:
            a, b = r2[n], r3[n]
            if isinstance(a, torch.Tensor):
                if a.dim() >= 1 and a.shape[0] == 2 and b.shape[0] == 3 and a.shape[1:] == b.shape[1:]:
                    self.shape[n] = tuple(a.shape[1:])
                else:
                    self.static[n] = a
            elif self._is_max_tuple(n):
                self.shape[n] = tuple(a[0].shape[1:])
            else:
                self.static[n] = _batch_template(a, b, n)
        # Scalar multiplication of two per-vertex tensors is not piecewise linear.
        for n in self.nodes:
            if self.kind.get(n) == "affine" and (
                    (n.op == "call_function" and n.target in _SCALAR_FUNCTIONS) or
                    (n.op == "call_method" and n.target in _SCALAR_METHODS)):
                if sum(isinstance(a, fx.Node) and a in self.shape for a in n.args) > 1:
                    raise self._unsupported(n, " (a product of two tensors that depend on the input)")
        # A layer with no units would reach the engine as an empty reduction: name it.
        for n in self.nodes:
            if n in self.shape and 0 in self.shape[n] and (n.op == "call_module" or self.kind.get(n) == "nonlinear"
                                                           or n is self.output_node):
                raise ValueError(f"{_describe(n, self.gm)}{_where(n)} has zero outputs (shape (n, "
                                 f"{', '.join(map(str, self.shape[n]))})): every layer needs at least one unit; "
                                 "check the model's layer sizes")
        out = self.output_node
        if out not in self.shape or len(self.shape[out]) != 1:
            shp = self.shape.get(out)
            raise ValueError(f"the model's output must be a batch of vectors (n, C); it has shape "
                             f"{('(n, ' + ', '.join(map(str, shp)) + ')') if shp else 'that does not depend on the input'}"
                             " (add nn.Flatten() at the end)")
        for nl in self.layers:
            n = nl.node
            if nl.kind == "elementwise":
                nl.out_shape = self.shape[n]
                continue
            self._setup_max(nl, r2)

    def _is_max_tuple(self, n) -> bool:
        return self.kind.get(n) == "nonlinear" and n.op in ("call_method", "call_function") and \
            n.target in ("max", torch.max) and (len(n.args) > 1 or "dim" in n.kwargs) and \
            not (len(n.args) > 1 and isinstance(n.args[1], fx.Node))

    def _setup_max(self, nl: Nonlinearity, rec):
        n, gm = nl.node, self.gm
        tensors = [a for a in n.args if isinstance(a, fx.Node) and a in self.shape]
        if n.op == "call_module" or n.target in (F.max_pool1d, F.max_pool2d):
            if n.op == "call_module":
                m = gm.get_submodule(n.target)
                if getattr(m, "return_indices", False):
                    raise self._unsupported(n, " with return_indices=True")
                k, s, p, d, c = m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode
                dims = 1 if isinstance(m, nn.MaxPool1d) else 2
            else:
                get = lambda i, name, default: n.kwargs.get(name, n.args[i] if len(n.args) > i else default)
                k = get(1, "kernel_size", None)
                s = get(2, "stride", None) or k
                p, d, c = get(3, "padding", 0), get(4, "dilation", 1), get(5, "ceil_mode", False)
                dims = 1 if n.target is F.max_pool1d else 2
            src = tensors[0]
            shp = self.shape[src]
            if len(shp) != dims + 1:
                raise self._unsupported(n, f" on an input of shape {shp} (expected channels x {dims}-D)")
            try:
                nl.idx, nl.out_shape = _pool_indices(shp, k, s, p, d, c, dims)
            except UnsupportedModelError as e:
                raise self._unsupported(n, f" ({e})") from None
            nl.inputs = [src]
        elif self._two_operand_max(n) and len(tensors) == 1:
            # max(x, c) with c a constant: a clamp from below, breakpoint at c.
            const = [a for a in n.args if isinstance(a, fx.Node) and a in self.static]
            c = self.static[const[0]] if const else next(a for a in n.args if isinstance(a, (int, float)))
            if isinstance(c, torch.Tensor) and c.numel() != 1:
                raise self._unsupported(n, " (a maximum with a non-scalar constant tensor)")
            nl.kind, nl.breakpoints = "elementwise", (float(c),)
            nl.inputs, nl.out_shape = [tensors[0]], self.shape[n]
        elif len(tensors) == 2:  # torch.maximum(a, b) / torch.max(a, b) / a.maximum(b)
            a, b = tensors
            if self.shape[a] != self.shape[b]:
                raise self._unsupported(n, f" (maximum of tensors of shapes {self.shape[a]} and {self.shape[b]}; "
                                           "broadcasting is not supported)")
            N = int(math.prod(self.shape[a]))
            nl.idx = np.stack([np.arange(N), N + np.arange(N)], axis=1)
            nl.out_shape = self.shape[a]
            nl.inputs = [a, b]
        else:  # maxout: x.max(dim) / torch.max(x, dim) / amax
            src = tensors[0]
            dim = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else None)
            keepdim = n.kwargs.get("keepdim", n.args[2] if len(n.args) > 2 else False)
            if isinstance(dim, int) and dim == 0 or (isinstance(dim, (tuple, list)) and 0 in dim):
                raise self._unsupported(n, " (a maximum over the batch dimension)")
            nl.idx, nl.out_shape = _reduce_indices(self.shape[src], dim, keepdim)
            nl.inputs = [src]
            # The values of x.max(dim) are used through [0] or .values; the indices are not
            # piecewise linear in the input.
            for u in n.users:
                if u.op == "call_function" and u.target is operator.getitem and u.args[1] == 1 and u.users:
                    raise self._unsupported(u, " (the indices of a maximum)")
                if u.op == "call_function" and u.target is builtins.getattr and u.args[1] == "indices" and u.users:
                    raise self._unsupported(u, " (the indices of a maximum)")
        if nl.kind == "max":
            nl.in_numel = sum(int(math.prod(self.shape[t])) for t in nl.inputs)

    def _two_operand_max(self, n: fx.Node) -> bool:
        """torch.maximum(a, b), torch.max(a, b), a.maximum(b): not a reduction."""
        if n.target in (torch.maximum, "maximum"):
            return True
        second = n.args[1] if len(n.args) > 1 else n.kwargs.get("other")
        return (n.target in (torch.max, "max") and isinstance(second, fx.Node)
                and not isinstance(self.static.get(second), int))

    def _liveness(self):
        self.last_use = {}
        for n in self.nodes:
            for a in n.all_input_nodes:
                self.last_use[a] = max(self.last_use.get(a, -1), self.pos[n])
        self.last_use[self.output_node] = len(self.nodes)

    # -- properties ---------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def layer_names(self) -> List[str]:
        return [str(l.name) for l in self.layers]

    @property
    def layer_widths(self) -> List[int]:
        return [l.width for l in self.layers]

    @property
    def layer_shapes(self) -> List[Tuple[int, ...]]:
        return [l.out_shape for l in self.layers]

    @property
    def num_outputs(self) -> int:
        return int(self.shape[self.output_node][0])

    # -- layouts --------------------------------------------------------------------------------
    def _boundary(self, l: int) -> int:
        """Position in the node list of hidden layer ``l`` (1-based); L + 1 is the output."""
        if l <= self.num_layers:
            return self.pos[self.layers[l - 1].node]
        return self.pos[self.output_node] + 1

    def live_at(self, l: int) -> List[fx.Node]:
        """Per-vertex tensors computed before hidden layer ``l`` and used at or after it."""
        p = self._boundary(l)
        return [n for n in self.nodes[:p] if n in self.shape and self.last_use.get(n, -1) >= p
                and self.kind.get(n) != "dropped"]

    def layout(self, l: int) -> RowLayout:
        """Row layout of hidden layer ``l``; ``l = L + 1`` is the output (its values)."""
        key = ("layout", l)
        if key not in self._memo:
            self._memo[key] = self._layout(l)
        return self._memo[key]

    def _layout(self, l: int) -> RowLayout:
        if l == self.num_layers + 1:
            C = self.num_outputs
            return RowLayout(0, C, {self.output_node: (0, C)})
        nl = self.layers[l - 1]
        live = self.live_at(l)
        col = 0
        carry = {}
        if nl.kind == "elementwise":
            n_cut = len(nl.breakpoints) * nl.width
            col = n_cut
            z = nl.inputs[0]
            # z itself is carried when later nodes use it, or when no breakpoint column is
            # z exactly (z - b rounds z to the precision of b: Hardtanh, clamp)
            needed_later = self.last_use.get(z, -1) > self._boundary(l) or nl.zero_breakpoint is None
            for n in live:
                if n is z and not needed_later:
                    continue
                w = int(math.prod(self.shape[n]))
                carry[n] = (col, col + w)
                col += w
        else:
            n_cut = nl.idx.shape[0]
            col = n_cut
            for n in nl.inputs:  # the candidates, in order: their concatenation is X
                w = int(math.prod(self.shape[n]))
                carry[n] = (col, col + w)
                col += w
            for n in live:
                if n in carry:
                    continue
                w = int(math.prod(self.shape[n]))
                carry[n] = (col, col + w)
                col += w
        return RowLayout(n_cut, col, carry)

    # -- evaluation -----------------------------------------------------------------------------
    def _chunk_env(self, l: int, lay: RowLayout, rows: np.ndarray) -> Dict:
        """Tensors of the nodes live at layer ``l`` for a chunk of rows, and the layer's
        output (its nonlinearity applied)."""
        b = rows.shape[0]
        t = rows if isinstance(rows, torch.Tensor) else torch.from_numpy(rows)
        env = {}
        for n, (a, e) in lay.carry.items():
            env[n] = t[:, a:e].reshape(b, *self.shape[n])
        env.update(self._static_env(b))
        if l > self.num_layers:
            return env
        nl = self.layers[l - 1]
        if nl.kind == "elementwise":
            z = nl.inputs[0]
            if z not in env:
                c0, c1 = self._z_columns(l, lay)
                env[z] = t[:, c0:c1].reshape(b, *self.shape[z])
            env[nl.node] = self._exec(nl.node, env)
        else:
            X = torch.cat([env[n].reshape(b, -1) for n in nl.inputs], dim=1)
            vals = X[:, torch.from_numpy(nl.idx).to(X.device)].amax(dim=2).reshape(b, *nl.out_shape)
            env[nl.node] = _MaxResult(vals, None) if self._is_max_tuple(nl.node) else vals
        return env

    @torch.no_grad()
    def rows_for(self, l: int, source, chunk: int = 32768, as_tensor: Optional[bool] = None
                 ) -> Tuple[np.ndarray, RowLayout]:
        """Rows of hidden layer ``l`` (or the output for ``l = L + 1``) at every vertex.

        ``source`` is ``(blocks, prev_layout, prev_l)``: row blocks of the previous
        layer (taken in order, never concatenated) and their layout; for ``l = 1`` it is
        the input tensor ``(n, *input_shape)``. The result is a torch tensor on
        :attr:`device` when ``as_tensor`` is true (default: when the blocks are tensors,
        or the input is on a GPU; see :meth:`to`), else a numpy array."""
        lay = self.layout(l)
        seg = self._segment(l)
        if l == 1:
            x = source
            x = x.reshape(x.shape[0], -1)
            blocks = [x if as_tensor or x.device.type != "cpu" else x.numpy()]
            prev_l, prev_lay = 0, None
        else:
            blocks, prev_lay, prev_l = source
        n_total = sum(bk.shape[0] for bk in blocks)
        on_device = as_tensor if as_tensor is not None else any(isinstance(bk, torch.Tensor) for bk in blocks)
        if on_device:
            blocks = [bk if isinstance(bk, torch.Tensor) else torch.from_numpy(bk) for bk in blocks]
        if on_device:
            out = torch.empty((n_total, lay.n_cols), dtype=torch.float64, device=self.device)
        else:
            out = np.empty((n_total, lay.n_cols), dtype=np.float64)
        # Bound the rows per batch by the widest per-vertex tensor of the segment (a
        # convolution's output can be wider than its input and its rows): each batch's
        # temporaries stay near 8 MB, in cache and in the allocator's reused heap rather
        # than fresh pages (see splinecam.driver.host_memory).
        width = max(lay.n_cols, max((bk.shape[1] for bk in blocks), default=1), self._segment_width(l), 1)
        chunk = max(64, min(chunk, (1 << 20) // width))
        i = 0
        dense = self._dense(l)
        for part in _batches(blocks, chunk, on_device):
            m = part.shape[0]
            part = part if on_device or l > 1 else torch.from_numpy(part)
            with _threads_for(m * width, self.device):
                if dense is not None:
                    a = part if l == 1 else self._chunk_env(prev_l, prev_lay, part)[self.layers[prev_l - 1].node]
                    self._dense_rows(l, lay, dense, a, out[i:i + m])
                else:
                    self._write_row(l, lay, self._segment_env(l, seg, prev_l, prev_lay, part), out[i:i + m])
            i += m
        return out, lay

    def _segment(self, l: int) -> List[fx.Node]:
        """The nodes evaluated between hidden layer ``l - 1`` and hidden layer ``l``."""
        key = ("segment", l)
        if key not in self._memo:
            self._memo[key] = self._segment_nodes(l)
        return self._memo[key]

    def _segment_width(self, l: int) -> int:
        """Values per vertex of the widest tensor computed in the segment before layer ``l``."""
        key = ("segment_width", l)
        if key not in self._memo:
            self._memo[key] = max((int(math.prod(self.shape[n])) for n in self._segment(l) if n in self.shape),
                                  default=1)
        return self._memo[key]

    def _segment_nodes(self, l: int) -> List[fx.Node]:
        start = self._boundary(l - 1) + 1 if l > 1 else 0
        stop = self._boundary(l)
        return [n for n in self.nodes[start:stop] if n in self.shape or (n not in self.static and n.op != "output"
                                                                         and self.kind.get(n) not in ("dropped",))]

    def _dense(self, l: int) -> Optional[nn.Linear]:
        """This copy's ``nn.Linear`` when the segment before hidden layer ``l`` (or the
        output, ``l = L + 1``) is that one module applied to the previous layer's output
        (or to the flat input, ``l = 1``) and its output is all the rows hold; else None.

        Such a segment (every layer of an MLP) is evaluated without interpreting the
        graph: the layer's rows are written by one ``addmm`` into their columns
        (:meth:`_dense_rows`), the very call ``F.linear`` makes, so the values are the
        same to the bit. A module with forward hooks (or torch's global ones) takes the
        general path, which calls them."""
        target = self._dense_target_of(l)
        if target is None:
            return None
        m = self._submodule(target)
        if cache.has_hooks(m) or _torch_module._global_forward_hooks or _torch_module._global_forward_pre_hooks:
            return None
        return m

    def _dense_target_of(self, l: int) -> Optional[str]:
        """:meth:`_dense_target`, kept with the layouts (the same for every copy)."""
        key = ("dense", l)
        target = self._memo.get(key, False)
        if target is False:
            target = self._memo[key] = self._dense_target(l)
        return target

    def _dense_target(self, l: int) -> Optional[str]:
        """The module path of :meth:`_dense`'s Linear for segment ``l`` (None: none)."""
        seg = [n for n in self._segment(l) if n.op != "placeholder"]
        if len(seg) != 1 or seg[0].op != "call_module" or len(seg[0].args) != 1 or seg[0].kwargs:
            return None
        lin = seg[0]
        if type(self.gm.get_submodule(lin.target)).forward is not nn.Linear.forward:
            return None
        if l == 1:
            ok = lin.args[0] is self.nodes[0] and len(self.input_shape) == 1
        else:
            prev = self.layers[l - 2]
            ok = lin.args[0] is prev.node and len(prev.out_shape) == 1
        lay = self.layout(l)
        if l > self.num_layers:
            ok = ok and self.output_node is lin and set(lay.carry) == {lin}
        else:
            nl = self.layers[l - 1]
            ok = ok and nl.kind == "elementwise" and nl.inputs[0] is lin and set(lay.carry) <= {lin}
        return lin.target if ok else None

    def _dense_rows(self, l: int, lay: RowLayout, m: nn.Linear, a: torch.Tensor, out) -> None:
        """Rows of layer ``l`` into ``out`` (numpy or tensor, ``(len(a), n_cols)``) from the
        input ``a`` of its Linear ``m`` (:meth:`_dense`): the output ``z`` by one
        ``addmm`` into its column block, the other breakpoint columns ``z - b`` from it."""
        o = out if isinstance(out, torch.Tensor) else torch.from_numpy(out)
        a = a.reshape(a.shape[0], -1)
        c0, c1 = lay.carry[self.output_node] if l > self.num_layers else self._z_columns(l, lay)
        z = o[:, c0:c1]
        w = m.weight
        if a.device != w.device:
            a = a.to(w.device)
        if o.device != w.device:  # host rows of a network on a GPU
            z.copy_(F.linear(a, w, m.bias).cpu())
        elif m.bias is None:
            torch.mm(a, w.t(), out=z)
        else:
            torch.addmm(m.bias, a, w.t(), out=z)
        if l > self.num_layers:
            return
        nl = self.layers[l - 1]
        N = nl.width
        for k, bp in enumerate(nl.breakpoints):
            if k * N != c0:
                torch.sub(z, bp, out=o[:, k * N:(k + 1) * N])

    def _segment_env(self, l: int, seg, prev_l: int, prev_lay: Optional[RowLayout], part, inputs_hook=None) -> Dict:
        """Every tensor of the segment before hidden layer ``l`` for one batch: from the
        input ``part`` (``l = 1``) or from rows of layer ``prev_l``. ``inputs_hook(env,
        keys)`` may rewrite the segment's per-vertex inputs before the glue runs."""
        m = part.shape[0]
        if l == 1:
            env = {self.nodes[0]: part.reshape(m, *self.input_shape), **self._static_env(m)}
            keys = [self.nodes[0]]
        else:
            env = self._chunk_env(prev_l, prev_lay, part)
            keys = list(prev_lay.carry) + [self.layers[prev_l - 1].node]
        if inputs_hook is not None:
            inputs_hook(env, keys)
        for n in seg:
            if n in env or n.op == "placeholder":
                continue
            env[n] = self._exec(n, env)
        return env

    @torch.no_grad()
    def magnitudes(self, x: torch.Tensor, probes: int = 3, seed: int = 0
                   ) -> Tuple[List[np.ndarray], List[np.ndarray], List[np.ndarray]]:
        """The rounding scales of every column of every layer's rows, at the inputs ``x``.

        Each layer's values are an affine map of the tensors before it, ``z = A a + c``;
        float64 evaluates ``A a`` with an error of a few ulps of its terms ``A_ji a_i``,
        whatever ``z`` itself is (a unit that is exactly zero in exact arithmetic comes
        out as noise of that size). The size of the terms is estimated from ``A (s * a)``
        over random sign vectors ``s`` (``probes`` of them, seeded): its typical size is
        the Euclidean norm of the terms.

        Returns ``(direct, accumulated, values)``, each a list over layers ``1 .. L + 1``
        (the output last); ``direct`` and ``accumulated`` of ``(n_cols,)`` arrays, the
        largest over ``x``:

        - ``direct``: the terms of the layer's own glue applied to the previous layer's
          values: the error the driver makes when it computes a layer's rows from the
          previous layer's rows at a vertex;
        - ``accumulated``: the terms applied to ``|a| + e``, with ``e`` the accumulated
          scale of the inputs: the error of a forward pass from the input (lean layers,
          activation patterns at points);
        - ``values``: the rows themselves at ``x``, ``(n, n_cols)`` (the chain columns of
          a max-type layer are zeros: the driver fills them)."""
        x = torch.as_tensor(x, dtype=torch.float64, device=self.device).reshape(len(x), -1)
        with _threads_for(len(x) * (2 * probes + 2) * max(self.layer_widths + [x.shape[1]]), self.device), \
                np.errstate(over="ignore", invalid="ignore"):  # a model whose values overflow is refused later, clearly
            return self._magnitudes(x, probes, seed)

    def _magnitudes(self, x, probes, seed):
        # Everything but the glue itself is numpy on the host: these are a few dozen rows,
        # where a torch op costs several times its numpy twin.
        n, P = len(x), probes
        B = 2 * P + 2
        dev = self.device
        direct, accumulated, values = [], [], []
        source = x.cpu().numpy()
        scale = np.zeros_like(source)  # values and accumulated scales at x
        for l in range(1, self.num_layers + 2):
            lay, seg = self.layout(l), self._segment(l)
            prev_l, prev_lay = (l - 1, self.layout(l - 1)) if l > 1 else (0, None)

            def hook(env, keys):
                # blocks of n rows: the values, zero (the constant), P sign probes of the
                # values, P sign probes of |values| + their accumulated scale
                for i, k in enumerate(keys):
                    v = env[k].values if isinstance(env[k], _MaxResult) else env[k]
                    if not isinstance(v, torch.Tensor):
                        continue
                    sg = self._probe_signs(seed, probes, n, l, i, tuple(v.shape)).reshape(B, n, -1)
                    a = v.cpu().numpy().reshape(B, n, -1)
                    e = scale_env[k].reshape(1, n, -1)
                    b = np.empty(a.shape)
                    b[0] = a[0]
                    b[1] = 0.0
                    np.multiply(a[2:P + 2], sg[2:P + 2], out=b[2:P + 2])
                    np.abs(a[P + 2:], out=b[P + 2:])
                    b[P + 2:] += e
                    b[P + 2:] *= sg[P + 2:]
                    t = torch.from_numpy(b.reshape(v.shape)).to(v.device)
                    env[k] = _MaxResult(t, None) if isinstance(env[k], _MaxResult) else t

            dense = self._dense(l) if dev.type == "cpu" and self._dense_ready(l) else None
            if dense is not None:
                both, rows0 = (t[0] for t in self._dense_terms(l, lay, [self], [dense], source[None], scale[None], seed,
                                                            probes))
            else:
                scale_env = self._input_scales(l, prev_l, prev_lay, scale)
                env = self._segment_env(l, seg, prev_l, prev_lay, torch.from_numpy(np.tile(source, (B, 1))).to(dev),
                                        hook)
                rows = np.empty((n * B, lay.n_cols))
                self._write_row(l, lay, env, rows)
                rows = rows.reshape(B, n, lay.n_cols)
                # Mean absolute value, scaled to estimate the root-mean-square (for random signs
                # E|sum s_i t_i| ~ sqrt(2 / pi) |t|): squares would overflow beyond 1e154.
                diff = np.abs(rows[2:] - rows[1]).reshape(2, P, n, lay.n_cols)
                both = np.add.reduce(diff, axis=1)  # the means of the two kinds of probes
                both /= P
                both *= math.sqrt(math.pi / 2)
                rows0 = rows[0].copy()
            direct.append(both[0].max(axis=0))
            accumulated.append(both[1].max(axis=0))
            values.append(rows0)
            source, scale = rows0, both[1]
        return direct, accumulated, values

    def _dense_ready(self, l: int) -> bool:
        """Whether :meth:`_dense_terms` takes layer ``l``: its segment is one Linear
        (:meth:`_dense`) of the input or of an elementwise layer's output."""
        return l == 1 or self.layers[l - 2].kind == "elementwise"

    def _dense_terms(self, l, lay, nets, ms, source, scale, seed, probes):
        """:meth:`magnitudes` of layer ``l`` for networks ``nets`` of this structure at once,
        when its segment is one Linear (``ms``: theirs, :meth:`_dense`; see
        :meth:`_dense_ready`): the same probes (the same signs) of its one input as the
        general path, multiplied by the weight alone (the bias cancels in the difference
        to the zero probe). ``source`` and ``scale``: ``(K, n, ...)`` the previous layer's
        rows and accumulated scales at the points (the inputs and zeros for ``l = 1``).
        Returns ``(both, values)``: the direct and accumulated term sizes ``(K, 2, n,
        n_cols)`` and the rows at the points ``(K, n, n_cols)``."""
        K, n, P = len(nets), source.shape[1], probes
        if l == 1:
            i, a, e = 0, source.reshape(K, n, -1), scale.reshape(K, n, -1)
        else:  # the input follows the carried tensors among the segment's inputs
            prev, prev_lay = self.layers[l - 2], self.layout(l - 1)
            z, i = prev.inputs[0], len(prev_lay.carry)
            c0, c1 = self._z_columns(l - 1, prev_lay)
            e = scale[:, :, c0:c1]  # the output's error is at most its input's (as _input_scales)
            a = np.empty((K, n, c1 - c0))
            if K > 1 and not self.static and self._stateless(prev.node):  # one call for all
                a.reshape(K * n, -1)[:] = self._exec(prev.node, {z: torch.from_numpy(
                    np.ascontiguousarray(source[:, :, c0:c1]).reshape(K * n, -1))}).numpy()
            else:
                for k, net in enumerate(nets):  # the nonlinearity alone, on its input's columns
                    env = net._static_env(n)
                    env[z] = torch.from_numpy(source[k, :, c0:c1])
                    a[k] = net._exec(prev.node, env).reshape(n, -1).numpy()
        sg = self._probe_signs(seed, probes, n, l, i, ((2 * P + 2) * n, a.shape[2])).reshape(2 * P + 2, n, -1)
        x = np.empty((K, 2 * P, n, a.shape[2]))
        np.multiply(a[:, None], sg[2:P + 2], out=x[:, :P])
        np.abs(a, out=x[:, P])
        x[:, P] += e
        x[:, P + 1:] = x[:, P, None]
        x[:, P:] *= sg[P + 2:]
        w = np.stack([m.weight.detach().numpy() for m in ms]) if K > 1 else ms[0].weight.detach().numpy()[None]
        wt = w.transpose(0, 2, 1)
        y = np.abs(x.reshape(K, 2 * P * n, -1) @ wt).reshape(K, 2, P, n, -1)
        units = np.add.reduce(y, axis=2)
        units *= math.sqrt(math.pi / 2) / P
        z = a @ wt
        if ms[0].bias is not None:
            z += np.stack([m.bias.detach().numpy() for m in ms])[:, None] if K > 1 else ms[0].bias.detach().numpy()
        if l > self.num_layers or lay.n_cols == units.shape[3]:  # the output, or z - 0 alone
            return units, z
        # every column of a unit (its breakpoints, z itself) has the unit's terms
        values, both = np.empty((K, n, lay.n_cols)), np.empty((K, 2, n, lay.n_cols))
        N = self.layers[l - 1].width
        for k, bp in enumerate(self.layers[l - 1].breakpoints):
            np.subtract(z, bp, out=values[:, :, k * N:(k + 1) * N])
            both[..., k * N:(k + 1) * N] = units
        for c0, c1 in lay.carry.values():
            values[:, :, c0:c1] = z
            both[..., c0:c1] = units
        return both, values

    def _stateless(self, node: fx.Node) -> bool:
        """Whether node ``node`` computes the same in every copy: no submodule with
        parameters or buffers (the copies differ in nothing else)."""
        if node.op != "call_module":
            return node.op in ("call_function", "call_method")
        m = self._submodule(node.target)
        return not m._parameters and not m._buffers and not m._modules

    @staticmethod
    @torch.no_grad()
    def magnitudes_many(nets: Sequence["Network"], x: torch.Tensor, probes: int = 3, seed: int = 0) -> list:
        """:meth:`magnitudes` of several copies of one traced network (checkpoints of one
        architecture) at the same inputs ``x``: layer by layer for all at once when every
        segment is one Linear on the CPU, else one network after the other. The same
        values as :meth:`magnitudes` of each, up to rounding."""
        first = nets[0] if nets else None
        L = first.num_layers if first is not None else 0
        ok = first is not None and len(nets) > 1 and all(
            net._memo is first._memo and net.device.type == "cpu" for net in nets) and all(
            first._dense_target_of(l) is not None and first._dense_ready(l) for l in range(1, L + 2))
        ms = [[net._dense(l) for net in nets] for l in range(1, L + 2)] if ok else []
        if not ok or any(m is None for row in ms for m in row):
            return [net.magnitudes(x, probes, seed) for net in nets]
        x = torch.as_tensor(x, dtype=torch.float64).reshape(len(x), -1)
        K, n = len(nets), len(x)
        out = [([], [], []) for _ in nets]
        source = np.broadcast_to(x.numpy(), (K,) + tuple(x.shape))
        scale = np.zeros(source.shape)
        with _threads_for(n * (2 * probes + 2) * max(first.layer_widths + [x.shape[1]]), first.device), \
                np.errstate(over="ignore", invalid="ignore"):
            for l in range(1, L + 2):
                both, values = first._dense_terms(l, first.layout(l), nets, ms[l - 1], source, scale, seed, probes)
                top = both.max(axis=2)  # (K, 2, n_cols)
                for k, (direct, accumulated, vals) in enumerate(out):
                    direct.append(top[k, 0])
                    accumulated.append(top[k, 1])
                    vals.append(values[k])
                source, scale = values, both[:, 1]
        return out

    def _probe_signs(self, seed: int, probes: int, n: int, l: int, i: int, shape: tuple) -> np.ndarray:
        """Random signs of the ``i``-th input of layer ``l``'s glue in :meth:`magnitudes`:
        from a generator of their own (seeded by the seed, the layer and the input's
        place), so they do not depend on what was drawn before; small ones are kept with
        the layouts."""
        memo = ("signs", seed, probes, n, l, i, shape)
        signs = self._memo.get(memo)
        if signs is None:
            g = torch.Generator().manual_seed(seed * 1_000_003 + l * 1009 + i)
            signs = (torch.randint(0, 2, shape, generator=g, dtype=torch.float64) * 2 - 1).numpy()
            if signs.size <= _KEEP_SIGNS:
                self._memo[memo] = signs
        return signs

    def _input_scales(self, l: int, prev_l: int, prev_lay: Optional[RowLayout], scale: np.ndarray) -> Dict:
        """Accumulated scales of the per-vertex inputs of the segment before layer ``l``,
        from the scales ``scale`` of the previous layer's columns (or of the input)."""
        n = scale.shape[0]
        if l == 1:
            return {self.nodes[0]: scale}
        out = {k: scale[:, a:e] for k, (a, e) in prev_lay.carry.items()}
        nl = self.layers[prev_l - 1]
        if nl.kind == "elementwise":  # the output's error is at most its input's
            c0, c1 = self._z_columns(prev_l, prev_lay)
            out[nl.node] = scale[:, c0:c1]
        else:
            X = np.concatenate([out[t].reshape(n, -1) for t in nl.inputs], axis=1)
            out[nl.node] = X[:, nl.idx].max(axis=2)
        return out


    @torch.no_grad()
    def rows_from_input(self, l: int, x: torch.Tensor, chunk: int = 32768) -> Tuple[np.ndarray, RowLayout]:
        """Rows of hidden layer ``l`` (or the output, ``l = L + 1``) at inputs ``x``, by
        a forward pass from the input (used when the rows of all vertices do not fit)."""
        rows, lay = self.rows_for(1, x, chunk)
        for k in range(1, l):
            rows, lay = self.rows_for(k + 1, ([rows], lay, k), chunk)
        return rows, lay

    def _write_row(self, l: int, lay: RowLayout, env: Dict, out) -> None:
        m = out.shape[0]
        host = isinstance(out, np.ndarray)
        for n, (a, e) in lay.carry.items():
            v = env[n].reshape(m, -1)
            out[:, a:e] = v.cpu().numpy() if host else v
        if l > self.num_layers:
            return
        nl = self.layers[l - 1]
        if nl.kind == "elementwise":
            z = env[nl.inputs[0]].reshape(m, -1)
            N = nl.width
            for k, bp in enumerate(nl.breakpoints):
                if host:
                    np.subtract(z.cpu().numpy(), bp, out=out[:, k * N:(k + 1) * N])  # no temporary
                else:
                    torch.sub(z, bp, out=out[:, k * N:(k + 1) * N])
        else:
            out[:, :lay.n_cut] = 0.0  # the driver fills the chain column of each step

    @torch.no_grad()
    def all_preactivations(self, x: torch.Tensor) -> List[np.ndarray]:
        """Per hidden layer, values whose sign gives the activation pattern at inputs
        ``x`` (n, *input_shape): ``z - b`` for each breakpoint ``b`` of an elementwise
        layer; for a max-type layer, +1 for the winning candidate of each window and -1
        for the others. The last entry is the model's output (n, C)."""
        x = torch.as_tensor(x, dtype=torch.float64)
        with _threads_for(x.numel() * max(self.layer_widths + [1]), self.device):
            return self._all_preactivations(x)

    def _all_preactivations(self, x):
        env = {}
        res = []
        n_batch = x.shape[0]
        layer_of = {nl.node: nl for nl in self.layers}
        for n in self.nodes:
            if n.op == "output" or self.kind.get(n) == "dropped":
                continue
            if n in self.static:
                v = self.static[n]
                env[n] = v.materialize(n_batch) if isinstance(v, _BatchTemplate) else v
                continue
            env[n] = self._exec(n, env, x)
            nl = layer_of.get(n)
            if nl is None:
                continue
            floor = self.pattern_floors[len(res)] if self.pattern_floors is not None else None
            if nl.kind == "elementwise":
                z = env[nl.inputs[0]].reshape(n_batch, -1).numpy()
                v = np.concatenate([z - bp for bp in nl.breakpoints], axis=1)
                if floor is not None:  # rounding noise is an exact zero (splinecam.driver.tolerance)
                    v[np.abs(v) <= floor] = 0.0
                res.append(v)
            else:
                X = torch.cat([env[t].reshape(n_batch, -1) for t in nl.inputs], dim=1).numpy()
                cand = X[:, nl.idx]                                    # (n, W, k)
                if floor is None:
                    win = np.argmax(cand, axis=2)
                else:  # candidates within the floor of the maximum are tied: the first wins
                    win = np.argmax(cand >= cand.max(axis=2, keepdims=True) - floor[:, None], axis=2)
                onehot = np.full(cand.shape, -1.0)
                np.put_along_axis(onehot, win[:, :, None], 1.0, axis=2)
                res.append(onehot.reshape(n_batch, -1))
        res.append(env[self.output_node].reshape(n_batch, -1).numpy())
        return res

    @torch.no_grad()
    def patterns(self, x, num_layers: Optional[int] = None, chunk: int = 1024, packed: bool = False) -> np.ndarray:
        """(n, bits) bool activation pattern of the first ``num_layers`` hidden layers,
        evaluated in batches of ``chunk`` inputs; ``packed``: ``np.packbits`` of each
        row, (n, ceil(bits / 8)) uint8. ``x`` is a tensor of inputs, or a function
        ``x(a, b)`` that makes the inputs ``a:b`` of ``len(x)`` (inputs built batch by
        batch: a million plane points of a CNN slice do not fit as inputs at once)."""
        L = self.num_layers if num_layers is None else num_layers
        parts = []
        for i in range(0, len(x), chunk):
            xb = x(i, min(i + chunk, len(x))) if callable(x) else x[i:i + chunk]
            vals = self.all_preactivations(xb)[:L]
            bits = np.concatenate([v > 0 for v in vals], axis=1) if vals else np.zeros((len(xb), 0), bool)
            parts.append(np.packbits(bits, axis=1) if packed else bits)
        if not parts:
            return np.zeros((0, 0), np.uint8 if packed else bool)
        return np.concatenate(parts)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> np.ndarray:
        """The (float64) model's outputs (n, C) at inputs ``x``, final monotone op dropped."""
        return self.all_preactivations(x)[-1]


def _clone_module(t: nn.Module, src, path: str, mods: Dict[str, nn.Module], check: bool = False) -> nn.Module:
    """A copy of the template module ``t`` (and its submodules) with the parameters and
    buffers of ``src`` as new float64 tensors, each copy recorded in ``mods`` by its path
    (:meth:`Network._with_weights_of`). ``src`` is the module at ``path`` of a model of
    the template's structure, or a state dict of the whole model (tensors by their full
    names). LookupError when a tensor has no counterpart of its shape; with ``check``,
    ValueError when one holds NaN or infinite values."""
    c = mods[path] = object.__new__(type(t))
    c.__dict__ = t.__dict__.copy()
    flat = isinstance(src, Mapping)
    prefix = f"{path}." if path else ""
    for store in ("_parameters", "_buffers"):
        mine = getattr(t, store)
        theirs = {k: src.get(prefix + k) for k in mine} if flat else getattr(src, store)
        fresh = {}
        for k, v in mine.items():
            w = theirs.get(k)
            if v is None or w is None:
                if v is not w:
                    raise LookupError(k)
                fresh[k] = None
                continue
            if not isinstance(w, torch.Tensor) or w.shape != v.shape:
                raise LookupError(k)
            if check and w.is_floating_point() and not _all_finite(w):
                raise ValueError(_non_finite(prefix + k))
            w = w.detach().to(device="cpu", dtype=torch.float64 if w.is_floating_point() else w.dtype, copy=True)
            fresh[k] = nn.Parameter(w, requires_grad=False) if isinstance(v, nn.Parameter) else w
        c.__dict__[store] = fresh
    theirs = None if flat else src._modules
    c.__dict__["_modules"] = {k: None if m is None else
                              _clone_module(m, src if flat else theirs[k], prefix + k, mods, check)
                              for k, m in t._modules.items()}
    return c


def _non_finite(name: str) -> str:
    return f"the model's tensor '{name}' contains NaN or infinite values"


def _plan(n: fx.Node):
    """``bind(net)`` for node ``n``: what evaluating the node takes, worked out once per
    traced structure and shared by every copy of the network (the arguments that are
    nodes, the keyword arguments with ``inplace`` off); ``bind`` gives the copy's
    ``call(env, x)``, holding its submodule or attribute. A small layer's forward costs a
    few microseconds, less than interpreting its node did. The calls hold the network's
    modules, never the network itself: a copy that is let go is freed at once, weights
    and all, not at the next garbage collection."""
    if n.op == "placeholder":
        call = lambda env, x: x  # noqa: E731
        return lambda net: call
    if n.op == "get_attr":
        def bind_attr(net):
            obj = net.gm
            for part in n.target.split("."):
                obj = getattr(obj, part)
            return lambda env, x: obj
        return bind_attr
    kwargs = dict(n.kwargs)
    if "inplace" in kwargs:  # never write into the driver's arrays
        kwargs["inplace"] = False
    flat = all(not isinstance(a, (tuple, list, dict, slice)) for a in tuple(n.args) + tuple(kwargs.values()))
    if flat:  # arguments are nodes or constants: one look-up per node argument
        spec = tuple((isinstance(a, fx.Node), a) for a in n.args)
        kspec = tuple((k, isinstance(a, fx.Node), a) for k, a in kwargs.items())

        def args_of(env):
            return ([env[a] if node else a for node, a in spec],
                    {k: env[a] if node else a for k, node, a in kspec})
    else:
        def args_of(env):
            return (list(fx.node.map_arg(n.args, lambda a: env[a])),
                    dict(fx.node.map_arg(kwargs, lambda a: env[a])))
    if n.op == "call_module":
        target = n.target

        def bind_module(net):
            # The submodule's forward itself when neither it nor torch has forward hooks
            # (Module.__call__ costs more than a small layer's forward); modules get new
            # copies with every network copy (_with_weights_of), and so do these calls.
            m = net._submodule(target)
            forward = m if cache.has_hooks(m) else m.forward
            if forward is not m and type(m).forward is nn.Conv2d.forward:
                forward = SmallConv2d(m)  # few positions: one matrix product (small_conv)

            def call(env, x):
                a, k = args_of(env)
                f = m if _torch_module._global_forward_hooks or _torch_module._global_forward_pre_hooks else forward
                return f(*a, **k)
            return call
        return bind_module
    if n.op == "call_function":
        f = n.target

        def call(env, x):
            a, k = args_of(env)
            return f(*a, **k)
        return lambda net: call
    if n.op == "call_method":
        name = n.target
        if name in _KEEP_DTYPE_METHODS:  # stay in float64 on the CPU
            call = lambda env, x: args_of(env)[0][0]  # noqa: E731
            return lambda net: call
        if name.endswith("_") and not name.startswith("_"):
            name = name[:-1]

        def call(env, x):
            a, k = args_of(env)
            return getattr(a[0], name)(*a[1:], **k)
        return lambda net: call
    raise RuntimeError(f"unexpected node {n.op}")


class _Tracer(fx.Tracer):
    """torch.fx's tracer, recording each node's source lines (for messages that name
    them) with Python's own ``traceback`` rather than torch's ``record_stack_traces``,
    whose symbolizer imports torch._inductor, torch._dynamo, sympy and networkx (a
    thousand modules, seconds at a process's first partition). Frames from the first
    ``forward`` on are kept, minus those inside torch and this tracer."""

    def create_node(self, *args, **kwargs):
        node = super().create_node(*args, **kwargs)
        if not node.stack_trace:
            frames = traceback.extract_stack()
            first = next((i for i, f in enumerate(frames) if f.name == "forward"), None)
            if first is not None:
                keep = [f for f in frames[first:] if not os.path.abspath(f.filename).startswith(_TORCH_DIR)
                        and os.path.abspath(f.filename) != _THIS_FILE]
                if keep:
                    node.stack_trace = "".join(traceback.StackSummary.from_list(keep).format()).strip()
        return node


_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_THIS_FILE = os.path.abspath(__file__)


def _batches(blocks, chunk: int, tensors: bool):
    """Contiguous batches of at most ``chunk`` rows of the row blocks taken in order:
    long blocks are sliced, runs of short ones (the engine returns the rows of its new
    vertices in many small blocks) are joined, so the glue runs once per ``chunk`` rows
    rather than once per block."""
    join = torch.cat if tensors else np.concatenate
    pending, n = [], 0
    for bk in blocks:
        s, size = 0, bk.shape[0]
        while s < size:
            take = min(chunk - n, size - s)
            pending.append(bk[s:s + take])
            n += take
            s += take
            if n == chunk:
                yield _contiguous(pending[0], tensors) if len(pending) == 1 else join(pending)
                pending, n = [], 0
    if pending:
        yield _contiguous(pending[0], tensors) if len(pending) == 1 else join(pending)


def _contiguous(a, tensors: bool):
    return a.contiguous() if tensors else np.ascontiguousarray(a)


class _MaxResult(tuple):
    """The (values, indices) result of ``x.max(dim)``; only the values are available."""

    def __new__(cls, values, indices):
        return super().__new__(cls, (values, indices))

    @property
    def values(self):
        return self[0]


class _BatchTemplate:
    """A non-tensor value that depends on the batch size (``x.size(0)``, ``x.shape``)."""

    def __init__(self, value, batch_slots):
        self.value, self.slots = value, batch_slots

    def materialize(self, b: int):
        if self.slots == "int":
            return b
        v = list(self.value)
        for i in self.slots:
            v[i] = b
        return type(self.value)(v) if not isinstance(self.value, torch.Size) else torch.Size(v)


def _batch_template(a, b, node):
    if a == b if not isinstance(a, torch.Tensor) else False:
        return a
    if isinstance(a, int) and a == 2 and b == 3:
        return _BatchTemplate(a, "int")
    if isinstance(a, (tuple, list, torch.Size)) and len(a) == len(b):
        slots = [i for i, (u, v) in enumerate(zip(a, b)) if u != v]
        if all(a[i] == 2 and b[i] == 3 for i in slots):
            return _BatchTemplate(a, slots)
    raise UnsupportedModelError(f"node '{node.name}'{_where(node)} computes a value that depends on the batch in a "
                                "way splinecam cannot follow")
