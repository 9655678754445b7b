"""The engine on models beyond plain MLPs, against independent evidence.

Models: a CNN with BatchNorm and MaxPool, residual MLPs and CNN blocks, the functional
forms of the piecewise-linear nonlinearities, maxout, ``torch.maximum``, ``torch.cat``,
slicing, AdaptiveAvgPool, a final softmax and a final sigmoid.

None of the evidence comes from the engine or from its traced copy of the model:

* activation states are recorded from the ORIGINAL model (a float64 deep copy) while it
  runs, by a ``TorchFunctionMode`` that sees every call of a piecewise-linear op
  (``F.relu``, ``torch.relu``, ``x.relu()``, ``hardtanh``, ``clamp``, ``prelu``,
  ``abs``, ``leaky_relu``, max-pooling, ``max(dim)``, ``maximum``): for elementwise ops
  which side of each breakpoint every input lies on, for max-type ops which candidate
  wins (the indices torch itself returns);
* every region holds one state at many random interior points, different regions hold
  different states, and every state on a dense grid is the state of the region that
  ``locate`` returns;
* the model's output equals the region's affine map at those points;
* hand-worked region counts and areas for maxima of two and three affine functions;
* a max-pool net and the same net written with ReLUs (``max(a, b) = b + relu(a - b)``)
  have the same partition.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

splinecam = pytest.importorskip("splinecam")
from splinecam.testing import check_partition  # noqa: E402

SQUARE = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])


# --------------------------------------------------------------------------- #
# independent evidence: activation states of the original model
# --------------------------------------------------------------------------- #
class StateRecorder(TorchFunctionMode):
    """Records, for every call of a piecewise-linear op while the model runs, the
    activation state of every input in the batch and how far it is from changing.

    ``calls`` is a list of ``(name, state, margin)``: ``state`` (n, m) int64 and
    ``margin`` (n,) float64, the smallest distance to a breakpoint (elementwise ops)
    or gap between the two best candidates (max-type ops), relative to the largest
    such value in the batch. The mode is inactive while an op it sees runs, so
    ``nn.ReLU -> F.relu -> torch.relu`` is one call."""

    ZERO_BREAKPOINT = {"relu", "relu_", "leaky_relu", "leaky_relu_", "prelu", "abs", "abs_"}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        rec = None
        if name in self.ZERO_BREAKPOINT:
            rec = _breakpoint_state(args[0], (0.0,))
        elif name in ("relu6", "relu6_"):
            rec = _breakpoint_state(args[0], (0.0, 6.0))
        elif name in ("hardtanh", "hardtanh_"):
            lo = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
            hi = kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
            rec = _breakpoint_state(args[0], (lo, hi))
        elif name in ("clamp", "clip", "clamp_", "clip_"):
            lo = kwargs.get("min", args[1] if len(args) > 1 else None)
            hi = kwargs.get("max", args[2] if len(args) > 2 else None)
            rec = _breakpoint_state(args[0], tuple(v for v in (lo, hi) if v is not None))
        elif name in ("max_pool1d", "max_pool2d", "_max_pool1d", "_max_pool2d"):
            rec = _pool_state(name, args, kwargs)
        elif name == "maximum" or (name == "max" and len(args) > 1 and torch.is_tensor(args[1])):
            rec = _pair_state(args[0], args[1])
        elif name in ("max", "amax") and (len(args) > 1 or "dim" in kwargs):
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            rec = _reduce_state(args[0], dim)
        out = func(*args, **kwargs)
        if rec is not None:
            self.calls.append((name,) + rec)
        return out


def _np(t):
    """A float64 numpy copy of a tensor (taken before an in-place op can change it);
    the bookkeeping below is numpy, single-threaded, cheap on busy machines."""
    return t.detach().to(torch.float64).numpy().copy()


def _relative(m, exact_ties=False):
    """Per input, the smallest ``|m|`` relative to the largest in the batch. With
    ``exact_ties``, a gap of exactly 0 counts as clear: candidates that are equal as
    functions (e.g. two ReLU outputs at 0 in one max-pool window) tie everywhere
    around the point, and torch breaks the tie the same way at every such point."""
    m = np.abs(m.reshape(len(m), -1))
    finite = np.isfinite(m)  # a window with a single candidate has no runner-up
    scale = max(m[finite].max(), 1e-300) if finite.any() else 1.0
    m = np.where(finite, m, scale)
    if exact_ties:
        m = np.where(m == 0, scale, m)
    return (m / scale).min(axis=1)


def _breakpoint_state(z, bps):
    z = _np(z).reshape(len(z), -1)
    d = np.concatenate([z - float(b) for b in bps], axis=1)
    return (d > 0).astype(np.int64), _relative(d)


def _pair_state(a, b):
    d = _np(a - b).reshape(len(a), -1)
    return (d > 0).astype(np.int64), _relative(d)


def _top2_gap(x, axis):
    """Best minus second best along ``axis`` (numpy)."""
    part = -np.partition(-x, 1, axis=axis)
    return np.take(part, 0, axis=axis) - np.take(part, 1, axis=axis)


def _reduce_state(x, dim):
    x = _np(x)
    dim = dim % x.ndim
    win = np.argmax(x, axis=dim)
    return win.reshape(len(x), -1).astype(np.int64), _relative(_top2_gap(x, dim), exact_ties=True)


def _pool_state(name, args, kwargs):
    """Max-pooling: the winner of every window as torch itself reports it
    (``return_indices=True``); the gap to the runner-up from the windows."""
    two = "2d" in name
    fn = F.max_pool2d if two else F.max_pool1d
    _, idx = fn(args[0].detach(), *args[1:], **dict(kwargs, return_indices=True))
    x = _np(args[0])
    names = ("kernel_size", "stride", "padding", "dilation")
    opt = dict(zip(names, args[1:5]), **{k: v for k, v in kwargs.items() if k in names})
    k = opt["kernel_size"]
    st, pad, dil = opt.get("stride") or k, opt.get("padding", 0), opt.get("dilation", 1)
    if two:
        pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
        k, st, pad, dil, x4 = pair(k), pair(st), pair(pad), pair(dil), x
    else:  # as 2-D windows of height 1
        one = lambda v: v if isinstance(v, int) else v[0]  # noqa: E731
        k, st, pad, dil, x4 = (1, one(k)), (1, one(st)), (0, one(pad)), (1, one(dil)), x[..., None, :]
    assert dil == (1, 1), "dilated pooling is not used in these tests"
    xp = np.pad(x4, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=-np.inf)
    win = np.lib.stride_tricks.sliding_window_view(xp, k, axis=(2, 3))[:, :, ::st[0], ::st[1]]
    gap = _top2_gap(win.reshape(*win.shape[:4], -1), -1).reshape(len(x), -1)
    return idx.reshape(len(x), -1).long().numpy(), _relative(gap, exact_ties=True)


def plane_inputs(sl, uv):
    """Model inputs at plane points, from the slice's public origin and basis."""
    u = torch.as_tensor(np.asarray(uv, dtype=np.float64))
    o, b = sl.origin.double(), sl.basis.double()
    return o[None] + torch.tensordot(u, b, dims=([1], [0]))


