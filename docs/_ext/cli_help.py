"""A Sphinx directive that shows the ``--help`` of ``splinecam`` or one of its commands.

    .. splinecam-help::            the main help
    .. splinecam-help:: slice      ``splinecam slice --help``

The text comes from :func:`splinecam.cli.build_parser` at build time, so the page never
drifts from the program.
"""
import os

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

WIDTH = 88


def help_text(command=None) -> str:
    """The help of the main parser, or of its sub-command ``command``, ``WIDTH`` wide."""
    from splinecam.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)  # argparse wraps to the terminal's width
    try:
        parser = build_parser()
        if command is not None:
            subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
            if command not in subs.choices:
                raise ValueError(f"splinecam has no command {command!r}; it has {', '.join(subs.choices)}")
            parser = subs.choices[command]
        return parser.format_help().rstrip()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


class SplinecamHelp(SphinxDirective):
    """``.. splinecam-help:: [COMMAND]``: a literal block with that help."""

    optional_arguments = 1
    has_content = False

    def run(self):
        command = self.arguments[0] if self.arguments else None
        text = help_text(command)
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app):
    app.add_directive("splinecam-help", SplinecamHelp)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
