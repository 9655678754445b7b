"""``splinecam.compute.get_partitions_with_db``: the original SplineCam computation call,
answered by the engine (:func:`splinecam.partition`)."""

import warnings

import numpy as np
import torch

from splinecam.compat import utils

__all__ = ["get_partitions_with_db"]


def _domain_polygon(domain, mean, V, B, D):
    """Plane coordinates ``[k, 2]`` of the domain's distinct vertices (the Slice checks
    that they form a convex polygon); warns when the domain does not lie in the plane."""
    d = utils._flat_domain(domain)
    if d.shape[1] != D:
        raise ValueError(f"domain vertices have {d.shape[1]} elements but T has {D} rows")
    u = (d - mean) @ V
    # A domain off the plane is replaced by its projection: say so. The tolerance allows
    # for a T rounded to float32.
    off = float(torch.linalg.norm(d - (mean + u @ B.T), dim=1).max())
    scale = max(float(torch.linalg.norm(d, dim=1).max()), 1.0)
    if off > 1e-5 * scale:
        warnings.warn(f"domain vertices lie up to {off:.3g} away from the plane of T; "
                      "the partition is computed on their projection onto that plane")
    return u.numpy()


def _partition(domain, T, NN, decision_boundary, progress):
    """Run the engine on ``domain`` in the plane of ``T`` for the wrapped model."""
    from splinecam import Slice, partition  # the engine; imported lazily (package init order)

    if T is None:
        T = NN.T
    if T is None:
        raise ValueError("a projection matrix T is needed (splinecam.utils.get_proj_mat(domain))")
    if NN.T is not None and T is not NN.T and not torch.allclose(
            utils._as_f64(T), utils._as_f64(NN.T), rtol=1e-12, atol=1e-12):
        raise ValueError("T differs from the T the model was wrapped with")
    mean, V, B = utils._plane(T)
    poly = _domain_polygon(domain, mean, V, B, T.shape[0])
    shape = NN._shape
    part = partition(NN.model, Slice(mean.reshape(shape), B.T.reshape(2, *shape), poly),
                     decision_boundary=decision_boundary, progress=progress)
    NN.last_partition = part
    return part


def get_partitions_with_db(domain, T, NN, fwd_batch_size=1024, batch_size=128,
                           n_workers=2, Abw_batch_size=16, *, progress=True):
    """Compute the exact linear regions and decision boundary of ``NN`` on a convex 2-D domain.

    Everything is in plane coordinates ``T[:, :2].T @ (x - T[:, 2])``. The
    :class:`splinecam.Partition` behind the answer is kept as ``NN.last_partition``.

    Parameters
    ----------
    domain : torch.Tensor or numpy.ndarray
        ``[k+1, D]`` closed polygon of input-space vertices; it must be convex.
    T : torch.Tensor
        Its ``[D, 3]`` projection matrix from :func:`splinecam.compat.utils.get_proj_mat`
        (None: the wrapper's).
    NN : splinecam.compat.wrappers.model_wrapper
        The wrapped model.
    fwd_batch_size, batch_size, n_workers, Abw_batch_size : int
        The original's tuning knobs; ignored.
    progress : bool
        Show the engine's progress bar.

    Returns
    -------
    regions : list of torch.Tensor
        float64 CPU tensors ``[k_i, 2]``, one convex region per entry, vertices
        counter-clockwise without repeating the first one.
    db_edges : torch.Tensor
        float64 ``[m, 2, 2]`` decision-boundary segments (start and end point): the
        zero level set of the output for a single-output model, the set where the
        arg-max class changes otherwise; ``m`` is 0 when the domain contains none.

    Raises
    ------
    ValueError
        When there is no projection matrix, ``T`` differs from the wrapper's, or the
        domain's vertices do not match ``T``.
    """
    part = _partition(domain, T, NN, decision_boundary=True, progress=progress)
    regions = [torch.from_numpy(p) for p in part.polygons()]
    db = torch.as_tensor(np.asarray(part.decision_boundary, dtype=np.float64).reshape(-1, 2, 2))
    return regions, db
