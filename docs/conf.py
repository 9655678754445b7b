"""Sphinx configuration of splinecam's documentation (``make docs``).

The site is built offline: no intersphinx, no remote images, every page from this
folder and every API page from the docstrings of the installed package (``make build``
installs it editable into ``.venv``).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "_ext"))

import splinecam  # noqa: E402  (the package must be built: `make build`)

project = "splinecam"
author = "The splinecam authors"
copyright = "The splinecam authors, MIT License"
release = splinecam.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "cli_help",  # docs/_ext/cli_help.py: the command line's --help, rendered at build time
    "aliases",  # docs/_ext/aliases.py: references through splinecam.plot, splinecam.utils, ...
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = []

# -- autodoc ----------------------------------------------------------------------------
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # nn.Module.forward's docstring is not ours

# numpydoc renders the sections; member tables come from autodoc's :members: instead.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()  # the section checks live in tests/project/test_docs.py

# -- cross-references -------------------------------------------------------------------
# Nitpicky: every reference to this project's objects must resolve. Other projects'
# objects cannot resolve offline (intersphinx is off: no network at build time), so
# references into them are ignored, and only those.
nitpicky = True
# the libraries splinecam's signatures and docstrings name
_external = r"(numpy|np|torch|os|scipy|matplotlib|bokeh|distributed|networkx|graph_tool)"
nitpick_ignore_regex = [
    (r"py:.*", _external + r"(\..*)?"),
]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- HTML -------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = "splinecam"
html_static_path = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_show_sourcelink = False
html_sidebars = {"index": [], "gallery": []}  # pages without sub-pages: no empty navigation
toc_object_entries_show_parents = "hide"  # the page's table of contents: "at_layer", not "Partition.at_layer"
