"""Shared helpers for the test-suite: seeded model builders and the reference."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest
import torch
from torch import nn

_REPO = pathlib.Path(__file__).resolve().parents[1]


def _load_reference():
    """splinecam.reference, even when the compiled engine is not importable."""
    try:
        from splinecam import reference  # noqa: PLC0415

        return reference
    except Exception:  # engine not built / not installed yet
        path = _REPO / "python" / "splinecam" / "reference.py"
        spec = importlib.util.spec_from_file_location("splinecam_reference_standalone", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


reference_module = _load_reference()


def build_seeded_mlp(widths, seed=0, act=nn.ReLU):
    """``torch.manual_seed(seed)``, then ``nn.Linear`` layers created in order
    (default init) with ``act()`` between them; returned in float64, eval mode.

    This is the construction behind the published peer region counts
    (2-16-16-16-1 on [-1,1]^2 -> 178 regions, etc.).
    """
    torch.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        if i > 0:
            mods.append(act())
        mods.append(nn.Linear(a, b))
    return nn.Sequential(*mods).double().eval()


@pytest.fixture(scope="session")
def seeded_mlp():
    """Fixture form of :func:`build_seeded_mlp`."""
    return build_seeded_mlp
