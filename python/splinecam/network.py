"""Turning a torch model into what the engine needs: affine segments separated by
piecewise-linear nonlinearities, evaluated in float64 on batches of vertices."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["Network", "SUPPORTED_MODULES", "UnsupportedModelError"]

# Affine modules (in eval mode) and piecewise-linear nonlinearities that a Sequential
# model may contain.
AFFINE_MODULES = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.Flatten, nn.Dropout,
                  nn.Identity)
NONLINEAR_MODULES = (nn.ReLU, nn.LeakyReLU)
SUPPORTED_MODULES = (nn.Sequential,) + AFFINE_MODULES + NONLINEAR_MODULES


class UnsupportedModelError(TypeError):
    """The model contains something splinecam cannot partition exactly."""


def _supported_list() -> str:
    return ", ".join(m.__name__ for m in SUPPORTED_MODULES)


@dataclass
class Activation:
    """A piecewise-linear nonlinearity applied elementwise; its breakpoint function is
    the pre-activation itself (one zero set per unit)."""
    name: str           # module path in the model, e.g. "4" or "features.2"
    negative_slope: float  # 0 for ReLU

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        if self.negative_slope == 0.0:
            return F.relu(z)
        return F.leaky_relu(z, self.negative_slope)


def _flatten(module: nn.Module, prefix: str, out: list) -> None:
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            _flatten(child, f"{prefix}.{name}" if prefix else name, out)
        return
    if not isinstance(module, AFFINE_MODULES + NONLINEAR_MODULES):
        raise UnsupportedModelError(
            f"module '{prefix or type(module).__name__}' ({type(module).__name__}) is not supported: splinecam "
            f"needs affine layers and piecewise-linear nonlinearities. Supported modules: {_supported_list()}")
    out.append((prefix, module))


class Network:
    """A float64 copy of a model, split as ``A_0, s_1, A_1, ..., s_L, A_L``: affine
    segments ``A_l`` and nonlinearities ``s_l``. Hidden layer ``l`` (1-based) is
    ``s_l``; its pre-activations are the breakpoint values of the engine."""

    def __init__(self, segments: List[nn.Sequential], activations: List[Activation],
                 layer_shapes: List[Tuple[int, ...]], output_shape: Tuple[int, ...], input_shape: Tuple[int, ...]):
        self.segments = segments
        self.activations = activations
        self.layer_shapes = layer_shapes    # pre-activation shape of each hidden layer
        self.output_shape = output_shape
        self.input_shape = input_shape

    @property
    def num_layers(self) -> int:
        return len(self.activations)

    @property
    def layer_widths(self) -> List[int]:
        return [int(np.prod(s)) for s in self.layer_shapes]

    @property
    def layer_names(self) -> List[str]:
        return [a.name for a in self.activations]

    @property
    def num_outputs(self) -> int:
        return int(np.prod(self.output_shape))

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_model(cls, model: nn.Module, input_shape: Sequence[int]) -> "Network":
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
        training = [n or type(model).__name__ for n, m in model.named_modules() if m.training]
        if training:
            raise ValueError(
                f"the model is in training mode (e.g. module '{training[0]}'): BatchNorm and Dropout then compute "
                "a different function than at inference. Call model.eval() before splinecam.partition(...).")
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise ValueError(f"the model's tensor '{name}' contains NaN or infinite values")
        modules: list = []
        if not isinstance(model, nn.Sequential):
            if isinstance(model, AFFINE_MODULES + NONLINEAR_MODULES):
                modules = [(type(model).__name__, model)]
            else:
                raise UnsupportedModelError(
                    f"the model is a {type(model).__name__}, not an nn.Sequential: wrap its layers in "
                    f"nn.Sequential (nesting is fine). Supported modules: {_supported_list()}")
        else:
            _flatten(model, "", modules)
        segments, acts, current = [], [], []
        for name, m in modules:
            if isinstance(m, NONLINEAR_MODULES):
                segments.append(current)
                slope = float(m.negative_slope) if isinstance(m, nn.LeakyReLU) else 0.0
                acts.append(Activation(name, slope))
                current = []
            else:
                current.append(copy.deepcopy(m).to(device="cpu", dtype=torch.float64).eval())
        segments.append(current)
        seqs = [nn.Sequential(*s) for s in segments]
        # Shapes by one forward pass of a dummy input; a mismatch fails here, clearly.
        input_shape = tuple(int(s) for s in input_shape)
        x = torch.zeros((1,) + input_shape, dtype=torch.float64)
        shapes = []
        with torch.no_grad():
            for i, seg in enumerate(seqs):
                try:
                    x = seg(x)
                except Exception as e:  # shape mismatch inside the model
                    raise ValueError(
                        f"the model cannot take inputs of shape {input_shape} (from the slice): "
                        f"{type(e).__name__}: {e}") from None
                if i < len(acts):
                    shapes.append(tuple(x.shape[1:]))
                    x = acts[i](x)
        if x.dim() != 2:
            raise ValueError(f"the model's output must be a batch of vectors (n, C); it has shape {tuple(x.shape)} "
                             "(add nn.Flatten() at the end)")
        return cls(seqs, acts, shapes, tuple(x.shape[1:]), input_shape)

    # -- evaluation ----------------------------------------------------------------------
    @torch.no_grad()
    def first(self, x: torch.Tensor, chunk: int = 65536) -> np.ndarray:
        """Pre-activations of hidden layer 1 (or the output when there is none) at
        inputs ``x`` ``(n, *input_shape)``: ``(n, width)`` float64."""
        return self._apply(self.segments[0], x, lambda t: t, chunk)

    @torch.no_grad()
    def next(self, layer: int, z, chunk: int = 65536) -> np.ndarray:
        """From pre-activations of hidden layer ``layer`` (1-based) at some points,
        ``(n, width)`` (or a list of such blocks, taken in order), to those of the next
        layer (or the output)."""
        act, shape = self.activations[layer - 1], self.layer_shapes[layer - 1]
        blocks = z if isinstance(z, (list, tuple)) else [z]
        return self._apply(self.segments[layer], [torch.from_numpy(b) for b in blocks],
                           lambda t: act(t.reshape(t.shape[0], *shape)), chunk)

    @staticmethod
    def _apply(seg: nn.Module, blocks, pre: Callable, chunk: int) -> np.ndarray:
        """Run ``seg(pre(x))`` over the rows of ``blocks`` in chunks, into one
        preallocated (n, out_width) float64 array."""
        if isinstance(blocks, torch.Tensor):
            blocks = [blocks]
        n = sum(b.shape[0] for b in blocks)
        out = None
        i = 0
        for b in blocks:
            for s in range(0, b.shape[0], chunk):
                y = seg(pre(b[s:s + chunk]))
                y = y.reshape(y.shape[0], -1)
                if out is None:
                    out = np.empty((n, y.shape[1]), dtype=np.float64)
                out[i:i + y.shape[0]] = y.numpy()
                i += y.shape[0]
        if out is None:  # no rows at all: width from an empty pass
            y = seg(pre(blocks[0][:0]))
            out = np.empty((0, y.reshape(0, -1).shape[1]))
        return out

    @torch.no_grad()
    def all_preactivations(self, x: torch.Tensor) -> List[np.ndarray]:
        """Pre-activations of every hidden layer plus the output at inputs ``x``: a list
        of ``L + 1`` arrays ``(n, width)``."""
        z = self.first(x)
        out = [z]
        for l in range(1, self.num_layers + 1):
            z = self.next(l, z)
            out.append(z)
        return out
