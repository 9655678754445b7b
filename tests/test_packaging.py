"""Packaging: one version, clear import errors, license and citation files, extras."""
import pathlib
import subprocess
import sys

import pytest

import splinecam

ROOT = pathlib.Path(__file__).resolve().parents[1]

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