def run_original(model64, sl, uv):
    """Outputs (n, C), per-call states and margins of the float64 original model."""
    x = plane_inputs(sl, uv)
    with torch.no_grad(), StateRecorder() as rec:
        y = model64(x)
    return y.reshape(len(x), -1).numpy(), rec.calls


def joint_state(calls, upto=None):
    """(n, m) int64: the states of the first ``upto`` calls side by side."""
    calls = calls[:upto] if upto is not None else calls
    return np.concatenate([s for _, s, _ in calls], axis=1)


def min_margin(calls):
    return np.min(np.stack([m for _, _, m in calls]), axis=0)


def rows_as_keys(a):
    return [r.tobytes() for r in np.ascontiguousarray(a)]


# --------------------------------------------------------------------------- #
# geometry helpers (numpy only)
# --------------------------------------------------------------------------- #
def shoelace(p):
    return 0.5 * float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - p[:, 1] * np.roll(p[:, 0], -1)))


def vertex_mean(p):
    return p.mean(axis=0)


def inside_convex(poly, pts, tol=1e-10):
    """Which points lie in the CCW convex polygon (closed, with relative tolerance)."""
    e = np.roll(poly, -1, axis=0) - poly
    d = pts[:, None, :] - poly[None]
    cross = e[None, :, 0] * d[:, :, 1] - e[None, :, 1] * d[:, :, 0]
    scale = np.linalg.norm(e, axis=1) * max(np.ptp(poly, axis=0).max(), 1e-300)
    return np.all(cross >= -tol * scale[None], axis=1)


def random_interior(polys, per_region, seed):
    """``per_region`` random points strictly inside each convex polygon (convex
    combinations of its vertices with weights in [0.05, 1]) plus its vertex mean."""
    rng = np.random.default_rng(seed)
    pts, ids = [], []
    for r, p in enumerate(polys):
        w = rng.uniform(0.05, 1.0, (per_region, len(p)))
        w /= w.sum(axis=1, keepdims=True)
        pts.append(np.vstack([vertex_mean(p)[None], w @ p]))
        ids.append(np.full(per_region + 1, r))
    return np.vstack(pts), np.concatenate(ids)


def grid_in(poly, n):
    """Points of an n x n grid over the bounding box (irrational offsets) inside poly."""
    lo, hi = poly.min(0), poly.max(0)
    t = (np.arange(n) + 0.5 + 1e-3 / np.pi) / n
    g = np.stack(np.meshgrid(lo[0] + t * (hi[0] - lo[0]), lo[1] + t * (hi[1] - lo[1]), indexing="ij"), -1)
    g = g.reshape(-1, 2)
    return g[inside_convex(poly, g, tol=-1e-9)]


def clip(poly, a, b, c):
    """The part of CCW convex ``poly`` where a*x + b*y + c >= 0 (Sutherland-Hodgman)."""
    out = []
    n = len(poly)
    for i in range(n):
        p, q = poly[i], poly[(i + 1) % n]
        fp, fq = a * p[0] + b * p[1] + c, a * q[0] + b * q[1] + c
        if fp >= 0:
            out.append(p)
        if (fp > 0 > fq) or (fp < 0 < fq):
            out.append(p + fp / (fp - fq) * (q - p))
    return np.array(out).reshape(-1, 2)


# --------------------------------------------------------------------------- #
# the model zoo (float32 like a user's model; eval mode)
# --------------------------------------------------------------------------- #
def _through(seed, shape, pad=None):
    g = torch.Generator().manual_seed(seed)
    a, b, c = (torch.randn(*shape, generator=g) for _ in range(3))
    return splinecam.Slice.through(a, b, c, pad=pad)


def _randomize_bn(bn, seed):
    g = torch.Generator().manual_seed(seed)
    n = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.rand(n, generator=g) * 0.6 - 0.3)
        bn.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
        sign = torch.where(torch.rand(n, generator=g) < 0.3, -1.0, 1.0)  # some channels flipped
        bn.weight.copy_(sign * (torch.rand(n, generator=g) + 0.5))
        bn.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


def _centre(linear, before, sl):
    """Shift ``linear``'s bias so that each of its units changes sign on the slice
    (``before`` computes its input)."""
    with torch.no_grad():
        z = linear(before.eval()(plane_inputs(sl, grid_in(np.asarray(sl.polygon), 30)).float()))
        linear.bias.sub_(z.median(dim=0).values)


def cnn_bn_maxpool():
    torch.manual_seed(100)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32, 6), nn.ReLU(), nn.Linear(6, 3))
    _randomize_bn(model[1], 101)
    sl = _through(102, (1, 8, 8))
    _centre(model[5], model[:5], sl)
    return model.eval(), sl


class ResidualMLP(nn.Module):
    def __init__(self, width=10, out=3):
        super().__init__()
        self.fc1 = nn.Linear(2, width)
        self.fc2 = nn.Linear(width, width)
        self.out = nn.Linear(width, out)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        h = h + F.relu(self.fc2(h))
        return self.out(h)


def residual_mlp():
    torch.manual_seed(110)
    return ResidualMLP().eval(), splinecam.Slice.plane2d(1.5 * SQUARE)


class ResidualConvBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.conv2 = nn.Conv2d(2, 1, 3, padding=1)
        self.head = nn.Linear(36, 3)

    def forward(self, x):
        h = self.conv2(F.relu(self.conv1(x)))
        h = F.relu(h + x)
        return self.head(h.flatten(1))


def residual_cnn():
    torch.manual_seed(120)
    return ResidualConvBlock().eval(), _through(121, (1, 6, 6))


