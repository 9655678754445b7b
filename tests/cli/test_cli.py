"""The command line as a new user meets it: fresh ``python -m splinecam ...`` processes,
a model defined in a module file of their own, points saved with numpy or as images.

Success cases are checked against facts known without splinecam (a hand-built network
whose regions and decision boundary are known exactly); failures must be one clear line
on stderr, no traceback, and a non-zero exit status.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import splinecam as _splinecam

MODELS = textwrap.dedent('''
    import torch
    from torch import nn

    def quadrants():
        """f(x) = relu(x0) - relu(-x0) + 0.5 relu(x1) - 0.5 relu(-x1) = x0 + 0.5 x1: four
        linear regions (the quadrants) and the decision boundary x0 + 0.5 x1 = 0."""
        m = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
        with torch.no_grad():
            m[0].weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
            m[0].bias.zero_()
            m[2].weight.copy_(torch.tensor([[1.0, -1.0, 0.5, -0.5]]))
            m[2].bias.zero_()
        return m

    def mlp():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 3))

    def cnn():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2))

    def grey_mlp():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 2))

    def grey_cnn():
        """Takes (1, 6, 6): the 3x3 convolution leaves 2 x 4 x 4 values for the Linear layer."""
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 2))

    def tanh_mlp():
        return nn.Sequential(nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 1))

    def huge_mlp():
        """mlp() in float64 with every weight and bias times 1e200: the forward pass overflows."""
        m = mlp().double()
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(1e200)
        return m

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(12, 12)
            self.b = nn.Linear(12, 2)

        def forward(self, x):
            return self.b(x + torch.relu(self.a(x)))

    def residual():
        return Residual()
''')


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with cli_models.py, points, a state dict and TorchScript files."""
    d = tmp_path_factory.mktemp("cli")
    (d / "cli_models.py").write_text(MODELS)
    np.save(d / "qa.npy", np.array([-1.0, -1.0]))
    np.save(d / "qb.npy", np.array([1.0, -1.0]))
    np.save(d / "qc.npy", np.array([0.0, 1.0]))
    g = np.random.default_rng(0)
    for name in "abc":
        np.save(d / f"{name}.npy", g.standard_normal(12))
    np.save(d / "long.npy", g.standard_normal(13))
    for name in "abc":  # points of the wrong size for mlp() (13 values) and grey_cnn() ((1, 4, 4)); flat (1, 6, 6)
        np.save(d / f"long_{name}.npy", g.standard_normal(13))
        np.save(d / f"small_{name}.npy", g.standard_normal((1, 4, 4)))
        np.save(d / f"flat36_{name}.npy", g.standard_normal(36))
    np.save(d / "on_line.npy", 2 * np.load(d / "b.npy") - np.load(d / "a.npy"))  # on the line through a, b
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    for name in "abc":
        mpimg.imsave(d / f"rgb_{name}.png", g.random((8, 8, 3)))
        mpimg.imsave(d / f"grey_{name}.png", g.random((8, 8)), cmap="gray")
    sys.path.insert(0, str(d))
    try:
        import cli_models
        torch.manual_seed(1)
        other = nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 3))
        torch.save(other.state_dict(), d / "other_weights.pt")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in recent torch
            torch.jit.save(torch.jit.script(cli_models.mlp().eval()), d / "mlp_scripted.pt")
            torch.jit.save(torch.jit.script(cli_models.residual().eval()), d / "residual_scripted.pt")
    finally:
        sys.path.remove(str(d))
        sys.modules.pop("cli_models", None)
    return d


