"""``python -m splinecam`` and the ``splinecam`` console script; the commands live in
:mod:`splinecam.cli`."""
import sys

from splinecam.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