class BasicBlockNet(nn.Module):
    """A ResNet-style stem and basic block: BatchNorm, in-place ReLUs, ``out +=
    identity``, then an overlapping, padded MaxPool2d(3, 2, 1)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(2)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(2)
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.relu(self.bn0(self.stem(x)))
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        out = self.relu(out)
        return self.fc(torch.flatten(self.pool(out), 1))


def resnet_block(pool=None):
    def build():
        torch.manual_seed(125)
        model = BasicBlockNet()
        for i, bn in enumerate((model.bn0, model.bn1, model.bn2)):
            _randomize_bn(bn, 126 + i)
        if pool is not None:
            model.pool = pool
            model.fc = nn.Linear(pool(torch.zeros(1, 2, 4, 4)).numel(), 3)
        return model.eval(), _through(129, (1, 4, 4))

    return build


class ActMLP(nn.Module):
    """2 -> 8 -> 8 -> 3 with the given activation (a fresh one per layer)."""

    def __init__(self, make_act, gain=1.0):
        super().__init__()
        self.fc1 = nn.Linear(2, 8)
        self.act1 = make_act()
        self.fc2 = nn.Linear(8, 8)
        self.act2 = make_act()
        self.out = nn.Linear(8, 3)
        with torch.no_grad():
            for m in (self.fc1, self.fc2):
                m.weight.mul_(gain)
                m.bias.mul_(gain)

    def forward(self, x):
        return self.out(self.act2(self.fc2(self.act1(self.fc1(x)))))


def _prelu():
    m = nn.PReLU(8)
    with torch.no_grad():
        m.weight.copy_(torch.linspace(-0.6, 0.9, 8))
    return m


ACTIVATIONS = {
    # name: (factory of one activation, weight gain, domain half-width)
    "F.relu": (lambda: F.relu, 1.0, 1.5),
    "torch.relu": (lambda: torch.relu, 1.0, 1.5),
    "x.relu()": (lambda: (lambda h: h.relu()), 1.0, 1.5),
    "F.leaky_relu": (lambda: (lambda h: F.leaky_relu(h, 0.2)), 1.0, 1.5),
    "torch.abs": (lambda: torch.abs, 1.0, 1.5),
    "F.hardtanh": (lambda: (lambda h: F.hardtanh(h, -0.4, 0.5)), 1.0, 2.0),
    "nn.ReLU6": (nn.ReLU6, 6.0, 2.0),
    "F.relu6": (lambda: F.relu6, 6.0, 2.0),
    "nn.PReLU": (_prelu, 1.0, 1.5),
    "torch.clamp": (lambda: (lambda h: torch.clamp(h, min=-0.3, max=0.4)), 1.0, 2.0),
    "torch.clamp-positional": (lambda: (lambda h: torch.clamp(h, -0.3, 0.4)), 1.0, 2.0),
}


def act_mlp(name):
    def build():
        make, gain, half = ACTIVATIONS[name]
        torch.manual_seed(130)
        return ActMLP(make, gain).eval(), splinecam.Slice.plane2d(half * SQUARE)

    return build


class MaxoutMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 16)
        self.fc2 = nn.Linear(8, 8)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        n = x.shape[0]
        h = self.fc1(x).view(n, 8, 2).max(dim=2).values
        h = torch.max(self.fc2(h).view(-1, 4, 2), dim=2)[0]
        return self.out(h)


def maxout():
    torch.manual_seed(140)
    return MaxoutMLP().eval(), splinecam.Slice.plane2d(2.0 * SQUARE)


class Maxout3MLP(nn.Module):
    """Maxout with windows of 3 (``amax``), then of 2 (``max(-1)[0]``, negative dim)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 12)
        self.fc2 = nn.Linear(4, 8)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        h = self.fc1(x).view(-1, 4, 3).amax(dim=2)
        h = self.fc2(h).view(x.shape[0], 4, 2).max(-1)[0]
        return self.out(h)


def maxout3():
    torch.manual_seed(145)
    return Maxout3MLP().eval(), splinecam.Slice.plane2d(2.0 * SQUARE)


class MaximumMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fa = nn.Linear(2, 8)
        self.fb = nn.Linear(2, 8)
        self.fc2 = nn.Linear(8, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.maximum(self.fa(x), self.fb(x))
        return self.out(F.relu(self.fc2(h)))


def maximum():
    torch.manual_seed(150)
    return MaximumMLP().eval(), splinecam.Slice.plane2d(1.5 * SQUARE)


class CatMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fa = nn.Linear(2, 6)
        self.fb = nn.Linear(2, 5)
        self.fc2 = nn.Linear(11, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.cat([F.relu(self.fa(x)), F.leaky_relu(self.fb(x), 0.1)], dim=1)
        return self.out(torch.relu(self.fc2(h)))


def cat_branches():
    torch.manual_seed(160)
    return CatMLP().eval(), splinecam.Slice.plane2d(1.5 * SQUARE)


class SliceMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 12)
        self.fc2 = nn.Linear(6, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        g = h[:, 0::2] - 0.5 * h[:, 1::2]
        return self.out(F.relu(self.fc2(g)))


def slicing():
    torch.manual_seed(170)
    return SliceMLP().eval(), splinecam.Slice.plane2d(1.5 * SQUARE)


def adaptive_avgpool():
    torch.manual_seed(180)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                          nn.Linear(18, 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    sl = _through(181, (1, 9, 9))
    _centre(model[4], model[:4], sl)
    return model, sl


def _softmax_body():
    torch.manual_seed(190)
    return nn.Sequential(nn.Linear(2, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 3))


class FunctionalSoftmax(nn.Module):
    def __init__(self, body, final):
        super().__init__()
        self.body = body
        self.final = final

    def forward(self, x):
        return self.final(self.body(x))


SOFTMAXES = {
    "softmax-module": lambda: nn.Softmax(dim=1),
    "logsoftmax-module": lambda: nn.LogSoftmax(dim=-1),
    "torch.softmax": lambda: (lambda y: torch.softmax(y, dim=1)),
    "F.log_softmax": lambda: (lambda y: F.log_softmax(y, dim=1)),
    "y.softmax()": lambda: (lambda y: y.softmax(dim=-1)),
}


def softmax_model(kind):
    def build():
        final = SOFTMAXES[kind]()
        if isinstance(final, nn.Module):
            model = nn.Sequential(_softmax_body(), final)
        else:
            model = FunctionalSoftmax(_softmax_body(), final)
        return model.eval(), splinecam.Slice.plane2d(1.5 * SQUARE)

    return build


def softmax_logits():
    return _softmax_body().eval(), splinecam.Slice.plane2d(1.5 * SQUARE)


MODELS = {
    "cnn-bn-maxpool": cnn_bn_maxpool,
    "residual-mlp": residual_mlp,
    "residual-cnn": residual_cnn,
    **{f"act-{k}": act_mlp(k) for k in ACTIVATIONS},
    # overlapping pooling windows: fails, see test_overlapping_maxpool_windows_hand_worked
    "resnet-basic-block": resnet_block(),
    "resnet-basic-block-pool2-padded": resnet_block(nn.MaxPool2d(2, stride=2, padding=1)),
    "maxout": maxout,
    "maxout-k3-amax": maxout3,
    "torch.maximum": maximum,
    "torch.cat": cat_branches,
    "slicing": slicing,
    "adaptive-avgpool": adaptive_avgpool,
    **{k: softmax_model(k) for k in SOFTMAXES},
    "softmax-logits": softmax_logits,
}
# the model whose outputs the partition's affine maps describe (softmax dropped)
LOGITS_OF = {k: (lambda m: m[0] if isinstance(m, nn.Sequential) else m.body) for k in SOFTMAXES}
# the per-model checks run on every model but the softmax variants that only
# test_final_softmax_is_dropped needs
CHECKED = [k for k in MODELS if k not in SOFTMAXES or k in ("softmax-module", "torch.softmax")]
DAG_MODELS = ["cnn-bn-maxpool", "residual-mlp", "residual-cnn", "resnet-basic-block",
              "resnet-basic-block-pool2-padded", "maxout", "maxout-k3-amax",
              "torch.maximum", "torch.cat",
              "slicing", "adaptive-avgpool"]


# --------------------------------------------------------------------------- #
# cached computations
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=None)
def setup(name):
    model, sl = MODELS[name]()
    model64 = copy.deepcopy(model).double().eval()
    return model, model64, sl


@functools.lru_cache(maxsize=None)
def engine(name, decision_boundary=False):
    model, _, sl = setup(name)
    return splinecam.partition(model, sl, decision_boundary=decision_boundary, progress=False)


@functools.lru_cache(maxsize=None)
def region_evidence(name):
    """Interior samples of every region and the original model's states and outputs
    there: ``(polys, pts, ids, y, calls)``."""
    _, model64, sl = setup(name)
    P = engine(name)
    polys = [np.asarray(p, dtype=np.float64) for p in P.polygons()]
    pts, ids = random_interior(polys, per_region=4, seed=7)
    y, calls = run_original(model64, sl, pts)
    return polys, pts, ids, y, calls


@functools.lru_cache(maxsize=None)
def region_states(name):
    """(F, m) the state of each region (at its vertex mean) and the key -> region map."""
    _, pts, ids, _, calls = region_evidence(name)
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    st = joint_state(calls)[first]
    return st, {k: r for r, k in enumerate(rows_as_keys(st))}


# --------------------------------------------------------------------------- #
# the checks, per model
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", CHECKED)
def test_check_partition(name):
    P = engine(name)
    assert P.num_regions > 1
    check_partition(P)


@pytest.mark.parametrize("name", CHECKED)
def test_one_state_per_region_and_distinct(name):
    P = engine(name)
    _, _, ids, _, calls = region_evidence(name)
    assert len(calls) == P.num_layers, (
        f"the model ran {len(calls)} piecewise-linear ops ({[c[0] for c in calls]}), the partition has "
        f"{P.num_layers} layers ({P.layer_names})")
    st = joint_state(calls)
    ref, keys = region_states(name)
    bad = np.flatnonzero(np.any(st != ref[ids], axis=1))
    assert bad.size == 0, (
        f"{len(np.unique(ids[bad]))} regions hold several activation states (first: region {ids[bad[0]]})")
    assert len(keys) == P.num_regions, f"{P.num_regions - len(keys)} regions share their state with another"


@pytest.mark.parametrize("name", CHECKED)
def test_dense_grid_states_belong_to_located_regions(name):
    _, model64, sl = setup(name)
    P = engine(name)
    poly = np.asarray(sl.polygon, dtype=np.float64)
    pts = grid_in(poly, 60)
    _, calls = run_original(model64, sl, pts)
    clear = min_margin(calls) > 1e-9
    assert clear.mean() > 0.95
    _, keys = region_states(name)
    st = joint_state(calls)[clear]
    grid_keys = rows_as_keys(st)
    unknown = [i for i, k in enumerate(grid_keys) if k not in keys]
    assert not unknown, f"{len(unknown)} grid points have a state of no region (first at {pts[clear][unknown[0]]})"
    where = np.asarray(P.locate(pts[clear]))
    expect = np.array([keys[k] for k in grid_keys])
    wrong = np.flatnonzero(where != expect)
    assert wrong.size == 0, (
        f"locate() puts {wrong.size} grid points in a region of another state (first at {pts[clear][wrong[0]]}: "
        f"region {where[wrong[0]]}, its state is region {expect[wrong[0]]}'s)")


@pytest.mark.parametrize("name", CHECKED)
def test_affine_maps_equal_the_original_model(name):
    _, model64, sl = setup(name)
    P = engine(name)
    _, pts, ids, y, _ = region_evidence(name)
    if name in LOGITS_OF:
        x = plane_inputs(sl, pts)
        with torch.no_grad():
            y = LOGITS_OF[name](model64)(x).numpy()
    A, c = P.affine_maps()
    pred = np.einsum("ncd,nd->nc", A[ids], pts) + c[ids]
    scale = np.abs(y).max()
    err = np.abs(pred - y).max() / scale
    assert err <= 1e-9, f"affine maps differ from the model by {err:.3e} (relative)"


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_every_breakpoint_is_crossed(name):
    """The activation zoo is not trivial: on a grid, both sides of every breakpoint
    (e.g. 0 and 6 of ReLU6, both clamp bounds) are reached in every layer."""
    _, model64, sl = setup(f"act-{name}")
    _, calls = run_original(model64, sl, grid_in(np.asarray(sl.polygon), 40))
    assert len(calls) == 2
    for _, s, _ in calls:
        per_bp = s.reshape(len(s), -1, 8)  # (n, breakpoints, units)
        assert np.all(per_bp.any(axis=(0, 2))) and np.all((per_bp == 0).any(axis=(0, 2)))


def test_model_is_not_modified():
    model, sl = cnn_bn_maxpool()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    splinecam.partition(model, sl, progress=False)
    assert not model.training
    for k, v in model.state_dict().items():
        assert v.dtype == before[k].dtype and torch.equal(v, before[k]), k



def test_a_partition_let_go_is_freed_without_the_garbage_collector():
    """A partition (and its network copy, with the float64 weights) that is no longer
    referenced is freed at once: a loop over checkpoints or tiles must not hold every
    copy until the next garbage collection."""
    import gc
    import weakref
    model, sl = cnn_bn_maxpool()
    splinecam.partition(model, sl, progress=False)  # the traced template is kept; copies are not
    P = splinecam.partition(model, sl, progress=False)
    refs = [weakref.ref(P), weakref.ref(P._net), weakref.ref(P._net.gm)]
    enabled = gc.isenabled()
    gc.disable()
    try:
        del P
        assert [r() is None for r in refs] == [True, True, True]
    finally:
        if enabled:
            gc.enable()

# --------------------------------------------------------------------------- #
# the partition after each layer of a DAG model
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", DAG_MODELS)
def test_at_layer_unions_of_final_regions(name):
    P = engine(name)
    polys, _, ids, _, calls = region_evidence(name)
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    final_areas = np.array([shoelace(p) for p in polys])
    counts = [P.at_layer(l).num_regions for l in range(1, P.num_layers + 1)]
    assert counts == sorted(counts), f"region counts per layer decrease: {counts}"
    assert counts[-1] == P.num_regions
    for l in range(1, P.num_layers + 1):
        Pl = P.at_layer(l)
        parent = np.asarray(P.parents(l))
        assert parent.shape == (P.num_regions,)
        assert parent.min() >= 0 and parent.max() < Pl.num_regions
        assert np.all(np.bincount(parent, minlength=Pl.num_regions) > 0), f"layer {l}: a region has no children"
        lpolys = [np.asarray(p, dtype=np.float64) for p in Pl.polygons()]
        # each final region lies inside its parent, and the parents' areas add up
        for r in range(P.num_regions):
            assert inside_convex(lpolys[parent[r]], polys[r]).all(), f"layer {l}: region {r} leaves its parent"
        sums = np.bincount(parent, weights=final_areas, minlength=Pl.num_regions)
        lareas = np.array([shoelace(p) for p in lpolys])
        np.testing.assert_allclose(sums, lareas, rtol=1e-9, atol=1e-12 * lareas.sum(),
                                   err_msg=f"layer {l}: children's areas do not add up to their parent's")
        # the parents are exactly the cells of constant state of the first l ops
        prefix = joint_state(calls, l)[first]
        key_parent = {}
        for k, p in zip(rows_as_keys(prefix), parent):
            assert key_parent.setdefault(k, p) == p, f"layer {l}: one state of the first {l} ops in two regions"
        assert len(key_parent) == Pl.num_regions, f"layer {l}: two regions share the state of the first {l} ops"


# --------------------------------------------------------------------------- #
# max-pool == the same net written with ReLUs
# --------------------------------------------------------------------------- #
class Pool1dNet(nn.Module):
    def __init__(self, outputs):
        super().__init__()
        self.fc1 = nn.Linear(2, 12)
        self.pool = nn.MaxPool1d(2)
        self.fc2 = nn.Linear(6, 8)
        self.out = nn.Linear(8, outputs)

    def forward(self, x):
        h = self.pool(self.fc1(x).unsqueeze(1)).flatten(1)
        return self.out(F.relu(self.fc2(h)))


class Pairs1dNet(Pool1dNet):
    """The same function: max(a, b) = b + relu(a - b) on consecutive pairs."""

    def forward(self, x):
        z = self.fc1(x)
        a, b = z[:, 0::2], z[:, 1::2]
        h = b + F.relu(a - b)
        return self.out(F.relu(self.fc2(h)))


class Pool2dNet(nn.Module):
    """MaxPool2d over (1, 2) windows of a conv's output."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.pool = nn.MaxPool2d((1, 2))
        self.fc = nn.Linear(16, 6)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        h = self.pool(self.conv(x)).flatten(1)
        return self.out(F.relu(self.fc(h)))


class Pairs2dNet(Pool2dNet):
    def forward(self, x):
        z = self.conv(x)
        a, b = z[..., 0::2], z[..., 1::2]
        h = (b + F.relu(a - b)).flatten(1)
        return self.out(F.relu(self.fc(h)))


def _pool_pair(kind):
    if kind == "maxpool1d-1out":
        torch.manual_seed(200)
        pool, pairs = Pool1dNet(1), Pairs1dNet(1)
        sl = splinecam.Slice.plane2d(2.0 * SQUARE)
    elif kind == "maxpool1d-3out":
        torch.manual_seed(201)
        pool, pairs = Pool1dNet(3), Pairs1dNet(3)
        sl = splinecam.Slice.plane2d(2.0 * SQUARE)
    else:
        torch.manual_seed(202)
        pool, pairs = Pool2dNet(), Pairs2dNet()
        sl = _through(203, (1, 4, 4))
    pool.eval()
    # centre the outputs on the slice, so that the decision boundary crosses it
    with torch.no_grad():
        y = pool(plane_inputs(sl, grid_in(np.asarray(sl.polygon), 20)).float())
        pool.out.bias.sub_(y.median(dim=0).values)
    pairs.load_state_dict(pool.state_dict())
    return pool, pairs.eval(), sl


@pytest.mark.parametrize("kind", ["maxpool1d-1out", "maxpool1d-3out", "maxpool2d-1x2"])
def test_maxpool_equals_relu_rewrite(kind):
    pool, pairs, sl = _pool_pair(kind)
    x = plane_inputs(sl, grid_in(np.asarray(sl.polygon), 20))
    with torch.no_grad():  # the rewrite computes the same function
        np.testing.assert_allclose(copy.deepcopy(pool).double()(x).numpy(), copy.deepcopy(pairs).double()(x).numpy(),
                                   rtol=1e-12, atol=1e-12)
    P = splinecam.partition(pool, sl, progress=False)
    Q = splinecam.partition(pairs, sl, progress=False)
    check_partition(P)
    assert P.num_regions == Q.num_regions > 1
    pc, qc = P.centroids(), Q.centroids()
    p_in_q = np.asarray(Q.locate(pc))
    q_in_p = np.asarray(P.locate(qc))
    assert sorted(p_in_q.tolist()) == list(range(Q.num_regions)), "regions do not match one to one"
    np.testing.assert_array_equal(q_in_p[p_in_q], np.arange(P.num_regions))
    np.testing.assert_allclose(P.areas(), Q.areas()[p_in_q], rtol=1e-9, atol=1e-12 * sl.area)
    # same vertex sets of matched regions (up to rotation of the cycle / straight vertices)
    qpolys = Q.polygons()
    for r, p in enumerate(P.polygons()):
        q = qpolys[p_in_q[r]]
        assert inside_convex(q, p, tol=1e-9).all() and inside_convex(p, q, tol=1e-9).all()
    lp, lq = P.decision_boundary_length(), Q.decision_boundary_length()
    assert lp > 0
    assert abs(lp - lq) <= 1e-9 * lq, f"decision boundary lengths {lp!r} vs {lq!r}"


def test_maxpool2d_2x2_coarsens_its_relu_chain():
    """A 2x2 window's maximum written with ReLUs (pairwise, then the pair winners)
    also splits where two losers tie; the max-pool partition merges those pieces, so
    each of its regions is a union of regions of the ReLU version with one winner."""

    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            return self.fc(F.max_pool2d(self.conv(x), 2).flatten(1))

    class Chain(Pool):
        def forward(self, x):
            z = self.conv(x)
            a, b = z[:, :, 0::2, 0::2], z[:, :, 0::2, 1::2]
            c, d = z[:, :, 1::2, 0::2], z[:, :, 1::2, 1::2]
            m1 = b + F.relu(a - b)
            m2 = d + F.relu(c - d)
            return self.fc((m2 + F.relu(m1 - m2)).flatten(1))

    torch.manual_seed(210)
    pool, chain = Pool().eval(), Chain().eval()
    chain.load_state_dict(pool.state_dict())
    sl = _through(211, (1, 4, 4))
    P = splinecam.partition(pool, sl, progress=False)
    Q = splinecam.partition(chain, sl, progress=False)
    check_partition(P)
    check_partition(Q)
    assert 1 < P.num_regions < Q.num_regions
    owner = np.asarray(P.locate(Q.centroids()))
    assert owner.min() >= 0
    assert np.all(np.bincount(owner, minlength=P.num_regions) > 0)
    np.testing.assert_allclose(np.bincount(owner, weights=Q.areas(), minlength=P.num_regions), P.areas(),
                               rtol=1e-9, atol=1e-12 * sl.area)
    ppolys = P.polygons()
    for r, q in enumerate(Q.polygons()):
        assert inside_convex(ppolys[owner[r]], q, tol=1e-9).all()
    lp, lq = P.decision_boundary_length(), Q.decision_boundary_length()
    assert abs(lp - lq) <= 1e-9 * max(lq, 1e-300)


# --------------------------------------------------------------------------- #
# softmax dropped: same partition and decision boundary as the logits
# --------------------------------------------------------------------------- #
def _assert_same_partition(P, Q):
    """P (final op dropped) and Q (the logits): the same regions, areas, affine maps and
    decision boundary; P a valid partition."""
    check_partition(P)
    assert P.num_layers == Q.num_layers == 2
    assert P.num_regions == Q.num_regions
    match = np.asarray(Q.locate(P.centroids()))
    assert sorted(match.tolist()) == list(range(Q.num_regions))
    np.testing.assert_allclose(P.areas(), Q.areas()[match], rtol=1e-12, atol=0)
    Ap, cp = P.affine_maps()
    Aq, cq = Q.affine_maps()
    np.testing.assert_allclose(Ap, Aq[match], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cp, cq[match], rtol=1e-9, atol=1e-12)
    lp, lq = P.decision_boundary_length(), Q.decision_boundary_length()
    assert lq > 0 and abs(lp - lq) <= 1e-12 * lq
    sp, sq = P.decision_boundary.reshape(-1, 4), Q.decision_boundary.reshape(-1, 4)
    assert sp.shape == sq.shape
    np.testing.assert_allclose(sp[np.lexsort(sp.T)], sq[np.lexsort(sq.T)], rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(SOFTMAXES))
def test_final_softmax_is_dropped(name):
    P = engine(name, decision_boundary=True)
    Q = engine("softmax-logits", decision_boundary=True)
    _assert_same_partition(P, Q)


# --------------------------------------------------------------------------- #
# sigmoid dropped: a final sigmoid changes no decision. On one output its 0.5 level
# set is the logit's zero level set (splinecam's decision boundary of one output);
# on several outputs (multi-label) it is increasing in every output, so the arg-max
# is unchanged. Anywhere else it is refused.
# --------------------------------------------------------------------------- #
def _sigmoid_body(outputs=1):
    torch.manual_seed(300 + outputs)
    body = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, outputs)).eval()
    with torch.no_grad():  # the logits vanish at the origin: the decision boundary crosses the slice
        body[-1].bias -= body(torch.zeros(1, 2))[0]
    return body


SIGMOIDS = {
    "sigmoid-module": lambda: nn.Sigmoid(),
    "torch.sigmoid": lambda: torch.sigmoid,
    "F.sigmoid": lambda: F.sigmoid,
    "y.sigmoid()": lambda: (lambda y: y.sigmoid()),
}


def _sigmoid_model(kind, outputs=1):
    final = SIGMOIDS[kind]()
    if isinstance(final, nn.Module):
        return nn.Sequential(_sigmoid_body(outputs), final).eval()
    return FunctionalSoftmax(_sigmoid_body(outputs), final).eval()


@functools.lru_cache(maxsize=None)
def _sigmoid_logits_partition(outputs=1):
    sl = splinecam.Slice.plane2d(1.5 * SQUARE)
    return splinecam.partition(_sigmoid_body(outputs), sl, decision_boundary=True, progress=False)


@pytest.mark.parametrize("name", list(SIGMOIDS))
def test_final_sigmoid_is_dropped(name):
    """A 2-16-16-1 binary classifier ending in a sigmoid: the same regions, affine maps
    (of the logit) and decision boundary as the model without it, and the model's
    output on that boundary is 0.5."""
    model = _sigmoid_model(name)
    sl = splinecam.Slice.plane2d(1.5 * SQUARE)
    P = splinecam.partition(model, sl, decision_boundary=True, progress=False)
    _assert_same_partition(P, _sigmoid_logits_partition())
    _, x = P.sample_decision_boundary(50, rng=0)
    with torch.no_grad():
        y = copy.deepcopy(model).double()(torch.as_tensor(x, dtype=torch.float64)).numpy()
    assert y.shape == (50, 1)
    np.testing.assert_allclose(y, 0.5, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["sigmoid-module", "torch.sigmoid"])
def test_final_sigmoid_on_several_outputs_is_dropped(name):
    """Multi-label: a sigmoid on each of 3 outputs is increasing in every output, so
    the arg-max, and the decision boundary, are those of the logits."""
    sl = splinecam.Slice.plane2d(1.5 * SQUARE)
    P = splinecam.partition(_sigmoid_model(name, outputs=3), sl, decision_boundary=True, progress=False)
    _assert_same_partition(P, _sigmoid_logits_partition(3))


class MidSigmoid(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2, 8), nn.Linear(8, 1)
        self.how = how

    def forward(self, x):
        h = self.fc1(x)
        h = torch.sigmoid(h) if self.how == "torch.sigmoid" else h.sigmoid()
        return self.fc2(h)


@pytest.mark.parametrize("how, match", [
    ("module", r"'1' \(Sigmoid\).*only dropped as the final op"),
    ("torch.sigmoid", r"sigmoid.*test_models\.py.*torch\.sigmoid\(h\).*only dropped as the final op"),
    ("y.sigmoid()", r"sigmoid.*test_models\.py.*h\.sigmoid\(\).*only dropped as the final op"),
])
def test_sigmoid_inside_the_network_is_refused(how, match):
    torch.manual_seed(310)
    if how == "module":
        model = nn.Sequential(nn.Linear(2, 8), nn.Sigmoid(), nn.Linear(8, 1))
    else:
        model = MidSigmoid(how)
    with pytest.raises(splinecam.UnsupportedModelError, match=match):
        splinecam.partition(model.eval(), splinecam.Slice.plane2d(SQUARE), progress=False)


def test_sigmoid_before_the_final_layer_is_refused():
    """Only the op whose output is the model's output is dropped: a sigmoid followed
    by a ReLU (or anything else) is a hidden nonlinearity and is refused."""
    torch.manual_seed(311)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1), nn.Sigmoid(), nn.ReLU()).eval()
    with pytest.raises(splinecam.UnsupportedModelError, match=r"'3' \(Sigmoid\).*only dropped as the final op"):
        splinecam.partition(model, splinecam.Slice.plane2d(SQUARE), progress=False)


# --------------------------------------------------------------------------- #
# hand-worked maxima of affine functions of R^2 on [-1, 1]^2
# --------------------------------------------------------------------------- #
class MaxOfTwo(nn.Module):
    def __init__(self, wa, ba, wb, bb):
        super().__init__()
        self.a = nn.Linear(2, 1).double()
        self.b = nn.Linear(2, 1).double()
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([wa], dtype=torch.float64))
            self.a.bias.fill_(ba)
            self.b.weight.copy_(torch.tensor([wb], dtype=torch.float64))
            self.b.bias.fill_(bb)

    def forward(self, x):
        return torch.maximum(self.a(x), self.b(x))


# (a, b) as ((w, bias), (w, bias)); expected region areas and, per region, the winner
MAX_OF_TWO = {
    # a - b = 3x + y + 0.25 crosses the square: a wins on x > -(y + 0.25)/3, area
    # int_{-1}^{1} (1 + (y + 0.25)/3) dy = 2 + 1/6
    "crossing": (([2.0, 1.0], 0.5), ([-1.0, 0.0], 0.25), {"a": 2 + 1 / 6, "b": 2 - 1 / 6}),
    # a - b = -3.5 everywhere
    "b-always": (([2.0, 1.0], 0.5), ([2.0, 1.0], 4.0), {"b": 4.0}),
    # a - b = x - y: the diagonal through two corners, two triangles
    "diagonal": (([1.0, 0.0], 0.0), ([0.0, 1.0], 0.0), {"a": 2.0, "b": 2.0}),
    # a - b = x + y - 2 touches the square at the corner (1, 1) only
    "touches-corner": (([1.0, 1.0], -2.0), ([0.0, 0.0], 0.0), {"b": 4.0}),
    # a - b = y + 1 vanishes along the bottom edge only
    "along-edge": (([0.0, 1.0], 1.0), ([0.0, 0.0], 0.0), {"a": 4.0}),
}


@pytest.mark.parametrize("case", list(MAX_OF_TWO))
def test_maximum_of_two_affine_maps(case):
    (wa, ba), (wb, bb), expected = MAX_OF_TWO[case]
    P = splinecam.partition(MaxOfTwo(wa, ba, wb, bb).double().eval(), splinecam.Slice.plane2d(SQUARE),
                            progress=False)
    check_partition(P)
    assert P.num_regions == len(expected)
    got = {}
    for r in range(P.num_regions):
        A, c = P.affine(r)
        win = "a" if np.allclose(A[0], wa, atol=1e-12) and abs(c[0] - ba) < 1e-12 else \
              "b" if np.allclose(A[0], wb, atol=1e-12) and abs(c[0] - bb) < 1e-12 else None
        assert win is not None, f"region {r}: map {A}, {c} is neither a nor b"
        got[win] = float(P.areas()[r])
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-12)


class MaxOfThree(nn.Module):
    def __init__(self, w, b):
        super().__init__()
        self.lin = nn.Linear(2, 3).double()
        with torch.no_grad():
            self.lin.weight.copy_(torch.tensor(w, dtype=torch.float64))
            self.lin.bias.copy_(torch.tensor(b, dtype=torch.float64))

    def forward(self, x):
        return self.lin(x).max(dim=1, keepdim=True).values


_W3 = [[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]]
MAX_OF_THREE = {
    # three wedges meeting at the origin
    "triple-point-inside": (_W3, [0.0, 0.0, 0.0], 3),
    # the third plane is at most -0.5x - 0.8y - 5 <= -3.7 < -1 <= max(first two)
    "one-never-wins": (_W3, [0.0, 0.0, -5.0], 2),
    # triple point at (1.5, 0): the first plane's wedge x - 1.5 >= 0.53|y| misses the
    # square; the other two split it along y = 0
    "triple-point-outside": (_W3, [-1.5, 0.75, 0.75], 2),
    # the first plane beats the others by at least 10 - 2.6 everywhere
    "one-always-wins": (_W3, [10.0, 0.0, 0.0], 1),
    # two parallel planes (the second is always 0.5 above the first) and a third:
    # x + 0.5 = -x at x = -0.25
    "parallel": ([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], [0.0, 0.5, 0.0], 2),
}


def _upper_envelope_cells(w, b, domain):
    """The cell of each plane of the upper envelope over ``domain``, by clipping."""
    cells = {}
    for i in range(3):
        cell = domain
        for j in range(3):
            if j != i and len(cell):
                dw = np.subtract(w[i], w[j])
                cell = clip(cell, dw[0], dw[1], b[i] - b[j])
        if len(cell) >= 3 and shoelace(cell) > 1e-12:
            cells[i] = cell
    return cells


@pytest.mark.parametrize("case", list(MAX_OF_THREE))
def test_maxout_of_three_affine_maps(case):
    w, b, expected = MAX_OF_THREE[case]
    P = splinecam.partition(MaxOfThree(w, b).eval(), splinecam.Slice.plane2d(SQUARE), progress=False)
    check_partition(P)
    cells = _upper_envelope_cells(w, b, SQUARE)
    assert len(cells) == expected  # the hand count agrees with the clipping
    assert P.num_regions == expected
    seen = set()
    for r, poly in enumerate(P.polygons()):
        A, c = P.affine(r)
        win = [i for i in range(3) if np.allclose(A[0], w[i], atol=1e-12) and abs(c[0] - b[i]) < 1e-12]
        assert len(win) == 1, f"region {r}: map {A}, {c} is not one of the planes"
        i = win[0]
        assert i in cells and i not in seen
        seen.add(i)
        assert shoelace(poly) == pytest.approx(shoelace(cells[i]), rel=1e-12)
        assert inside_convex(cells[i], poly, tol=1e-12).all()
    if case == "triple-point-inside":
        V = np.asarray(P.vertices)
        assert np.sum(np.linalg.norm(V, axis=1) < 1e-14) == 1, "the three cells must share one vertex at the origin"


# --------------------------------------------------------------------------- #
# overlapping max-pool windows (hand-worked)
# --------------------------------------------------------------------------- #
class OverlappingPool(nn.Module):
    """z = (-10, x, -x, 10); MaxPool1d(3, stride=1) has the windows (z0, z1, z2) and
    (z1, z2, z3), which share the pair (z1, z2): the output is (|x|, 10)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 4).double()
        self.pool = nn.MaxPool1d(3, stride=1)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]]))
            self.fc.bias.copy_(torch.tensor([-10.0, 0.0, 0.0, 10.0]))

    def forward(self, x):
        return self.pool(self.fc(x).unsqueeze(1)).flatten(1)


