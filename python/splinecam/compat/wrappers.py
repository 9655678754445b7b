"""``splinecam.wrappers.model_wrapper``: the original SplineCam entry point.

The original wrapped a torch ``nn.Sequential`` into its own layer objects (dense
weight matrices per layer) so that its region finder could run matrix products in the
2-D coordinates of a slice. Here the exact partition is computed by the engine
(:func:`splinecam.partition`), so the wrapper only records the slice plane given by the
projection matrix ``T`` (see :mod:`splinecam.utils`) and checks the model:

* construction rejects models in training mode and modules that are not piecewise
  linear, and casts the model to ``dtype`` / ``device`` in place (as the original did);
* :meth:`model_wrapper.verify` compares ``model.forward`` at random points of the plane
  with the network's local affine maps, computed two independent ways: by pushing the
  plane's affine parameterisation through the layers with explicit activation patterns
  (the original's "forward vs. matmul" check), and by the engine on a small patch of
  the plane.
"""

import math
import warnings

import torch
from torch import nn

from splinecam.compat import utils

__all__ = ["model_wrapper", "adapter"]

# Modules the matmul check knows: affine in eval mode, and element-wise CPWL. A model
# with other modules (that the engine supports) is checked by the engine check only.
_AFFINE = (nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.Flatten, nn.Dropout,
           nn.Identity)
_ELEMENTWISE = (nn.ReLU, nn.LeakyReLU)


def _flatten_sequential(model):
    """The leaf modules of a (nested) ``nn.Sequential`` in execution order, or ``None``
    if ``model`` is not a Sequential."""
    if not isinstance(model, nn.Sequential):
        return None
    steps = []
    for m in model:
        if isinstance(m, nn.Sequential):
            steps += _flatten_sequential(m)
        else:
            steps.append(m)
    return steps


def _infer_input_numel(steps):
    """Input size of an MLP whose first weighted module is a Linear layer, else None."""
    for m in steps or ():
        if isinstance(m, nn.Linear):
            return m.in_features
        if not isinstance(m, (nn.Flatten, nn.Identity, nn.Dropout)):
            return None
    return None


def _slope(m, z):
    """Per-element slope of the element-wise activation ``m`` at pre-activations ``z``."""
    if isinstance(m, nn.ReLU):
        return (z > 0).to(z.dtype)
    return torch.where(z > 0, torch.ones_like(z), torch.full_like(z, m.negative_slope))


@torch.no_grad()
def _affine_chain(steps, c, A, u):
    """Push the affine map ``x(u) = c + u[0] A[:, 0] + u[1] A[:, 1]`` through ``steps``.

    ``c``: ``[n, *shape]`` values at ``u = 0`` of the current local affine map of each of
    the n sample points; ``A``: ``[n, 2, *shape]`` its two directional derivatives;
    ``u``: ``[n, 2]`` the sample points. Activations are applied as explicit per-point
    slopes and offsets decided at the point's own value ``c + u A``, so the final
    ``c + u A`` equals ``model(x(u))`` exactly when every step really is affine or CPWL
    as assumed. Returns the network's output at the sample points computed that way.
    """
    n = c.shape[0]

    def value(c, A):
        return c + torch.einsum("nk,nk...->n...", u.to(c.dtype), A)

    for m in steps:
        if isinstance(m, _AFFINE):
            shape = c.shape[1:]
            zero = torch.zeros((1, *shape), dtype=c.dtype, device=c.device)
            out = m(torch.cat([c, A.reshape(2 * n, *shape), zero]))
            c, A = out[:n], (out[n:3 * n] - out[3 * n:]).reshape(n, 2, *out.shape[1:])
        elif isinstance(m, _ELEMENTWISE):
            s = _slope(m, value(c, A))
            c = s * c
            A = s.unsqueeze(1) * A
        else:
            raise NotImplementedError(f"module {type(m).__name__} is not supported")
    return value(c, A)


