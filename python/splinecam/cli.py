"""The ``splinecam`` command line (also ``python -m splinecam``).

Subcommands:

* ``splinecam demo``  - train a small MLP on two moons and draw its exact partition;
* ``splinecam info``  - how the compiled engine was built;
* ``splinecam slice`` - the exact partition of a saved model on the plane through three
  inputs, written as a figure, arrays, GeoJSON or a graph-tool graph.

Every failure the user can fix (a missing file, a model splinecam cannot handle, points
of different shapes, ...) is reported as one line on stderr with exit status 1; usage
errors exit with status 2, as argparse does.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

__all__ = ["main", "build_parser", "CliError"]

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
OUTPUT_SUFFIXES = FIGURE_SUFFIXES + (".npz", ".geojson", ".gt")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class CliError(Exception):
    """A problem with the command's input, reported as one line without a traceback."""


# ----------------------------------------------------------------------------- parser

_MAIN_EPILOG = """\
examples:
  splinecam demo --out demo_output
  splinecam slice mymodels:make_mlp --state-dict weights.pt \\
      --points a.npy b.npy c.npy --pad 0.1 --out slice.png
  splinecam slice model_scripted.pt --points cat.png dog.png car.png --out slice.npz

Run `splinecam slice --help` for the details of MODEL, the points and the outputs.
"""

_SLICE_DESCRIPTION = """\
Compute the exact linear regions of a piecewise-linear model (ReLU/LeakyReLU network)
on the plane through three inputs A, B and C, and the model's decision boundary there,
then write them to --out.

MODEL is either
  * a TorchScript file made with torch.jit.save(torch.jit.script(model), FILE), where
    `model` is an nn.Sequential of supported layers, or
  * package.module:factory - splinecam imports `package.module` (from the current
    directory or PYTHONPATH) and calls factory() to build the nn.Module; add
    --state-dict FILE to load trained weights saved with torch.save(model.state_dict()).

A, B, C are .npy arrays or images (.png/.jpg). Images become floats in [0, 1], channel
first: (3, H, W) for colour, (1, H, W) for grey. Use --input-shape when the model wants
another shape, e.g. --input-shape 784 for a flattened 28x28 grey image.

The model must be piecewise linear: affine layers (Linear, Conv, BatchNorm, average
pooling, Flatten, Dropout, ...) and piecewise-linear nonlinearities (ReLU, LeakyReLU,
PReLU, Hardtanh/ReLU6, MaxPool, abs, max); a final softmax or sigmoid is ignored. A factory's model
may have its own forward() if torch.fx can trace it; a TorchScript model must be a
(nested) nn.Sequential of torch.nn layers.

The file type of --out follows its extension:
  .png .svg .pdf  a figure: regions coloured by slope norm (or activation pattern),
                  the decision boundary in red, A, B and C marked
  .npz            numpy arrays: vertices, edges, edge_layer, edge_unit, edge_decision,
                  decision_boundary, face_coords, face_offsets (region i is
                  face_coords[face_offsets[i]:face_offsets[i+1]]), slope_norms, and
                  the plane: domain, origin, basis (a plane point (u0, u1) is the
                  input origin + u0*basis[0] + u1*basis[1])
  .geojson        regions as Polygons (with area and slope_norm), decision-boundary
                  segments as LineStrings
  .gt             a graph-tool graph (vertex `pos`; edge `layer`, `unit`, `decision`)
All coordinates are plane coordinates: origin at the centroid of A, B, C, first axis
along B - A, both axes orthonormal in input space.
"""

_SLICE_EPILOG = """\
examples:
  # a model defined in mymodels.py (in the current directory) with trained weights
  splinecam slice mymodels:make_mlp --state-dict weights.pt \\
      --points a.npy b.npy c.npy --pad 0.1 --out slice.png

  # a scripted CNN through three 32x32 colour images, arrays for further analysis
  splinecam slice cnn_scripted.pt --points cat.png dog.png car.png --out slice.npz

  # an MLP on flattened 28x28 grey images
  splinecam slice mymodels:mnist_mlp --points 3.png 5.png 8.png --input-shape 784 --out mnist.svg
"""