def test_overlapping_maxpool_windows_hand_worked():
    """|x| has its kink on x = 0: two regions, slopes (-1, 0) and (1, 0). The line
    z1 = z2 splits both windows; the second window's winner (z3) does not change
    across it, the first window's does."""
    P = splinecam.partition(OverlappingPool().eval(), splinecam.Slice.plane2d(SQUARE), progress=False)
    assert P.num_regions == 2, f"{P.num_regions} regions; |x| on [-1, 1]^2 has 2"
    check_partition(P)
    A, c = P.affine_maps()
    order = np.argsort(P.centroids()[:, 0])
    np.testing.assert_allclose(A[order], [[[-1.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]], atol=1e-12)
    np.testing.assert_allclose(c[order], [[0.0, 10.0], [0.0, 10.0]], atol=1e-12)
    np.testing.assert_allclose(P.areas(), [2.0, 2.0], rtol=1e-12)


# --------------------------------------------------------------------------- #
# models splinecam must refuse or get right
# --------------------------------------------------------------------------- #
class BatchStatsBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 8)
        self.bn = nn.BatchNorm1d(8, track_running_stats=False)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(F.relu(self.bn(self.fc1(x))))


def test_batchnorm_with_batch_statistics_is_refused():
    """BatchNorm without running statistics normalises by the statistics of the
    batch even in eval mode: the output at one input depends on the other inputs of
    the batch, so there is no partition to compute. It must be refused, not
    partitioned with the batches of vertices the engine happens to evaluate."""
    torch.manual_seed(230)
    model = BatchStatsBN().eval()
    with pytest.raises((ValueError, splinecam.UnsupportedModelError)):
        splinecam.partition(model, splinecam.Slice.plane2d(SQUARE), progress=False)