class adapter(nn.Module):
    """Map plane coordinates ``u`` ``[N, 2]`` to inputs ``[N, *input_shape]`` on the plane of ``T``.

    The map back, from inputs to plane coordinates, is :meth:`to_input`. Computed in
    the wrapper's dtype and device.

    Parameters
    ----------
    T : torch.Tensor
        ``(D, 3)`` projection matrix (:func:`splinecam.compat.utils.get_proj_mat`).
    input_shape : tuple of int
        Shape of one input, ``D`` elements.
    device : str or torch.device
        Where the origin and basis buffers live.
    dtype : torch.dtype
        Their dtype.
    """

    def __init__(self, T, input_shape, device="cpu", dtype=torch.float64):
        super().__init__()
        mean, _, B = utils._plane(T)
        self.T = T
        self.input_shape = tuple(input_shape)
        self.register_buffer("origin", mean.to(device=device, dtype=dtype))  # [D]
        self.register_buffer("basis", B.T.contiguous().to(device=device, dtype=dtype))  # [2, D]

    def forward(self, u):
        """Map plane coordinates to inputs on the plane.

        Parameters
        ----------
        u : torch.Tensor or array-like
            ``[N, 2]`` plane coordinates (anything that reshapes to it).

        Returns
        -------
        torch.Tensor
            ``[N, *input_shape]`` inputs, in the adapter's dtype and device.
        """
        u = torch.as_tensor(u, dtype=self.basis.dtype, device=self.basis.device).reshape(-1, 2)
        return (self.origin + u @ self.basis).reshape(-1, *self.input_shape)

    def to_input(self, x):
        """Map inputs to their plane coordinates ``T[:, :2].T @ (x - T[:, 2])`` (despite the name).

        Parameters
        ----------
        x : torch.Tensor or array-like
            ``[N, *input_shape]`` or ``[N, D]`` inputs.

        Returns
        -------
        torch.Tensor
            ``[N, 2]`` plane coordinates, in the adapter's dtype and device.
        """
        u = utils.to_plane_coords(torch.as_tensor(x).reshape(len(x), -1), self.T)
        return torch.as_tensor(u).to(dtype=self.basis.dtype, device=self.basis.device)

    def get_weights(self, dtype=torch.float64):
        """Return the plane map as one matrix ``[B | origin]``, with ``x = B u + origin``.

        Parameters
        ----------
        dtype : torch.dtype
            The matrix's dtype.

        Returns
        -------
        torch.Tensor
            ``[D, 3]``.
        """
        return torch.cat([self.basis.T, self.origin[:, None]], dim=1).to(dtype)


