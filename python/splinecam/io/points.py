"""Points from files: ``.npy`` arrays or images, shaped to one model input
(:func:`load_points`)."""
from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

from splinecam.io.errors import InputError as CliError
from splinecam.io.errors import first_line as _first_line

__all__ = ["load_point", "load_points", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _to_channel_first(img, path: str):
    import numpy as np

    a = np.asarray(img)
    if a.dtype == np.uint8:
        a = a.astype(np.float64) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float64) / 65535.0
    else:
        a = a.astype(np.float64)
    if a.ndim == 2:
        return a[None]
    if a.ndim == 3 and a.shape[2] in (2, 4):  # drop alpha
        a = a[:, :, :-1]
    if a.ndim == 3 and a.shape[2] in (1, 3):
        return np.ascontiguousarray(a.transpose(2, 0, 1))
    raise CliError(f"image '{path}' has an unexpected layout {a.shape}")


def _fit_shape(a, shape: Tuple[int, ...], path: str, is_image: bool):
    import numpy as np

    n = int(np.prod(shape))
    if a.size == n:
        return a.reshape(shape)
    if is_image:
        c, h, w = a.shape
        grey = a.mean(axis=0, keepdims=True) if c == 3 else a
        if grey.size == n:  # e.g. an RGB 28x28 image for a model on 784 grey values
            return grey.reshape(shape)
        if len(shape) == 3 and shape[1:] == (h, w) and shape[0] == 3 and c == 1:
            return np.repeat(a, 3, axis=0)
    raise CliError(f"point '{path}' has shape {tuple(a.shape)} ({a.size} values), which cannot be made into "
                   f"--input-shape {','.join(map(str, shape))} ({n} values)")


def load_point(path: str, shape: Optional[Tuple[int, ...]] = None):
    """One input from a .npy array or an image, as float64 numpy of the model's shape."""
    import numpy as np

    if not os.path.exists(path):
        raise CliError(f"point file '{path}' not found")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except Exception as e:
            raise CliError(f"cannot read '{path}' as a .npy array: {_first_line(e)}") from None
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise CliError(f"'{path}' holds {a.dtype} values, not numbers")
        a = a.astype(np.float64)
        is_image = False
    elif ext in IMAGE_SUFFIXES:
        import matplotlib.image as mpimg
        try:
            img = mpimg.imread(path)
        except Exception as e:
            raise CliError(f"cannot read image '{path}': {_first_line(e)}") from None
        a = _to_channel_first(img, path)
        is_image = True
    else:
        raise CliError(f"point '{path}': unknown file type '{ext or '(none)'}'; give .npy arrays or "
                       f"{'/'.join(IMAGE_SUFFIXES)} images")
    if not np.all(np.isfinite(a)):
        raise CliError(f"point '{path}' contains NaN or infinite values")
    if shape is not None:
        a = _fit_shape(a, shape, path, is_image)
    return a


def load_points(paths: Sequence[str], shape: Optional[Tuple[int, ...]] = None):
    pts = [load_point(p, shape) for p in paths]
    shapes = [tuple(p.shape) for p in pts]
    if len(set(shapes)) > 1:
        desc = ", ".join(f"{l}={os.path.basename(p)} {s}" for l, p, s in zip("ABC", paths, shapes))
        raise CliError(f"the three points have different shapes ({desc}): give inputs of one shape, or "
                       f"--input-shape to reshape them")
    return pts