class MaximumWithConstant(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 8)
        self.register_buffer("floor", torch.tensor(0.1))
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.maximum(self.fc1(x), self.floor))


def test_maximum_with_a_constant_tensor_is_exact_or_refused():
    """``torch.maximum(h, c)`` with a constant tensor ``c`` is ``clamp(h, min=c)``:
    either partitioned exactly or refused with UnsupportedModelError."""
    torch.manual_seed(240)
    model = MaximumWithConstant().eval()
    sl = splinecam.Slice.plane2d(1.5 * SQUARE)
    try:
        P = splinecam.partition(model, sl, progress=False)
    except splinecam.UnsupportedModelError as e:
        assert "maximum" in str(e)
        return
    check_partition(P)
    polys = [np.asarray(p, dtype=np.float64) for p in P.polygons()]
    pts, ids = random_interior(polys, 4, seed=3)
    y, calls = run_original(copy.deepcopy(model).double(), sl, pts)
    st = joint_state(calls)
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    assert np.all(st == st[first][ids])
    assert len(set(rows_as_keys(st[first]))) == P.num_regions
    A, c = P.affine_maps()
    pred = np.einsum("ncd,nd->nc", A[ids], pts) + c[ids]
    assert np.abs(pred - y).max() <= 1e-9 * np.abs(y).max()