def _input_shape(text: str) -> Tuple[int, ...]:
    parts = [p for p in re.split(r"[,x\s]+", text.strip()) if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(s <= 0 for s in shape):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, e.g. 3,32,32 or 784; "
                                         f"got {text!r}")
    return shape


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return v


def _dask_client(args):
    """The Dask client of --scheduler / --workers, or None."""
    if not (args.scheduler or args.workers):
        return None
    try:
        import distributed
    except ImportError:
        raise CliError("--scheduler and --workers need Dask distributed: pip install 'splinecam[dask]'") from None
    if args.scheduler:
        try:
            return distributed.Client(args.scheduler, timeout=10)
        except (OSError, TimeoutError) as e:
            raise CliError(f"--scheduler {args.scheduler}: cannot reach the scheduler ({e})") from None
    cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    return distributed.Client(cluster)


def _tiles(text: str):
    if text == "auto":
        return "auto"
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {text!r}") from None


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = 0.0
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number; got {text!r}")
    return v


def _non_negative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number; got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="splinecam",
        description="Exact linear regions and decision boundaries of 2-D slices of piecewise-linear networks.",
        epilog=_MAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from splinecam import __version__
    parser.add_argument("--version", action="version", version=f"splinecam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="train a small MLP on two moons and draw its exact partition (CPU)")
    demo.add_argument("--out", default="demo_output", help="folder for the figures (default: demo_output)")
    demo.add_argument("--steps", type=int, default=600, help="training steps (default: 600)")
    demo.add_argument("--no-progress", action="store_true", help="hide the progress bar")

    sub.add_parser("info", help="print how the extension was built and whether a GPU is usable now")

    sl = sub.add_parser(
        "slice", help="partition a saved model on the plane through three inputs",
        description=_SLICE_DESCRIPTION, epilog=_SLICE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sl.add_argument("model", metavar="MODEL",
                    help="TorchScript file, or package.module:factory (factory() returns the nn.Module)")
    sl.add_argument("--points", nargs=3, metavar=("A", "B", "C"), required=True,
                    help="three inputs (.npy, .png, .jpg) spanning the plane")
    sl.add_argument("--out", required=True, metavar="FILE",
                    help="output file: .png/.svg/.pdf figure, .npz arrays, .geojson, or .gt graph")
    sl.add_argument("--pad", type=_non_negative_float, default=None, metavar="P",
                    help="partition the rectangle around A, B, C enlarged by P times its larger side on every "
                         "side (default: the triangle A, B, C itself)")
    sl.add_argument("--state-dict", metavar="FILE", default=None,
                    help="weights for a package.module:factory model (torch.save(model.state_dict(), FILE))")
    sl.add_argument("--input-shape", type=_input_shape, default=None, metavar="SHAPE",
                    help="shape of one model input without the batch dimension, e.g. 3,32,32 or 784 "
                         "(default: the shape of the points)")
    sl.add_argument("--no-decision-boundary", action="store_true",
                    help="skip the decision boundary (zero level set of a single output, arg-max change otherwise)")
    sl.add_argument("--color", choices=("slope", "pattern"), default="slope",
                    help="figure colouring: norm of each region's slope (default) or one colour per activation "
                         "pattern")
    sl.add_argument("--scale", type=_positive_float, default=None, metavar="S",
                    help="zoom: scale the slice by S about the centroid of A, B, C (S < 1 zooms in)")
    sl.add_argument("--memory-limit", type=_positive_float, default=None, metavar="GIB",
                    help="memory the per-vertex values may take, in GiB (default: half of the available memory); "
                         "a slice that needs more is computed in tiles")
    sl.add_argument("--tiles", type=_tiles, default="auto", metavar="N",
                    help="auto (default): one pass if the slice fits the memory limit, else tiles cut until each "
                         "fits, stitched into one exact partition; N: start from an N x N grid of tiles; 1: one "
                         "pass or an error")
    sl.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="run the tiles on the Dask cluster of this scheduler (e.g. tcp://host:8786)")
    sl.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                    help="run the tiles on a local Dask cluster of N worker processes")
    sl.add_argument("--device", default="cpu", metavar="DEV",
                    help="where forward passes and geometry run: cpu (default), cuda or cuda:i")
    sl.add_argument("--dpi", type=_positive_int, default=200, help="resolution of a .png figure (default: 200)")
    sl.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    sl.add_argument("--traceback", action="store_true", help="show the full Python traceback on errors (bug reports)")

    ex = sub.add_parser(
        "explore", help="pan and zoom the exact partition of a slice in the browser (a local Bokeh server)",
        description="Serve an interactive page of the slice through three inputs: every view is computed exactly "
                    "(as tiles that are kept), hover a region for its class, slope and activation pattern, click it "
                    "for its affine map, slide through the layers, export the view.",
        epilog="example:\n  splinecam explore mymodels:mnist_mlp --points 3.png 5.png 8.png --input-shape 784 --pad 0.2",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("model", metavar="MODEL",
                    help="TorchScript file, or package.module:factory (factory() returns the nn.Module)")
    ex.add_argument("--points", nargs=3, metavar=("A", "B", "C"), required=True,
                    help="three inputs (.npy, .png, .jpg) spanning the plane")
    ex.add_argument("--pad", type=_non_negative_float, default=None, metavar="P",
                    help="explore the rectangle around A, B, C enlarged by P times its larger side on every side "
                         "(default: the triangle A, B, C itself)")
    ex.add_argument("--scale", type=_positive_float, default=None, metavar="S",
                    help="scale the slice by S about the centroid of A, B, C (S < 1 zooms in)")
    ex.add_argument("--state-dict", metavar="FILE", default=None,
                    help="weights for a package.module:factory model (torch.save(model.state_dict(), FILE))")
    ex.add_argument("--input-shape", type=_input_shape, default=None, metavar="SHAPE",
                    help="shape of one model input without the batch dimension (default: the shape of the points)")
    ex.add_argument("--port", type=int, default=5006, help="port of the page (default: 5006; 0: any free port)")
    ex.add_argument("--address", default="localhost",
                    help="address to bind (default: localhost; other machines can reach 0.0.0.0)")
    ex.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    ex.add_argument("--export-dir", default="splinecam_export", metavar="DIR",
                    help="folder for the page's exports (default: splinecam_export)")
    ex.add_argument("--memory-limit", type=_positive_float, default=None, metavar="GIB",
                    help="memory the per-vertex values of one cell may take, in GiB (default: half of the "
                         "available memory)")
    ex.add_argument("--traceback", action="store_true", help="show the full Python traceback on errors (bug reports)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from splinecam.demo import run_demo
        s = run_demo(args.out, steps=args.steps, progress=not args.no_progress)
        print(f"splinecam demo: {s['regions']} regions, {s['edges']} edges, {s['decision_segments']} decision-boundary "
              f"segments in {s['seconds']:.3f} s (training {s['train_seconds']:.1f} s, accuracy "
              f"{s['train_accuracy']:.3f}); figures: {', '.join(s['figures'])}")
        return 0
    if args.command == "info":
        import splinecam
        info = splinecam.build_info()
        compiled = info.pop("cuda")  # "built with CUDA", which says nothing about a GPU being there
        for k, v in info.items():
            print(f"{k}: {v}")
        print(f"cuda_compiled: {compiled}")
        print(f"cuda_available: {splinecam.cuda_available()}")
        return 0
    if args.command in ("slice", "explore"):
        try:
            return run_slice(args) if args.command == "slice" else run_explore(args)
        except KeyboardInterrupt:
            print("splinecam: interrupted", file=sys.stderr)
            return 130
        except Exception as e:  # every failure as one line; --traceback for the details
            if args.traceback:
                raise
            print(f"splinecam: error: {_one_line(e)}", file=sys.stderr)
            return 1
    parser.print_help()
    return 2


def _one_line(e: BaseException) -> str:
    if isinstance(e, CliError):
        msg = str(e)
    elif isinstance(e, MemoryError):
        msg = str(e) or "out of memory: use a smaller slice (less --pad, closer points) or a narrower model"
    else:
        from splinecam import UnsupportedModelError
        msg = str(e)
        if not isinstance(e, (UnsupportedModelError, ValueError)) or not msg:
            msg = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
        if not isinstance(e, (ValueError, TypeError, OSError, ImportError)):
            msg += " (unexpected: rerun with --traceback and report it, please)"
    return " ".join(line.strip() for line in msg.splitlines() if line.strip())


def _first_line(e: BaseException) -> str:
    """The informative line of a (possibly TorchScript) exception message."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    if not lines:
        return type(e).__name__
    # TorchScript errors carry the scripted traceback first and the error last.
    for l in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception):", l):
            return l
    return f"{type(e).__name__}: {lines[0]}"


# ----------------------------------------------------------------------------- models

@dataclass
class LoadedModel:
    module: "object"                   # torch.nn.Module given to the engine
    name: str                          # for titles
    script: "object" = None            # the TorchScript module it was rebuilt from
    defaults_used: List[str] = field(default_factory=list)  # hyper-parameters not in the file


_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def load_model(spec: str, state_dict: Optional[str] = None) -> LoadedModel:
    """A model from a TorchScript file or ``package.module:factory``, in eval mode."""
    if os.path.exists(spec):
        if os.path.isdir(spec):
            raise CliError(f"MODEL '{spec}' is a folder; give a TorchScript file or package.module:factory")
        if state_dict is not None:
            raise CliError("--state-dict is for package.module:factory models; a TorchScript file already holds "
                           "its weights")
        lm = _load_torchscript(spec)
    elif _FACTORY.match(spec):
        lm = LoadedModel(_load_factory(spec), spec)
        if state_dict is not None:
            _load_state_dict(lm.module, state_dict)
    else:
        raise CliError(f"MODEL '{spec}' not found: it is neither an existing file (a TorchScript model) nor "
                       f"package.module:factory (e.g. mymodels:make_mlp)")
    lm.module.eval()
    return lm


def _load_factory(spec: str):
    from torch import nn

    mod_name, attr = spec.split(":")
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # as `python -m` does, also for the console script
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        if e.name and (mod_name == e.name or mod_name.startswith(e.name + ".")):
            raise CliError(f"cannot import '{mod_name}' for MODEL '{spec}': no module named '{e.name}' (run "
                           f"splinecam from the folder that holds it, or add that folder to PYTHONPATH)") from None
        raise CliError(f"importing '{mod_name}' failed: {type(e).__name__}: {e}") from None
    except Exception as e:
        raise CliError(f"importing '{mod_name}' failed: {type(e).__name__}: {_first_line(e)}") from None
    obj = mod
    for i, part in enumerate(attr.split(".")):
        if not hasattr(obj, part):
            where = mod_name + "".join("." + p for p in attr.split(".")[:i])
            names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
            close = difflib.get_close_matches(part, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else (
                f"; it has {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}" if names else "")
            raise CliError(f"factory '{attr}' not found: '{where}' has no attribute '{part}'{hint}")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise CliError(f"'{spec}' is a {type(obj).__name__}, not a factory (a function returning an nn.Module)")
    try:
        model = obj()
    except Exception as e:
        raise CliError(f"calling {spec}() failed: {type(e).__name__}: {_first_line(e).split(': ', 1)[-1]}") from None
    if not isinstance(model, nn.Module):
        raise CliError(f"{spec}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _load_state_dict(model, path: str) -> None:
    import torch

    if not os.path.isfile(path):
        raise CliError(f"state dict file '{path}' not found")
    sd = _torch_load_weights(path)
    if sd is None:
        raise CliError(f"'{path}' is a TorchScript file, not a state dict: give it as MODEL, without --state-dict")
    if isinstance(sd, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(sd.get(key), dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CliError(f"'{path}' holds a {type(sd).__name__} that is not a state dict (save weights with "
                       f"torch.save(model.state_dict(), FILE))")
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]

    def some(keys):
        return ", ".join(keys[:4]) + (", ..." if len(keys) > 4 else "")

    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({some(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({some(unexpected)})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} of another shape (e.g. '{k}': {tuple(sd[k].shape)} in the file, "
                        f"{tuple(own[k].shape)} in the model)")
    if problems:
        raise CliError(f"the weights in '{path}' do not fit the model built by the factory: tensors "
                       f"{'; '.join(problems)}")
    try:
        model.load_state_dict(sd)
    except Exception as e:
        raise CliError(f"the weights in '{path}' do not fit the model: {_first_line(e)}") from None


def _torch_load_weights(path: str):
    """``torch.load(path, weights_only=True)`` on the CPU; ``None`` for a TorchScript
    archive; :class:`CliError` when the file cannot be read that way."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            if "TorchScript" in str(e):
                return None
            raise CliError(f"cannot read '{path}' as saved tensors (torch.load with weights_only=True: "
                           f"{str(e).split('. ')[0] if str(e) else type(e).__name__}); save weights with "
                           f"torch.save(model.state_dict(), FILE)") from None


# TorchScript: splinecam reads a model's structure from Python modules (torch.fx), which
# a TorchScript file does not contain. A scripted nn.Sequential is therefore rebuilt as
# an nn.Sequential of ordinary torch.nn modules from its recorded tensors and constants.
# Scripted modules keep their constants (stride, padding, negative_slope, ...); traced
# ones keep only tensors, so defaults stand in for what is missing, and the rebuilt
# model is checked against the file's own forward on the actual points before use.

_SKIP_INIT_ARGS = {"self", "device", "dtype", "inplace", "return_indices"}


def _const(m, name, default, missing: list, path: str):
    try:
        return getattr(m, name)
    except AttributeError:
        missing.append(f"{path}.{name}" if path else name)
        return default


def _rebuild(m, path: str, missing: list):
    import inspect

    import torch
    from torch import nn

    kind = getattr(m, "original_name", type(m).__name__)
    params = dict(m.named_parameters(recurse=False))
    buffers = dict(m.named_buffers(recurse=False))
    where = f"'{path}' ({kind})" if path else f"({kind})"

    if kind == "Sequential":
        return nn.Sequential(*[_rebuild(c, f"{path}.{n}" if path else n, missing) for n, c in m.named_children()])
    if any(True for _ in m.named_children()):
        raise CliError(f"TorchScript module {where} has submodules but is not a Sequential: its forward() cannot be "
                       f"read from the file. Give the model as package.module:factory with --state-dict FILE")
    cls = getattr(nn, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        from splinecam import SUPPORTED_MODULES
        raise CliError(f"TorchScript module {where} is not a torch.nn module, so its forward() cannot be read from "
                       f"the file; splinecam rebuilds scripted nn.Sequential models of torch.nn layers such as "
                       f"{', '.join(c.__name__ for c in SUPPORTED_MODULES)}. Give the model as package.module:factory "
                       f"with --state-dict FILE")
    w = params.get("weight")
    if kind == "Linear":
        new = nn.Linear(w.shape[1], w.shape[0], bias=params.get("bias") is not None, dtype=w.dtype)
    elif kind in ("Conv1d", "Conv2d"):
        groups = _const(m, "groups", 1, missing, path)
        new = cls(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=_const(m, "stride", 1, missing, path),
                  padding=_const(m, "padding", 0, missing, path), dilation=_const(m, "dilation", 1, missing, path),
                  groups=groups, bias=params.get("bias") is not None,
                  padding_mode=_const(m, "padding_mode", "zeros", missing, path), dtype=w.dtype)
    elif kind in ("BatchNorm1d", "BatchNorm2d"):
        ref = w if w is not None else buffers.get("running_mean")
        if ref is None:
            raise CliError(f"TorchScript module {where} has neither weights nor running statistics")
        new = cls(ref.shape[0], eps=_const(m, "eps", 1e-5, missing, path), affine=w is not None,
                  track_running_stats=buffers.get("running_mean") is not None, dtype=ref.dtype)
    else:
        # Any other torch.nn module: its constructor arguments from the recorded constants.
        constants = set(getattr(cls, "__constants__", ()))
        kwargs = {}
        for name, p in inspect.signature(cls.__init__).parameters.items():
            if name in _SKIP_INIT_ARGS or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if hasattr(m, name):
                kwargs[name] = getattr(m, name)
            elif p.default is p.empty:
                raise CliError(f"TorchScript module {where}: its setting '{name}' is not recorded in the file (was it "
                               f"made with torch.jit.trace?). Save the model with torch.jit.script, or give "
                               f"package.module:factory with --state-dict FILE")
            elif name in constants:
                missing.append(f"{path}.{name}" if path else name)
        try:
            new = cls(**kwargs)
        except Exception as e:
            raise CliError(f"TorchScript module {where} cannot be rebuilt: {_first_line(e)}") from None
    with torch.no_grad():
        for n, t in list(new.named_parameters(recurse=False)) + list(new.named_buffers(recurse=False)):
            src = params.get(n, buffers.get(n))
            if src is None or src.shape != t.shape:
                raise CliError(f"TorchScript module {where}: cannot rebuild its tensor '{n}'")
            t.data = src.detach().clone()
    return new


def _load_torchscript(path: str) -> LoadedModel:
    import torch

    try:
        sm = torch.jit.load(path, map_location="cpu")
    except Exception:
        try:
            content = _torch_load_weights(path)
        except CliError:
            content = None
        if isinstance(content, dict):
            raise CliError(f"'{path}' holds saved tensors (a state dict?), not a TorchScript model: give the model "
                           f"as package.module:factory and this file as --state-dict {path}") from None
        raise CliError(f"'{path}' is not a TorchScript file (torch.jit.load cannot read it). Save models with "
                       f"torch.jit.save(torch.jit.script(model), FILE), or give package.module:factory with "
                       f"--state-dict FILE") from None
    kind = getattr(sm, "original_name", type(sm).__name__)
    if kind != "Sequential":
        raise CliError(f"the TorchScript model in '{path}' is a {kind}, not an nn.Sequential: splinecam reads a "
                       f"custom forward() from its Python code (torch.fx), which a TorchScript file does not hold. "
                       f"Give the model as package.module:factory with --state-dict FILE (torch.save("
                       f"model.state_dict(), FILE)), or script an nn.Sequential of torch.nn layers")
    sm.eval()
    missing: list = []
    model = _rebuild(sm, "", missing)
    return LoadedModel(model, os.path.basename(path), script=sm, defaults_used=missing)


# ----------------------------------------------------------------------------- points

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


# ----------------------------------------------------------------------------- checks

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


# ----------------------------------------------------------------------------- outputs

def save_npz(P, path: str) -> None:
    """:func:`splinecam.analysis.export.save_npz`'s arrays plus the plane (``origin``, ``basis``),
    so that plane points map back to model inputs: ``origin + u0 * basis[0] + u1 * basis[1]``."""
    import io

    import numpy as np

    from splinecam.analysis import export

    buf = io.BytesIO()
    export.save_npz(P, buf)
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["origin"] = P.slice.origin.numpy()
    arrays["basis"] = P.slice.basis.numpy()
    np.savez_compressed(path, **arrays)


def save_figure(P, path: str, *, lm: LoadedModel, pts, point_paths, outputs, color: str, dpi: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = P.num_regions
    lw = 0.3 if n < 2000 else 0.15 if n < 20000 else 0.05
    fig, ax = plt.subplots(figsize=(7, 6.5))
    P.plot(ax=ax, color=color, linewidth=lw, colorbar=(color == "slope"))
    uv = P.slice.to_plane(np.stack(pts))
    labels = []
    y = outputs.reshape(len(pts), -1).double() if outputs is not None else None
    for k, (name, p) in enumerate(zip("ABC", point_paths)):
        lab = f"{name}: {os.path.basename(p)}"
        if y is not None and y.shape[1] > 1:
            lab += f" (class {int(y[k].argmax())})"
        elif y is not None:
            lab += f" (output {float(y[k, 0]):+.3g})"
        labels.append(lab)
    from splinecam.analysis.plot import mark_points
    poly = P.slice.polygon
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    if float((np.maximum(hi, uv.max(axis=0)) - np.minimum(lo, uv.min(axis=0))).max()) <= 2 * float((hi - lo).max()):
        mark_points(ax, uv, "ABC", fontsize=11)  # frame the points too, unless a zoom put them far away
        lo, hi = np.minimum(lo, uv.min(axis=0)), np.maximum(hi, uv.max(axis=0))
    else:
        labels.append("(A, B, C lie outside this zoomed view)")
    m = 0.04 * float((hi - lo).max())
    ax.set_xlim(lo[0] - m, hi[0] + m)
    ax.set_ylim(lo[1] - m, hi[1] + m)
    db = len(P.decision_boundary)
    what = "slope norm" if color == "slope" else "activation pattern"
    title = f"{lm.name}: {n} linear regions\ncolour: {what}"
    if db:
        title += "; red: decision boundary"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("u0 (along B - A)\n" + "\n".join(labels), fontsize=8)
    ax.set_ylabel("u1")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


# ----------------------------------------------------------------------------- slice

def _check_out_folder(out: str) -> None:
    """Refuse an --out whose folder is missing before any work: splinecam creates no folders
    (a typo in the path would otherwise leave new folders behind)."""
    folder = os.path.dirname(out)
    if folder and os.path.exists(folder) and not os.path.isdir(folder):
        raise CliError(f"cannot write '{out}': '{folder}' is a file, not a folder; give another --out")
    if folder and not os.path.isdir(folder):
        raise CliError(f"cannot write '{out}': the folder '{folder}' does not exist; create it first or give "
                       f"another --out")


def _model_and_slice(args):
    """The model, the three points, the model's outputs there and the slice of the
    ``slice`` and ``explore`` commands."""
    import numpy as np
    import torch

    import splinecam
    lm = load_model(args.model, args.state_dict)
    pts = load_points(args.points, args.input_shape)
    outputs = check_forward(lm, pts, args.points)
    try:
        sl = splinecam.Slice.through(*(torch.from_numpy(p) for p in pts), pad=args.pad)
    except ValueError as e:
        names = ", ".join(f"{l}={os.path.basename(p)}" for l, p in zip("ABC", args.points))
        raise CliError(f"no slice through the points {names}: {e}") from None
    if args.scale is not None:
        sl = sl.scaled(args.scale, about=sl.to_plane(torch.from_numpy(np.stack(pts))).mean(axis=0))
    return lm, pts, outputs, sl


def run_explore(args) -> int:
    import numpy as np
    import torch
    try:
        import bokeh  # noqa: F401
    except ImportError:
        raise CliError("the explorer needs Bokeh: pip install bokeh (or pip install 'splinecam[explore]')") from None
    from splinecam.explorer.server import serve
    lm, pts, _, sl = _model_and_slice(args)
    uv = sl.to_plane(torch.from_numpy(np.stack(pts)))
    names = [f"{l} ({os.path.basename(p)})" for l, p in zip("ABC", args.points)]
    limit = None if args.memory_limit is None else max(1, int(args.memory_limit * 2 ** 30))
    serve(lm.module, sl, port=args.port, address=args.address, open_browser=not args.no_browser,
          points=dict(zip(names, uv)), export_dir=args.export_dir, title=f"splinecam explorer: {lm.name}",
          memory_limit=limit)
    return 0


def run_slice(args) -> int:
    import splinecam

    out = args.out
    ext = os.path.splitext(out)[1].lower()
    if ext not in OUTPUT_SUFFIXES:
        raise CliError(f"cannot write '{out}': unknown extension '{ext or '(none)'}'; use .png, .svg or .pdf "
                       f"(figure), .npz (arrays), .geojson (regions and boundary) or .gt (graph-tool graph)")
    if ext == ".gt":
        try:
            import graph_tool  # noqa: F401
        except ImportError:
            raise CliError("writing .gt needs graph-tool, which is not on PyPI: on Debian/Ubuntu `apt-get install "
                           "python3-graph-tool` (and a venv with --system-site-packages), or conda-forge's "
                           "graph-tool; .npz and .geojson need nothing extra") from None
    _check_out_folder(out)
    lm, pts, outputs, sl = _model_and_slice(args)
    limit = None if args.memory_limit is None else max(1, int(args.memory_limit * 2 ** 30))
    try:
        device = splinecam.driver.engine.resolve_device(lm.module, args.device)
    except (ValueError, RuntimeError) as e:  # its hints name the Python argument: name the flag
        msg = re.sub(r"device=(['\"])(.*?)\1", r"--device \2", str(e))  # device='cpu' -> --device cpu
        raise CliError(f"--device {args.device}: {msg}") from None
    t = time.perf_counter()
    if args.scheduler and args.workers:
        raise CliError("--scheduler and --workers exclude each other: use a running cluster or start a local one")
    client = _dask_client(args)
    try:
        P = splinecam.partition(lm.module, sl, decision_boundary=not args.no_decision_boundary,
                                progress=not args.no_progress, memory_limit=limit, device=device, tiles=args.tiles,
                                client=client)
    except splinecam.MemoryLimitExceeded as e:
        what = str(e).split(":")[0]
        raise CliError(f"{what}: raise --memory-limit (GiB), zoom in with --scale S (S < 1), or let the slice be cut "
                       "into tiles (--tiles auto, the default)" if args.tiles != "auto" else
                       f"{what}, even in tiles: raise --memory-limit (GiB) or zoom in with --scale S (S < 1)") from None
    finally:
        if client is not None:
            cluster = client.cluster if args.workers else None
            client.close()
            if cluster is not None:
                cluster.close()
    seconds = time.perf_counter() - t

    from splinecam.analysis import export
    if ext in FIGURE_SUFFIXES:
        save_figure(P, out, lm=lm, pts=pts, point_paths=args.points, outputs=outputs, color=args.color, dpi=args.dpi)
    elif ext == ".npz":
        save_npz(P, out)
    elif ext == ".geojson":
        export.to_geojson(P, out)
    elif ext == ".gt":
        export.save_graph_tool(P, out)
    db = "" if args.no_decision_boundary else f", {len(P.decision_boundary)} decision-boundary segments"
    n = P.run_info.get("tiles", 1)
    tiles = f" in {n} tiles" if n > 1 else ""
    print(f"splinecam slice: {P.num_regions} regions, {len(P.edges)} edges{db}{tiles} in {seconds:.2f} s -> {out}")
    return 0