class model_wrapper(object):
    """Wrap a piecewise-linear torch ``nn.Sequential`` for SplineCam.

    The original's signature; the partition itself is computed by the engine
    (:func:`splinecam.compat.compute.get_partitions_with_db`).

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode (``model.eval()``), else ``ValueError``. It is moved to ``device``
        and cast to ``dtype`` in place.
    input_shape : tuple of int or int, optional
        Shape of one input without the batch dimension, e.g. ``(1, 28, 28)``; inferred
        for MLPs, and from ``T`` as ``(D,)`` otherwise.
    is_classifier : bool
        Kept for compatibility; no effect.
    custom_layers, custom_activations : tuple
        Must be empty (``NotImplementedError`` otherwise): every supported module is
        known to the engine.
    device : str
        ``'cuda'`` falls back to ``'cpu'`` with a warning when CUDA is unavailable.
    as_sequential : bool
        Kept for compatibility; no effect.
    T : torch.Tensor, optional
        ``(D, 3)`` projection matrix from :func:`splinecam.compat.utils.get_proj_mat`.
        Without it a 2-D input space is its own plane; for larger inputs ``verify`` uses
        a random plane through the origin and ``T`` must be given to
        ``get_partitions_with_db``.
    dtype : torch.dtype
        ``torch.float64`` is recommended (the engine's geometry is float64).

    Attributes
    ----------
    model : torch.nn.Module
        The wrapped model (moved and cast).
    T : torch.Tensor or None
        The projection matrix.
    layers : torch.nn.Sequential
        An :class:`adapter` from plane coordinates to inputs followed by the model's
        modules: ``NN.layers(u)`` evaluates the model at plane points ``u`` ``[N, 2]``.
    last_partition : Partition or None
        The :class:`splinecam.Partition` of the most recent ``get_partitions_with_db``
        call.

    Raises
    ------
    ValueError
        When the model is in training mode, or ``input_shape`` cannot be inferred or
        does not match ``T``.
    NotImplementedError
        When the model holds modules the engine does not support, or custom layers are
        given.
    """

    @torch.no_grad()
    def __init__(self, model, input_shape=None, is_classifier=False,
                 custom_layers=(), custom_activations=(),
                 device="cuda", as_sequential=True, T=None, dtype=torch.float32):
        if model.training:
            raise ValueError("Model should always be supplied in eval mode. "
                             "Please do `model.eval()` before wrapping")
        if custom_layers or custom_activations:
            raise NotImplementedError("custom_layers / custom_activations are not supported")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            warnings.warn("CUDA is not available; model_wrapper uses device='cpu'")
            device = "cpu"

        self.device = device
        self.dtype = dtype
        self.is_classifier = is_classifier
        self.as_sequential = as_sequential
        self.last_partition = None

        from splinecam import SUPPORTED_MODULES  # what the engine can partition

        self._steps = _flatten_sequential(model)
        if self._steps is not None:
            bad = sorted({type(m).__name__ for m in self._steps if not isinstance(m, SUPPORTED_MODULES)})
            if bad:
                raise NotImplementedError(
                    f"Model contains modules {bad} which are currently not supported")

        D = None if T is None else int(T.shape[0])
        if input_shape is None:
            numel = D if D is not None else _infer_input_numel(self._steps)
            if numel is None:
                raise ValueError("Please specify input_shape (or T) for this model")
            input_shape = (numel,)
        shape = (int(input_shape),) if isinstance(input_shape, int) else tuple(int(s) for s in input_shape)
        if D is not None and math.prod(shape) != D:
            raise ValueError(f"T has {D} rows but input_shape {shape} has {math.prod(shape)} elements")
        if T is None and math.prod(shape) == 2:
            T = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
        self.input_shape = input_shape
        self._shape = shape
        self.T = T

        self.model = model.to(device=device, dtype=dtype)
        if T is not None:
            self._adapter = adapter(T, shape, device=device, dtype=dtype)
        else:
            self._adapter = None
        body = self._steps if self._steps is not None else [model]
        self.layers = nn.Sequential(*([self._adapter] if self._adapter is not None else []), *body)

    # ------------------------------------------------------------------ plane helpers

    def _require_plane(self):
        if self._adapter is None:
            raise ValueError("this wrapper has no projection matrix T")
        return self._adapter

    @torch.no_grad()
    def forward(self, u):
        """Evaluate the model at plane coordinates.

        Parameters
        ----------
        u : torch.Tensor or array-like
            ``[N, 2]`` plane coordinates.

        Returns
        -------
        torch.Tensor
            The model's outputs, ``[N, C]``.

        Raises
        ------
        ValueError
            When the wrapper has no projection matrix ``T``.
        """
        return self.model(self._require_plane()(u))

    # ------------------------------------------------------------------ verification

    @torch.no_grad()
    def verify(self, seed=0, eps=1e-5, n_points=16, check_engine=True):
        """Check that ``model.forward`` agrees with the network's local affine maps.

        At ``n_points`` random points of the slice plane (coordinates ~ N(0, 1)):

        1. *Matmul check* (Sequential models): the plane's affine parameterisation is
           pushed through the modules with explicit activation slopes; its value at each
           point must equal the forward pass. Fails e.g. for BatchNorm or Dropout left in
           training mode, or a plane map that does not reach the model's input.
        2. *Engine check* (``check_engine``): the engine partitions a small square of the
           plane around one random point; each region's affine map evaluated at the
           region's vertex mean must equal the forward pass there.

        Parameters
        ----------
        seed : int
            Seed of the random points (and of the random plane without ``T``).
        eps : float
            Agreement is ``|a - b| <= eps * (1 + |b|)`` element-wise.
        n_points : int
            Number of random points.
        check_engine : bool
            Also run the engine check.

        Returns
        -------
        bool
            Whether every check agrees; when not, a warning gives the largest
            discrepancy.
        """
        g = torch.Generator(device="cpu").manual_seed(int(seed))
        adapter_ = self._adapter
        if adapter_ is None:  # no T: a random plane through the origin
            D = math.prod(self._shape)
            q, _ = torch.linalg.qr(torch.randn(D, 2, generator=g, dtype=torch.float64))
            adapter_ = adapter(torch.cat([q, torch.zeros(D, 1, dtype=torch.float64)], 1),
                               self._shape, device=self.device, dtype=self.dtype)
        u = torch.randn(n_points, 2, generator=g, dtype=torch.float64)

        def agree(what, a, b):
            a = a.to(torch.float64).reshape(b.shape)
            b = b.to(torch.float64)
            err = float(((a - b).abs() / (1 + b.abs())).max())
            if not err <= eps:
                warnings.warn(f"model_wrapper.verify: model.forward and {what} differ by {err:.3g} "
                              f"(relative), more than eps={eps}")
            return err <= eps

        if self._steps is not None and all(isinstance(m, _AFFINE + _ELEMENTWISE) for m in self._steps):
            c = adapter_.origin.reshape(1, *self._shape).expand(n_points, *self._shape)
            A = adapter_.basis.reshape(1, 2, *self._shape).expand(n_points, 2, *self._shape)
            y_chain = _affine_chain(self._steps, c.clone(), A.clone(), u.to(self.device))
            if not agree("the layer-by-layer affine maps", y_chain, self.model(adapter_(u))):
                return False
        if check_engine:
            return self._verify_engine(adapter_, u[0], agree)
        return True

    @torch.no_grad()
    def _verify_engine(self, adapter_, u0, agree, half=0.05, max_regions=64):
        """The engine's affine maps on a small square around ``u0`` against the model."""
        from splinecam import Slice, partition  # the engine; imported lazily (package init order)

        square = torch.tensor([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=torch.float64)
        poly = (u0 + half * square).numpy()
        sl = Slice(adapter_.origin.reshape(self._shape), adapter_.basis.reshape(2, *self._shape), poly)
        part = partition(self.model, sl, decision_boundary=False, progress=False)
        A, c = (torch.from_numpy(t) for t in part.affine_maps())  # [F, C, 2], [F, C]
        uc = torch.from_numpy(part.centroids())  # [F, 2] interior points
        if len(uc) > max_regions:
            keep = torch.randperm(len(uc), generator=torch.Generator().manual_seed(0))[:max_regions]
            A, c, uc = A[keep], c[keep], uc[keep]
        y_aff = torch.einsum("fcd,fd->fc", A, uc) + c
        y = self.model(adapter_(uc)).reshape(len(uc), -1)
        return agree("the engine's affine maps", y_aff, y)

    def __repr__(self):
        return (f"model_wrapper(input_shape={self._shape}, T={'None' if self.T is None else tuple(self.T.shape)}, "
                f"dtype={self.dtype}, device={self.device!r})")
