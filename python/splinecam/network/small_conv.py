"""Convolutions over a few positions, as one matrix product.

Deep in a CNN at CIFAR or Tiny-ImageNet resolution the feature maps are 4x4, 2x2 or
1x1, and torch's float64 convolution on the CPU spends most of its time on per-image
bookkeeping there: ResNet-18 at 3x32x32 spends close to half of its float64 forward pass
in the 2x2 and 1x1 stages. A convolution is a linear map of its whole input; over so few
positions its matrix, ``(C*H*W, O*Ho*Wo)``, is small, and one matrix product with it does
the work in the fewest operations (a 3x3 convolution of a 1x1 map with padding 1 is its
centre tap alone) at the speed of a large GEMM.

The matrix holds the weights themselves (each entry the weight of the tap that reads
that input for that output, zero where a tap reads padding), so the product has the
same terms as the convolution; only the order of summation, hence the last bits of
rounding, can differ. The driver evaluates every tensor of a network through the same
calls, so the rows, the tolerances and the activation patterns it computes agree.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallConv2d", "MAX_MATRIX_BYTES"]

#: The largest matrix kept per convolution (bytes); beyond it torch's convolution runs.
MAX_MATRIX_BYTES = 64 << 20


class SmallConv2d:
    """``m(x)`` for an ``nn.Conv2d`` ``m``, as a product with the matrix of the map when
    the input has at most twice as many positions as the kernel has taps (the product
    then needs at most twice the convolution's multiplications, at several times its
    speed in float64), else ``m.forward(x)``.

    The matrix is made at the first call for an input shape and kept while the module's
    weight and bias are unchanged (their version counters and storage: an in-place
    copy of new weights makes it again)."""

    def __init__(self, m: nn.Conv2d):
        self.m = m
        self._key = None
        self._mat = self._bias = None
        self._out_shape = None

    def applies(self, x: torch.Tensor) -> bool:
        m = self.m
        if x.dim() != 4 or not x.is_floating_point() or m.padding_mode != "zeros":
            return False
        C, H, W = x.shape[1:]
        kh, kw = m.kernel_size
        if H * W > 2 * kh * kw:
            return False
        Ho, Wo = _output_size(m, H, W)
        return Ho > 0 and Wo > 0 and C * H * W * m.out_channels * Ho * Wo * x.element_size() <= MAX_MATRIX_BYTES

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.applies(x):
            return self.m.forward(x)
        m = self.m
        w, b = m.weight, m.bias
        key = (tuple(x.shape[1:]), x.dtype, x.device, w.data_ptr(), w._version,
               None if b is None else (b.data_ptr(), b._version))
        if key != self._key:
            self._build(x)
            self._key = key
        y = torch.addmm(self._bias, x.reshape(x.shape[0], -1), self._mat) if self._bias is not None \
            else torch.mm(x.reshape(x.shape[0], -1), self._mat)
        return y.reshape(x.shape[0], *self._out_shape)

    @torch.no_grad()
    def _build(self, x: torch.Tensor) -> None:
        """The map's matrix from the weights: entry ((c, ih, iw), (o, oh, ow)) is the
        weight of tap (i, j) that reads input (ih, iw) for output (oh, ow), zero where no
        tap does (padding)."""
        m = self.m
        C, H, W = x.shape[1:]
        Ho, Wo = _output_size(m, H, W)
        O, G = m.out_channels, m.groups
        Cg, Og = C // G, O // G
        w = m.weight.to(x.dtype)
        mat = torch.zeros((C, H, W, O, Ho, Wo), dtype=x.dtype, device=x.device)
        (sh, sw), (dh, dw), (kh, kw) = m.stride, m.dilation, m.kernel_size
        ph, pw = _padding(m)
        for oh in range(Ho):
            for ow in range(Wo):
                for i in range(kh):
                    ih = oh * sh - ph + i * dh
                    if not 0 <= ih < H:
                        continue
                    for j in range(kw):
                        iw = ow * sw - pw + j * dw
                        if not 0 <= iw < W:
                            continue
                        for g in range(G):  # distinct taps read distinct inputs: each entry is set once
                            mat[g * Cg:(g + 1) * Cg, ih, iw, g * Og:(g + 1) * Og, oh, ow] = \
                                w[g * Og:(g + 1) * Og, :, i, j].t()
        self._out_shape = (O, Ho, Wo)
        self._mat = mat.reshape(C * H * W, O * Ho * Wo)
        self._bias = None if m.bias is None else m.bias.to(x.dtype).repeat_interleave(Ho * Wo).contiguous()


def _padding(m: nn.Conv2d):
    """The zeros before the first row and column: ``padding``, or for ``"same"`` (stride
    1) half of the total, the smaller half first, as torch pads."""
    if m.padding == "valid":
        return 0, 0
    if m.padding == "same":
        return tuple((d * (k - 1)) // 2 for d, k in zip(m.dilation, m.kernel_size))
    return tuple(m.padding)


def _output_size(m: nn.Conv2d, H: int, W: int):
    """The output's height and width of convolution ``m`` over an ``H x W`` input."""
    if m.padding == "same":
        return H, W
    pad = (0, 0) if m.padding == "valid" else m.padding
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, p, d, k, s in zip((H, W), pad, m.dilation, m.kernel_size, m.stride))
