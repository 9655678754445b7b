"""The ``splinecam`` command line (also ``python -m splinecam``).

Subcommands:

* ``splinecam demo``  - train a small MLP on two moons and draw its exact partition;
* ``splinecam info``  - how the compiled engine was built;
* ``splinecam slice`` - the exact partition of a saved model on the plane through three
  inputs, written as a figure, arrays, GeoJSON or a graph-tool graph;
* ``splinecam explore`` - the same slice in the browser, panned and zoomed, exact at every
  zoom (:mod:`splinecam.explorer`).

Models and points are read by :mod:`splinecam.io`.

Every failure the user can fix (a missing file, a model splinecam cannot handle, points
of different shapes, ...) is reported as one line on stderr with exit status 1; usage
errors exit with status 2, as argparse does.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Optional, Sequence, Tuple

# Models, points and the first forward pass come from splinecam.io; its InputError is
# the command's one-line error.
from splinecam.io import InputError as CliError
from splinecam.io import LoadedModel, check_forward, load_model, load_points

__all__ = ["main", "build_parser", "CliError"]

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
OUTPUT_SUFFIXES = FIGURE_SUFFIXES + (".npz", ".geojson", ".gt")


# ----------------------------------------------------------------------------- parser

_MAIN_EPILOG = """\
examples:
  splinecam demo --out demo_output
  splinecam slice mymodels:make_mlp --state-dict weights.pt \\
      --points a.npy b.npy c.npy --pad 0.1 --out slice.png
  splinecam slice model_scripted.pt --points cat.png dog.png car.png --out slice.npz
  splinecam explore model_scripted.pt --points cat.png dog.png car.png --pad 0.2

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
