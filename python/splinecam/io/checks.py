"""A first forward pass of the loaded model at the loaded points, with messages that say
what shape the model expects (:func:`check_forward`)."""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

from splinecam.io.errors import InputError as CliError
from splinecam.io.errors import first_line as _first_line

from splinecam.io.models import LoadedModel
from splinecam.io.points import IMAGE_SUFFIXES, _fit_shape

__all__ = ["check_forward"]


_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}


def _probe(model, x):
    """Run ``model`` on ``x``, recording the Linear/Conv layers it reaches in order as
    [module, shape of its input, finished]. Returns (records, the exception or None)."""
    import torch
    from torch import nn

    rec, hooks = [], []

    def pre(m, args):
        rec.append([m, tuple(args[0].shape) if args and isinstance(args[0], torch.Tensor) else None, False])

    def post(m, args, out):
        next(r for r in reversed(rec) if r[0] is m)[2] = True

    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            hooks += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with torch.no_grad():
            model(x)
        return rec, None
    except Exception as e:
        return rec, e
    finally:
        for h in hooks:
            h.remove()


def _expected_shape(model, dtype, first, shape: Tuple[int, ...]) -> Optional[Tuple[int, ...]]:
    """The input shape the model takes, guessed from its first Linear/Conv layer ``first``
    (and the points' ``shape``) and confirmed by running the model on zeros; None if unknown."""
    import numpy as np
    import torch
    from torch import nn

    def probe(s):
        return _probe(model, torch.zeros((1,) + s, dtype=dtype))

    if isinstance(first, nn.Linear):
        s = (first.in_features,)
        return s if probe(s)[1] is None else None
    c, k = first.in_channels, len(first.kernel_size)
    guesses = [(c,) + shape[1:]] if len(shape) == k + 1 else []
    per = int(np.prod(shape)) // c
    side = int(round(per ** (1 / k)))
    if side ** k * c == int(np.prod(shape)):
        guesses.append((c,) + (side,) * k)
    for s in guesses:
        if probe(s)[1] is None:
            return s
    # A square size: the first Linear that does not fit says whether it is too small or too large.
    lo, hi = 1, {1: 65536, 2: 1024}.get(k, 128)
    while lo <= hi:
        side = (lo + hi) // 2
        rec, err = probe((c,) + (side,) * k)
        if err is None:
            return (c,) + (side,) * k
        last = rec[-1] if rec else None
        if last is not None and isinstance(last[0], nn.Linear) and not last[2] and last[1]:
            if last[1][-1] == last[0].in_features:
                return None  # not a size problem
            lo, hi = (side + 1, hi) if last[1][-1] < last[0].in_features else (lo, side - 1)
        else:  # e.g. a kernel larger than the input
            lo = side + 1
    return None


def _shape_message(model, dtype, x, shape: Tuple[int, ...], e: BaseException, pts, paths) -> str:
    """Why the model cannot take the points: the input shape it expects (from its first
    Linear/Conv layer) against the points' shape, and what to pass instead."""
    import numpy as np
    from torch import nn

    head = f"the model cannot take inputs of shape {shape} (the shape of the points)"
    layers = (nn.Linear, nn.modules.conv._ConvNd)
    try:
        rec, _ = _probe(model, x)
        first = rec[0][0] if rec else next((m for m in model.modules() if isinstance(m, layers)), None)
        expected = None if first is None else _expected_shape(model, dtype, first, shape)
    except Exception:  # the diagnosis must never hide the error itself
        first = expected = None
    if first is None:
        return f"{head}: {_first_line(e)}"
    linear = isinstance(first, nn.Linear)
    takes = (f"its first layer, {type(first).__name__}, takes "
             f"{f'{first.in_features} values' if linear else f'{first.in_channels} channel'}"
             f"{'s' if linear or first.in_channels != 1 else ''}")
    if expected is None:  # torch's own words are all there is to say
        if linear:
            return f"{head}: {_first_line(e)} ({takes})"
        dims = _SPATIAL.get(len(first.kernel_size), "...")
        return f"{head}: it expects inputs of shape ({first.in_channels}, {dims}) ({takes}); {_first_line(e)}"
    need, have = int(np.prod(expected)), int(np.prod(shape))
    flag = f"--input-shape {','.join(map(str, expected))}"
    if need == have:
        hint = f"; try {flag}"
    else:
        try:  # an image may become grey or three-channel (see _fit_shape)
            converts = bool(paths) and pts[0].ndim == 3 and all(
                os.path.splitext(p)[1].lower() in IMAGE_SUFFIXES for p in paths) and all(
                _fit_shape(a, expected, p, True) is not None for a, p in zip(pts, paths))
        except (CliError, ValueError):
            converts = False
        hint = (f"; try {flag} (it converts these images)" if converts else
                f"; give points of {need} values each (these have {have}): --input-shape only reshapes them")
    return f"{head}: it expects inputs of shape {expected} ({takes}){hint}"


def check_forward(lm: LoadedModel, pts, paths: Optional[Sequence[str]] = None) -> "object":
    """Run the model on the points (a clear error for a shape mismatch: the shape the model
    expects, the points' shape, what to pass; ``paths``: the points' files, for the advice);
    for a rebuilt TorchScript model also compare with the file's own forward. Returns the outputs."""
    import numpy as np
    import torch

    model = lm.module
    floats = [t for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()]
    dtype = floats[0].dtype if floats else torch.float32
    x = torch.from_numpy(np.stack(pts)).to(dtype)
    shape = tuple(pts[0].shape)
    def shape_error(e):
        return CliError(_shape_message(model, dtype, x, shape, e, pts, paths))

    with torch.no_grad():
        if lm.script is None:
            try:
                return model(x)
            except Exception as e:
                raise shape_error(e) from None
        try:
            y_file = lm.script(x)
        except Exception as e:
            raise shape_error(e) from None
        try:
            y = model(x)
            ok = isinstance(y_file, torch.Tensor) and y_file.shape == y.shape
        except Exception:
            ok = False
        if ok:
            scale = float(y_file.abs().max()) + 1e-12
            ok = bool(torch.allclose(y.to(y_file.dtype), y_file, rtol=1e-4, atol=1e-5 * scale))
        if not ok:
            extra = (f"; {len(lm.defaults_used)} settings are not recorded in the file (it was probably made "
                     f"with torch.jit.trace): {', '.join(lm.defaults_used[:6])}"
                     f"{', ...' if len(lm.defaults_used) > 6 else ''}") if lm.defaults_used else ""
            raise CliError(f"the nn.Sequential rebuilt from '{lm.name}' does not compute what the file "
                           f"computes{extra}. Save the model with torch.jit.script instead of torch.jit.trace, "
                           f"or give package.module:factory with --state-dict FILE")
    return y
