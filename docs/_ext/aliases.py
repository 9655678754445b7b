"""Cross-references through splinecam's public aliases.

Some objects are documented once but have more than one importable name:

- ``splinecam.plot`` *is* :mod:`splinecam.analysis.plot`, and ``splinecam.utils``,
  ``splinecam.wrappers``, ``splinecam.compute`` are the modules of
  :mod:`splinecam.compat` (each replaces itself in ``sys.modules``);
- :class:`splinecam.Partition`, :class:`splinecam.Slice` and the functions at the top
  level are documented under the names users write, not under the modules that define
  them (``splinecam.result.partition.Partition``, ``splinecam.slice.Slice``, ...).

A reference that Sphinx cannot resolve is retried under the documented name: the
target, or the target qualified with the module the reference was written in, with a
known prefix replaced. Anything else stays unresolved (and, with ``-n``, a warning).
"""
from sphinx.util import logging

logger = logging.getLogger(__name__)

#: importable name (prefix) -> documented name (prefix)
PREFIXES = {
    "splinecam.plot": "splinecam.analysis.plot",
    "splinecam.utils": "splinecam.compat.utils",
    "splinecam.wrappers": "splinecam.compat.wrappers",
    "splinecam.compute": "splinecam.compat.compute",
    "splinecam.result.partition.Partition": "splinecam.Partition",
    "splinecam.result.Partition": "splinecam.Partition",
    "splinecam.slice.Slice": "splinecam.Slice",
    "splinecam.driver.engine.partition": "splinecam.partition",
    "splinecam.driver.engine.MemoryLimitExceeded": "splinecam.MemoryLimitExceeded",
    "splinecam.driver.refine.MemoryLimitExceeded": "splinecam.MemoryLimitExceeded",
    "splinecam.driver.partition": "splinecam.partition",
    "splinecam.driver.many.partition_many": "splinecam.partition_many",
    "splinecam.driver.tiles.partition_tiled": "splinecam.partition_tiled",
    "splinecam.explorer.explore": "splinecam.explore",
    "splinecam.result.partition.Layer": "splinecam.result.Layer",
    "splinecam.result.partition.face_means": "splinecam.result.face_means",
    "splinecam.network.model.UnsupportedModelError": "splinecam.UnsupportedModelError",
    "splinecam.network.UnsupportedModelError": "splinecam.UnsupportedModelError",
    "splinecam.network.model.SUPPORTED_MODULES": "splinecam.SUPPORTED_MODULES",
}


#: unqualified names the docstrings use for the two central classes
BARE = {"Partition": "splinecam.Partition", "Slice": "splinecam.Slice"}


def _renamed(name):
    if name in BARE:
        return BARE[name]
    for old in sorted(PREFIXES, key=len, reverse=True):
        if name == old or name.startswith(old + "."):
            return PREFIXES[old] + name[len(old):]
    return None


def _missing_reference(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    module = node.get("py:module")
    cls = node.get("py:class")
    candidates = [target]
    if module:
        if cls:
            candidates.append(f"{module}.{cls}.{target}")
        candidates.append(f"{module}.{target}")
    domain = env.get_domain("py")
    builder = app.builder
    for name in candidates:
        new = _renamed(name)
        if new is None:
            continue
        node2 = node.deepcopy()
        node2["reftarget"] = new
        node2["refspecific"] = False
        node2["py:module"] = None
        node2["py:class"] = None
        ref = domain.resolve_xref(env, node["refdoc"], builder, node["reftype"], new, node2, contnode)
        if ref is None:  # a role of another object type (:func: for a class, ...)
            hits = domain.resolve_any_xref(env, node["refdoc"], builder, new, node2, contnode)
            ref = hits[0][1] if hits else None
        if ref is not None:
            return ref
    return None


def setup(app):
    app.connect("missing-reference", _missing_reference)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
