"""The error of input files that cannot be used."""

import re

__all__ = ["InputError", "first_line"]


class InputError(Exception):
    """A model, weights or point file that cannot be used, said in one line without a
    traceback (the command line prints it as ``splinecam: error: ...``)."""


def first_line(e: BaseException) -> str:
    """The informative line of a (possibly TorchScript) exception message."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    if not lines:
        return type(e).__name__
    # TorchScript errors carry the scripted traceback first and the error last.
    for l in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception):", l):
            return l
    return f"{type(e).__name__}: {lines[0]}"