def splinecam(work, *args, timeout=300):
    """``python -m splinecam ARGS`` in ``work``, with ``work`` on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(work)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["MPLBACKEND"] = "Agg"
    return subprocess.run([sys.executable, "-m", "splinecam", *map(str, args)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=timeout)


def summary(res) -> dict:
    assert res.returncode == 0, res.stderr
    m = re.search(r"(\d+) regions, (\d+) edges(?:, (\d+) decision-boundary segments)?(?: in (\d+) tiles)? "
                  r"in ([\d.]+) s -> (\S+)", res.stdout)
    assert m, res.stdout
    return dict(regions=int(m[1]), edges=int(m[2]), segments=None if m[3] is None else int(m[3]),
                tiles=int(m[4] or 1), out=m[6])


# ----------------------------------------------------------------------------- help

def test_help_explains_the_commands(work):
    res = splinecam(work, "--help")
    assert res.returncode == 0
    for word in ("demo", "info", "slice", "examples:"):
        assert word in res.stdout
    res = splinecam(work, "slice", "--help")
    assert res.returncode == 0
    for word in ("MODEL", "package.module:factory", "TorchScript", "--state-dict", "--points", "--pad",
                 "--input-shape", "--no-decision-boundary", "--dpi", ".npz", ".geojson", ".gt", "examples:"):
        assert word in res.stdout, word


def test_version(work):
    res = splinecam(work, "--version")
    assert res.returncode == 0 and res.stdout == f"splinecam {_splinecam.__version__}\n", (res.stdout, res.stderr)


def test_info_says_compiled_and_available_apart(work):
    # "cuda: True" on a machine without a GPU read as "a GPU is used": the two facts are named apart.
    res = splinecam(work, "info")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert not any(l.startswith("cuda:") for l in lines), lines
    compiled = lines.index(f"cuda_compiled: {_splinecam.build_info()['cuda']}")
    assert lines[compiled + 1] == f"cuda_available: {_splinecam.cuda_available()}"
    assert f"version: {_splinecam.__version__}" in lines


def test_console_script(work):
    exe = os.path.join(os.path.dirname(sys.executable), "splinecam")
    if not os.path.exists(exe):
        pytest.skip("the splinecam console script is not installed next to this Python")
    res = subprocess.run([exe, "slice", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "package.module:factory" in res.stdout


# ----------------------------------------------------------------------------- outputs

def test_npz_has_the_known_regions_and_boundary(work):
    out = work / "quadrants.npz"
    s = summary(splinecam(work, "slice", "cli_models:quadrants", "--points", "qa.npy", "qb.npy", "qc.npy",
                          "--out", out, "--no-progress"))
    assert s["regions"] == 4 and s["segments"] and s["out"] == str(out)
    d = np.load(out)
    for key in ("vertices", "edges", "edge_layer", "edge_unit", "edge_decision", "decision_boundary",
                "face_coords", "face_offsets", "domain", "origin", "basis"):
        assert key in d.files, key
    assert len(d["face_offsets"]) - 1 == 4 and len(d["edges"]) == s["edges"]
    # Back in input space: regions are the quadrants, the boundary is x0 + 0.5 x1 = 0.
    to_input = lambda u: d["origin"] + u @ d["basis"]  # noqa: E731
    coords, off = d["face_coords"], d["face_offsets"]
    for i in range(4):
        x = to_input(coords[off[i]:off[i + 1]])
        assert (np.all(x[:, 0] >= -1e-12) or np.all(x[:, 0] <= 1e-12)) and \
               (np.all(x[:, 1] >= -1e-12) or np.all(x[:, 1] <= 1e-12))
    db = to_input(d["decision_boundary"].reshape(-1, 2))
    assert np.allclose(db[:, 0] + 0.5 * db[:, 1], 0, atol=1e-12)
    # all of it: in the triangle (-1, -1), (1, -1), (0, 1) it runs from (0.5, -1) to (-0.25, 0.5)
    assert np.isclose(db[:, 1].min(), -1) and np.isclose(db[:, 1].max(), 0.5)


def test_geojson(work):
    out = work / "quadrants.geojson"
    s = summary(splinecam(work, "slice", "cli_models:quadrants", "--points", "qa.npy", "qb.npy", "qc.npy",
                          "--out", out, "--no-progress"))
    doc = json.loads(out.read_text())
    kinds = [f["geometry"]["type"] for f in doc["features"]]
    assert kinds.count("Polygon") == s["regions"] == 4
    assert kinds.count("LineString") == s["segments"] > 0
    ring = doc["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1]


def test_png_with_state_dict_and_pad(work):
    (work / "figs").mkdir(exist_ok=True)  # splinecam creates no folders (test_missing_out_folder_is_refused)
    out = work / "figs" / "mlp.png"
    res = splinecam(work, "slice", "cli_models:mlp", "--state-dict", "other_weights.pt", "--points", "a.npy",
                    "b.npy", "c.npy", "--pad", "0.2", "--out", out, "--dpi", "60", "--no-progress")
    s = summary(res)
    assert out.stat().st_size > 1000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The trained weights were used: the count differs from the factory's own weights.
    res0 = splinecam(work, "slice", "cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--pad", "0.2",
                     "--out", work / "mlp0.npz", "--no-progress")
    assert summary(res0)["regions"] != s["regions"]


def test_tiles_give_the_same_partition(work):
    args = ["slice", "cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--pad", "0.2", "--no-progress"]
    whole = summary(splinecam(work, *args, "--out", work / "whole.npz"))
    assert whole["tiles"] == 1
    tiled = summary(splinecam(work, *args, "--tiles", "3", "--out", work / "tiled.npz"))
    assert tiled["tiles"] >= 4
    assert (tiled["regions"], tiled["edges"], tiled["segments"]) == (whole["regions"], whole["edges"],
                                                                      whole["segments"])
    a, b = np.load(work / "whole.npz"), np.load(work / "tiled.npz")
    assert b["face_coords"].shape == a["face_coords"].shape and np.allclose(b["vertices"].mean(0), a["vertices"].mean(0))
    res = splinecam(work, *args, "--tiles", "3", "--out", work / "tiled.png", "--dpi", "50")
    assert res.returncode == 0 and (work / "tiled.png").exists()


def test_memory_limit_cuts_tiles_by_itself_and_hints_name_flags(work):
    args = ["slice", "cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--pad", "0.2", "--no-progress"]
    whole = summary(splinecam(work, *args, "--out", work / "whole.npz"))
    limit = ["--memory-limit", str(40_000 / 2 ** 30)]
    auto = summary(splinecam(work, *args, *limit, "--out", work / "auto.npz"))
    assert auto["tiles"] > 1 and auto["regions"] == whole["regions"]
    res = splinecam(work, *args, *limit, "--tiles", "1", "--out", work / "one.npz")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "--memory-limit" in res.stderr and "--scale" in res.stderr and "--tiles auto" in res.stderr
    assert "partition_tiled" not in res.stderr and "lean=True" not in res.stderr


def test_scale_zooms_about_the_centroid(work):
    args = ["slice", "cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--no-progress"]
    summary(splinecam(work, *args, "--out", work / "full.npz"))
    summary(splinecam(work, *args, "--scale", "0.25", "--out", work / "zoom.npz"))
    a, b = np.load(work / "full.npz"), np.load(work / "zoom.npz")
    assert np.allclose(b["domain"], a["domain"].mean(axis=0) + 0.25 * (a["domain"] - a["domain"].mean(axis=0)))
    res = splinecam(work, *args, "--scale", "0", "--out", work / "x.npz")
    assert res.returncode == 2 and "--scale" in res.stderr


def test_torchscript_sequential_matches_the_factory(work):
    a = summary(splinecam(work, "slice", "mlp_scripted.pt", "--points", "a.npy", "b.npy", "c.npy",
                          "--out", work / "ts.npz", "--no-progress"))
    b = summary(splinecam(work, "slice", "cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy",
                          "--out", work / "factory.npz", "--no-progress"))
    assert a["regions"] == b["regions"] and a["edges"] == b["edges"]
    assert np.allclose(np.load(work / "ts.npz")["vertices"], np.load(work / "factory.npz")["vertices"])


def test_images_as_points(work):
    # RGB(A) PNGs -> (3, 8, 8) floats for a CNN; grey PNGs -> 64 values with --input-shape.
    s = summary(splinecam(work, "slice", "cli_models:cnn", "--points", "rgb_a.png", "rgb_b.png", "rgb_c.png",
                          "--out", work / "cnn.svg", "--no-progress"))
    assert s["regions"] >= 1 and (work / "cnn.svg").read_text().lstrip().startswith("<?xml")
    s = summary(splinecam(work, "slice", "cli_models:grey_mlp", "--points", "grey_a.png", "grey_b.png",
                          "grey_c.png", "--input-shape", "64", "--out", work / "grey.npz", "--no-progress",
                          "--no-decision-boundary"))
    assert s["segments"] is None and len(np.load(work / "grey.npz")["origin"]) == 64


# ----------------------------------------------------------------------------- errors

ERRORS = {
    "missing model file": (["nope.pt", "--points", "a.npy", "b.npy", "c.npy", "--out", "x.png"],
                           ["nope.pt", "not found"]),
    "missing point file": (["cli_models:mlp", "--points", "a.npy", "b.npy", "nope.npy", "--out", "x.png"],
                           ["nope.npy", "not found"]),
    "unknown extension": (["cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--out", "x.bmpx"],
                          ["unknown extension", ".bmpx"]),
    "factory not found": (["cli_models:mpl", "--points", "a.npy", "b.npy", "c.npy", "--out", "x.png"],
                          ["not found", "mpl", "did you mean"]),
    "module not found": (["no_such_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--out", "x.png"],
                         ["no_such_models", "PYTHONPATH"]),
    "not piecewise linear": (["cli_models:tanh_mlp", "--points", "a.npy", "b.npy", "c.npy", "--out", "x.png"],
                             ["Tanh", "not supported"]),
    "points of different shapes": (["cli_models:mlp", "--points", "a.npy", "b.npy", "long.npy", "--out", "x.png"],
                                   ["different shapes", "(12,)", "(13,)"]),
    "points the model cannot take": (["cli_models:cnn", "--points", "a.npy", "b.npy", "c.npy", "--out", "x.png"],
                                     ["cannot take inputs of shape (12,)", "it expects inputs of shape (3, 8, 8)",
                                      "Conv2d, takes 3 channels", "give points of 192 values each (these have 12)"]),
    "points of the wrong size for a Linear": (["cli_models:mlp", "--points", "long_a.npy", "long_b.npy", "long_c.npy",
                                               "--out", "x.png"],
                                              ["inputs of shape (13,)", "it expects inputs of shape (12,)",
                                               "Linear, takes 12 values", "give points of 12 values each",
                                               "--input-shape"]),
    "points too small for a CNN": (["cli_models:grey_cnn", "--points", "small_a.npy", "small_b.npy", "small_c.npy",
                                    "--out", "x.png"],
                                   ["inputs of shape (1, 4, 4)", "it expects inputs of shape (1, 6, 6)",
                                    "Conv2d, takes 1 channel)", "give points of 36 values each (these have 16)"]),
    "flat points for a CNN": (["cli_models:grey_cnn", "--points", "flat36_a.npy", "flat36_b.npy", "flat36_c.npy",
                               "--out", "x.png"], ["inputs of shape (36,)", "try --input-shape 1,6,6"]),
    "colour images for a grey MLP": (["cli_models:grey_mlp", "--points", "rgb_a.png", "rgb_b.png", "rgb_c.png",
                                      "--out", "x.png"],
                                     ["inputs of shape (3, 8, 8)", "it expects inputs of shape (64,)",
                                      "try --input-shape 64"]),
    "missing output folder": (["cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--out",
                               os.path.join("no_such_folder", "sub", "y.png")],
                              [f"the folder '{os.path.join('no_such_folder', 'sub')}' does not exist"]),
    "output folder is a file": (["cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--out",
                                 os.path.join("a.npy", "y.png")], ["'a.npy' is a file, not a folder"]),
    "collinear points": (["cli_models:mlp", "--points", "a.npy", "b.npy", "on_line.npy", "--out", "x.png"],
                         ["collinear"]),
    "weights of another model": (["cli_models:cnn", "--state-dict", "other_weights.pt", "--points", "rgb_a.png",
                                  "rgb_b.png", "rgb_c.png", "--out", "x.png"], ["do not fit", "missing"]),
    "scripted custom forward": (["residual_scripted.pt", "--points", "a.npy", "b.npy", "c.npy", "--out", "x.png"],
                                ["not an nn.Sequential", "package.module:factory"]),
    "state dict given as the model": (["other_weights.pt", "--points", "a.npy", "b.npy", "c.npy", "--out", "x.png"],
                                      ["not a TorchScript model", "--state-dict"]),
    "unknown device": (["cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--out", "x.png", "--device",
                        "tpu"], ["--device tpu", "device must be"]),
    "forward pass overflows": (["cli_models:huge_mlp", "--points", "a.npy", "b.npy", "c.npy", "--out", "x.png"],
                               ["values at the slice are too large", "overflow", "rescale the inputs or the weights"]),
}
if not _splinecam.cuda_available():
    ERRORS["cuda without a gpu"] = (["cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--out", "x.png",
                                     "--device", "cuda"], ["--device cuda", "pass --device cpu"])


@pytest.mark.parametrize("case", list(ERRORS))
def test_errors_are_one_clear_line(work, case):
    args, words = ERRORS[case]
    res = splinecam(work, "slice", *args, "--no-progress")
    assert res.returncode == 1, (res.stdout, res.stderr)
    err = res.stderr.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("splinecam: error: "), err
    for w in words:
        assert w in err, (w, err)
    assert "device='" not in err and "mat1 and mat2" not in err, err  # flags, not Python; no torch internals
    assert not (work / "x.png").exists()


def test_missing_out_folder_is_refused(work):
    # A typo in --out must not leave new folders behind, nor waste the computation.
    res = splinecam(work, "slice", "cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--out",
                    work / "typo" / "deeper" / "y.npz", "--no-progress")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert str(work / "typo" / "deeper") in res.stderr
    assert not (work / "typo").exists()


def test_progress_bar_names_each_step_and_stays(capsys, monkeypatch):
    from splinecam.driver import engine
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.LeakyReLU(), nn.Linear(8, 3)).eval()
    sl = _splinecam.Slice.through(torch.tensor([-1.0, -1.0]), torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1.0]))
    monkeypatch.setattr(engine, "PROGRESS_DELAY", 0.0)  # as a call that runs longer than the delay
    P = _splinecam.partition(model, sl, progress=True)
    err = capsys.readouterr().err
    for step in ("layer 1/2 ReLU (1)", "layer 2/2 LeakyReLU (3)", "decision boundary"):
        assert step in err, (step, err)
    # The bar stays: its last state ends the output (a newline, not cleared) and says what came out.
    assert err.endswith("\n"), repr(err)
    final = err.rstrip("\n").split("\r")[-1]
    assert "100%" in final and re.search(rf"regions={P.num_regions} in [\d.]+ s\]", final), repr(final)
    _splinecam.partition(model, sl, progress=False)
    assert capsys.readouterr().err == ""
    # A call shorter than the bar's delay draws nothing: a loop over small models stays quiet.
    monkeypatch.setattr(engine, "PROGRESS_DELAY", 60.0)
    _splinecam.partition(model, sl, progress=True)
    assert capsys.readouterr().err == ""


def test_usage_errors_exit_2(work):
    res = splinecam(work, "slice", "cli_models:mlp", "--points", "a.npy", "b.npy", "--out", "x.png")
    assert res.returncode == 2 and "expected 3 arguments" in res.stderr
    res = splinecam(work, "slice", "cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy")
    assert res.returncode == 2 and "--out" in res.stderr
    res = splinecam(work, "slice", "cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--out", "x.png",
                    "--memory-limit", "0")
    assert res.returncode == 2 and "--memory-limit" in res.stderr and "expected a positive number" in res.stderr


def test_workers_give_the_local_partition(work):
    pytest.importorskip("distributed")
    args = ["slice", "cli_models:mlp", "--points", "a.npy", "b.npy", "c.npy", "--pad", "0.2", "--no-progress",
            "--tiles", "2"]
    local = summary(splinecam(work, *args, "--out", work / "local.npz"))
    remote = summary(splinecam(work, *args, "--workers", "2", "--out", work / "remote.npz"))
    assert (remote["regions"], remote["edges"], remote["tiles"]) == (local["regions"], local["edges"], local["tiles"])
    a, b = np.load(work / "local.npz"), np.load(work / "remote.npz")
    assert np.array_equal(a["vertices"], b["vertices"]) and np.array_equal(a["edges"], b["edges"])
    bad = splinecam(work, *args, "--scheduler", "tcp://127.0.0.1:1", "--out", work / "x.npz")
    assert bad.returncode == 1 and "--scheduler" in bad.stderr and "Traceback" not in bad.stderr


# ----------------------------------------------------------------------------- explore

def test_explore_errors_come_before_any_server(work):
    for args, words in [(["cli_models:tanh_mlp", "--points", "a.npy", "b.npy", "c.npy"], ["Tanh", "not supported"]),
                        (["cli_models:mlp", "--points", "a.npy", "b.npy", "on_line.npy"], ["collinear"])]:
        res = splinecam(work, "explore", *args, "--no-browser", "--port", "0", timeout=120)
        assert res.returncode == 1, (res.stdout, res.stderr)
        err = res.stderr.strip()
        assert len(err.splitlines()) == 1 and err.startswith("splinecam: error: "), err
        assert all(w in err for w in words), err
        assert "explorer at" not in res.stdout


def test_explore_serves_on_localhost_and_stops_on_ctrl_c(work):
    pytest.importorskip("bokeh")
    import signal
    import urllib.request
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(work)] + [p for p in [env.get("PYTHONPATH")] if p])
    p = subprocess.Popen([sys.executable, "-m", "splinecam", "explore", "cli_models:mlp", "--points", "a.npy",
                          "b.npy", "c.npy", "--pad", "0.2", "--port", "0", "--no-browser"], cwd=work, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        m = re.search(r"splinecam explorer at (http://localhost:\d+/) \(Ctrl-C stops it\)", line)
        assert m, (line, p.stderr.read() if p.poll() is not None else "")
        page = urllib.request.urlopen(m[1], timeout=60).read().decode()
        assert "Bokeh" in page and "<title>splinecam explorer: cli_models:mlp</title>" in page
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        assert "stopped" in out
    finally:
        if p.poll() is None:
            p.kill()
