"""The documentation: the public API's docstrings, the site and the code on its pages.

- Every public name (``splinecam.__all__``, the public methods and properties of
  ``Partition``, ``Slice`` and the per-layer ``Layer``, the analysis functions, the zoo,
  the test helpers, the explorer's entry points, the original SplineCam API) has a
  numpydoc docstring: a summary, a ``Parameters`` section naming every parameter when
  it takes any, and a ``Returns`` (or ``Yields``) section when it returns something.
  Properties need a summary; classes need a summary and the constructor's parameters.
- ``sphinx -W -n`` builds the site in ``docs/`` without a warning (as ``make docs``).
- Every Python block on the site's pages runs (the blocks of one page in order, in one
  fresh interpreter). Blocks written as ``{code-block} python`` are shown, not run:
  they need a server loop, a GPU or a cluster.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import warnings

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# -- what the walker walks ---------------------------------------------------------------------

#: Modules whose functions and classes are public API: those in ``__all__`` and any
#: other the module defines under a name without a leading underscore (data constants
#: are skipped: they have no docstring of their own).
PUBLIC_MODULES = [
    "splinecam",
    "splinecam.slice",
    "splinecam.result",
    "splinecam.analysis.stats",
    "splinecam.analysis.sampling",
    "splinecam.analysis.export",
    "splinecam.analysis.plot",
    "splinecam.zoo",
    "splinecam.testing",
    "splinecam.explorer",
    "splinecam.explorer.view",
    "splinecam.explorer.server",
    "splinecam.explorer.app",
    "splinecam.compat.utils",
    "splinecam.compat.wrappers",
    "splinecam.compat.compute",
    "splinecam.compat.plot",
]


def _is_project(obj) -> bool:
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "splinecam"


def _walk():
    """``(public name, object, kind)`` for every public object, each object once."""
    seen = set()
    out = []

    def add(name, obj, kind):
        key = (id(getattr(obj, "__func__", obj)), kind)  # a classmethod is bound anew on every access
        if key in seen:
            return
        seen.add(key)
        out.append((name, obj, kind))

    def add_class(name, cls):
        add(name, cls, "class")
        for attr, raw in vars(cls).items():
            if attr.startswith("_"):
                continue
            if isinstance(raw, (property, functools.cached_property)):
                add(f"{name}.{attr}", raw, "property")
            elif isinstance(raw, (staticmethod, classmethod)):
                add(f"{name}.{attr}", getattr(cls, attr), "method")
            elif inspect.isfunction(raw):
                add(f"{name}.{attr}", raw, "method")

    for modname in PUBLIC_MODULES:
        mod = importlib.import_module(modname)
        # __all__, and every other function or class the module defines without a leading
        # underscore: a name a user can import is public whether __all__ lists it or not
        names = list(getattr(mod, "__all__", []))
        names += [n for n, o in vars(mod).items() if not n.startswith("_") and n not in names
                  and (inspect.isfunction(o) or inspect.isclass(o)) and o.__module__ == modname]
        for attr in names:
            obj = getattr(mod, attr)
            if inspect.isclass(obj):
                if _is_project(obj):
                    add_class(f"{modname}.{attr}", obj)
            elif inspect.isfunction(obj) or inspect.ismethod(obj):
                add(f"{modname}.{attr}", obj, "function")
            # anything else (tuples of names, constants) is data: no docstring of its own
    return out


# -- parsing docstrings ------------------------------------------------------------------------

def _sections(doc: str):
    """``(summary, {section: [names]})`` of a numpydoc docstring, or raise ValueError."""
    try:
        from numpydoc.docscrape import NumpyDocString
    except ImportError:  # pragma: no cover - numpydoc is installed by the set-up
        return _sections_fallback(doc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown section or a malformed one is an error
        try:
            d = NumpyDocString(doc)
        except Exception as e:  # noqa: BLE001 - numpydoc raises ValueError and warns UserWarning
            raise ValueError(f"numpydoc cannot parse it: {e}") from None
    summary = " ".join(d["Summary"]).strip()
    found = {}
    for sec in ("Parameters", "Other Parameters", "Returns", "Yields", "Attributes"):
        items = d[sec]
        if items:
            found[sec] = [p.name for p in items]
    return summary, found


_HEAD = re.compile(r"^\s*([A-Z][A-Za-z ]+)\n\s*-{3,}\s*$", re.M)


def _sections_fallback(doc: str):
    """A small numpydoc section parser for when numpydoc is not installed."""
    doc = textwrap.dedent(doc).strip("\n")
    heads = list(_HEAD.finditer(doc))
    summary = doc[: heads[0].start()].strip().split("\n\n")[0] if heads else doc.split("\n\n")[0]
    found = {}
    for i, h in enumerate(heads):
        body = doc[h.end(): heads[i + 1].start() if i + 1 < len(heads) else len(doc)]
        names = [m.group(1).split(" : ")[0].strip() for m in re.finditer(r"^(\S.*)$", body, re.M)]
        found[h.group(1).strip()] = names
    return summary.strip(), found


def _names(entries):
    out = set()
    for e in entries:
        for n in e.split(","):
            out.add(n.strip().lstrip("*"))
    return out


# -- what a callable takes and gives -----------------------------------------------------------

def _parameters(fn, *, bound: bool):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    params = list(sig.parameters.values())
    if not bound and params and params[0].name in ("self", "cls"):
        params = params[1:]
    return [p.name for p in params]


class _ReturnFinder(ast.NodeVisitor):
    def __init__(self):
        self.value = self.yields = False
        self.depth = 0

    def _nested(self, node):
        if self.depth == 0:
            self.depth += 1
            self.generic_visit(node)
            self.depth -= 1
        # the bodies of nested functions and classes are not this function's

    visit_FunctionDef = visit_AsyncFunctionDef = _nested

    def visit_Lambda(self, node):
        pass

    def visit_ClassDef(self, node):
        pass

    def visit_Return(self, node):
        if node.value is not None and not (isinstance(node.value, ast.Constant) and node.value.value is None):
            self.value = True

    def visit_Yield(self, node):
        self.yields = True

    visit_YieldFrom = visit_Yield


def _returns(fn) -> bool:
    """Whether ``fn`` returns (or yields) something: its annotation says so, or, without
    one, its body has a ``return`` with a value or a ``yield``."""
    fn = inspect.unwrap(fn)
    ann = inspect.signature(fn).return_annotation
    if ann is not inspect.Signature.empty:
        return ann not in (None, "None", type(None))
    try:
        src = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError):
        return False
    finder = _ReturnFinder()
    finder.visit(tree.body[0])
    return finder.value or finder.yields


def _constructor_takes(cls):
    """Whether constructing ``cls`` takes arguments that the class defines: its own
    ``__init__``/``__new__`` (in the project), or the fields of a dataclass or named tuple."""
    if dataclasses.is_dataclass(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields")):
        return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else list(cls._fields)
    for klass in cls.__mro__:
        if not _is_project(klass):
            return []
        if "__init__" in vars(klass):
            return _parameters(vars(klass)["__init__"], bound=False)
        if "__new__" in vars(klass):
            return _parameters(vars(klass)["__new__"], bound=False)
    return []


# -- the check ---------------------------------------------------------------------------------

def _problems(name, obj, kind):
    target = obj.fget if isinstance(obj, property) else getattr(obj, "func", obj)
    doc = inspect.getdoc(target) if kind != "class" else obj.__doc__ and inspect.cleandoc(obj.__doc__)
    if not doc:
        return ["no docstring"]
    try:
        summary, secs = _sections(doc)
    except ValueError as e:
        return [str(e)]
    out = []
    if not summary:
        out.append("no summary line")
    if kind == "property":
        return out
    if kind == "class":
        wanted = _constructor_takes(obj)
        init = vars(obj).get("__init__")
        if wanted and init is not None and inspect.getdoc(init) and "Parameters" not in secs:
            try:  # the constructor's parameters may be documented on __init__ instead
                secs = dict(secs, **{k: v for k, v in _sections(inspect.getdoc(init))[1].items()
                                     if k == "Parameters"})
            except ValueError as e:
                out.append(f"__init__: {e}")
    else:
        wanted = _parameters(obj, bound=inspect.ismethod(obj))
    if wanted:
        documented = _names(secs.get("Parameters", []) + secs.get("Other Parameters", []))
        if "Parameters" not in secs:
            out.append(f"no Parameters section (takes {', '.join(wanted)})")
        else:
            missing = [p for p in wanted if p not in documented]
            if missing:
                out.append(f"Parameters does not name {', '.join(missing)}")
    if kind != "class" and _returns(obj) and not ({"Returns", "Yields"} & set(secs)):
        out.append("no Returns section (it returns a value)")
    return out


def _where(obj) -> str:
    target = obj.fget if isinstance(obj, property) else obj
    target = getattr(target, "func", target)
    return getattr(target, "__module__", None) or "?"


def test_walker_finds_the_public_api():
    names = {n for n, _, _ in _walk()}
    for expected in ("splinecam.Slice", "splinecam.partition", "splinecam.Partition", "splinecam.Partition.at_layer",
                     "splinecam.Partition.vertices", "splinecam.Slice.through", "splinecam.result.Layer",
                     "splinecam.result.Layer.num_faces", "splinecam.analysis.stats.summary",
                     "splinecam.zoo.mlp", "splinecam.testing.check_partition", "splinecam.explore",
                     "splinecam.explorer.Windows.compute", "splinecam.explorer.server.serve",
                     "splinecam.compat.utils.get_proj_mat", "splinecam.compat.wrappers.model_wrapper"):
        assert expected in names, expected
    # at_layer returns the same class: its methods are walked with Partition's
    import splinecam
    sl = splinecam.Slice.plane2d([[-1, -1], [1, -1], [1, 1], [-1, 1]])
    P = splinecam.partition(splinecam.zoo.mlp([2, 4, 4, 1], seed=0), sl, progress=False)
    assert type(P.at_layer(1)) is splinecam.Partition
    assert all(type(layer) is splinecam.result.Layer for layer in P._layers)


def test_public_api_has_numpydoc_docstrings():
    offenders = {}
    for name, obj, kind in _walk():
        problems = _problems(name, obj, kind)
        if problems:
            offenders.setdefault(_where(obj), []).append(f"{name} ({kind}): {'; '.join(problems)}")
    if offenders:
        n = sum(len(v) for v in offenders.values())
        lines = [f"{n} public names lack numpydoc sections, by the module that defines them:"]
        for mod in sorted(offenders):
            lines.append(f"  {mod}")
            lines += [f"    {o}" for o in offenders[mod]]
        pytest.fail("\n".join(lines), pytrace=False)


def test_section_checks_catch_what_they_should():
    def documented(a, b=1):
        """Add.

        Parameters
        ----------
        a, b : int
            Terms.

        Returns
        -------
        int
            The sum.
        """
        return a + b

    def undocumented(a, *, flag=False):
        """Do it."""
        if flag:
            return None
        return [a]

    def nothing(a):
        """Print it.

        Parameters
        ----------
        a : object
            The thing.
        """
        print(a)

    assert _problems("documented", documented, "function") == []
    assert _problems("nothing", nothing, "function") == []
    assert _problems("undocumented", undocumented, "function") == [
        "no Parameters section (takes a, flag)", "no Returns section (it returns a value)"]
    assert _problems("bare", lambda: None, "function") == ["no docstring"]


def test_fallback_parser_agrees_with_numpydoc():
    pytest.importorskip("numpydoc")
    import splinecam
    import splinecam.compat.compute

    for fn in (splinecam.partition, splinecam.Partition.load, splinecam.Slice.through, splinecam.zoo.mlp,
               splinecam.compat.compute.get_partitions_with_db):
        doc = inspect.getdoc(fn)
        (s1, a), (s2, b) = _sections(doc), _sections_fallback(doc)
        assert s1 == " ".join(s2.split()), fn
        assert set(a) == set(b) & {"Parameters", "Other Parameters", "Returns", "Yields", "Attributes"}, fn
        assert a["Parameters"] == b["Parameters"], fn


# -- the examples in the docstrings ------------------------------------------------------------

#: Modules whose docstrings' examples run: the public ones, and those that define the
#: public names under other names (``splinecam.partition``, ``splinecam.Partition``, ...).
DOCTEST_MODULES = PUBLIC_MODULES + ["splinecam.result.partition", "splinecam.result.store",
                                    "splinecam.driver.engine", "splinecam.driver.many", "splinecam.driver.tiles",
                                    "splinecam.reference"]


@pytest.mark.parametrize("modname", DOCTEST_MODULES)
def test_docstring_examples_run(modname, monkeypatch, tmp_path):
    import doctest

    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    mod = importlib.import_module(modname)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = [t for t in finder.find(mod, modname) if t.examples]
    out = []
    for test in tests:
        runner.run(test, out=out.append)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, "".join(out)


# -- the site ----------------------------------------------------------------------------------

def _missing_doc_tools():
    missing = []
    for mod in ("sphinx", "numpydoc", "myst_parser", "pydata_sphinx_theme"):
        try:
            importlib.import_module(mod)
        except ImportError:
            missing.append(mod)
    return missing


def test_docs_build_without_warnings(tmp_path):
    missing = _missing_doc_tools()
    if missing:
        pytest.skip(f"the docs tools are not installed ({', '.join(missing)}): pip install 'splinecam[docs]'")
    res = subprocess.run([sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-n", "-q", "-b", "html",
                          str(DOCS), str(tmp_path / "html"), "-d", str(tmp_path / "doctrees")],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"sphinx -W failed:\n{res.stdout}\n{res.stderr}"
    for page in ("index.html", "getting-started.html", "gallery.html", "api/partition.html", "workflows/cli.html"):
        assert (tmp_path / "html" / page).is_file(), page
    api = (tmp_path / "html" / "api" / "partition.html").read_text()
    assert "at_layer" in api and "Parameters" in api


# -- the code on the pages ---------------------------------------------------------------------

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def _blocks(page: pathlib.Path):
    return [m.group(1) for m in _FENCE.finditer(page.read_text())]


def test_pages_have_code():
    assert sum(len(_blocks(p)) for p in PAGES) >= 20
    assert _blocks(DOCS / "getting-started.md")


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: str(p.relative_to(DOCS)))
def test_page_code_runs(page, tmp_path):
    code = "\n\n".join(_blocks(page))
    script = tmp_path / "page.py"
    script.write_text(code)
    env = dict(os.environ, MPLBACKEND="Agg")
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, f"{page.relative_to(DOCS)}:\n{res.stdout[-4000:]}\n{res.stderr[-8000:]}"