# --------------------------------------------------------------------------- #
# the recorder itself, by hand
# --------------------------------------------------------------------------- #
def test_state_recorder_by_hand():
    z = torch.tensor([[1.0, -2.0, 3.0, 0.5], [-1.0, 2.0, -3.0, 0.25]], dtype=torch.float64)
    with StateRecorder() as rec:
        nn.ReLU()(z)
        z.relu()
        F.hardtanh(z, -1.5, 0.75)
        torch.clamp(z, min=0.3)
        nn.ReLU6()(4 * z)
        nn.MaxPool1d(2)(z.unsqueeze(1))
        z.view(2, 2, 2).max(dim=2)
        torch.max(z.view(2, 2, 2), 2)[0]
        z.view(2, 2, 2).amax(dim=-1)
        torch.maximum(z, -z)
        F.max_pool2d(z.view(2, 1, 2, 2), 2)
        torch.softmax(z, dim=1)
        z + z
    names = [n for n, _, _ in rec.calls]
    assert names == ["relu", "relu", "hardtanh", "clamp", "hardtanh", "max_pool1d", "max", "max", "amax",
                     "maximum", "max_pool2d"]
    s = [st.tolist() for _, st, _ in rec.calls]
    assert s[0] == s[1] == [[1, 0, 1, 1], [0, 1, 0, 1]]
    assert s[2] == [[1, 0, 1, 1, 1, 0, 1, 0], [1, 1, 0, 1, 0, 1, 0, 0]]   # z > -1.5, then z > 0.75
    assert s[3] == [[1, 0, 1, 1], [0, 1, 0, 0]]
    assert s[4] == [[1, 0, 1, 1, 0, 0, 1, 0], [0, 1, 0, 1, 0, 1, 0, 0]]   # 4z > 0, then 4z > 6
    assert s[5] == [[0, 2], [1, 3]]                                     # max-pool: input positions
    assert s[6] == s[7] == s[8] == [[0, 0], [1, 1]]                     # max(dim): window positions
    assert s[9] == [[1, 0, 1, 1], [0, 1, 0, 1]]
    assert s[10] == [[2], [1]]                                          # flat index of the 2x2 window's max
    m = rec.calls[0][2]
    np.testing.assert_allclose(m, [0.5 / 3, 0.25 / 3])                  # nearest breakpoint, relative
    # max-pool gaps: 3 and 2.5 in the first row, 3 and 3.25 in the second
    np.testing.assert_allclose(rec.calls[5][2], [2.5 / 3.25, 3 / 3.25])
