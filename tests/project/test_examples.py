"""Every script in examples/ runs (``--quick``: reduced sizes, a few seconds each) in a
fresh process and writes the figures it promises."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

# script -> the files it writes into --out
OUTPUTS = {
    "toy2d.py": ["toy2d.png"],
    "regression_2d.py": ["regression_2d.png"],
    "inr_2d.py": ["inr_2d.png"],
    "random_mlp.py": ["random_mlp.png"],
    "random_cnn.py": ["random_cnn.png"],
    "training_video.py": ["training_frames.png"],   # plus training_video.gif when Pillow is there
    "original_api.py": ["original_api.png"],
}


def test_every_example_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(OUTPUTS)


@pytest.mark.parametrize("script", sorted(OUTPUTS))
def test_example_quick(script, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    res = subprocess.run([sys.executable, str(EXAMPLES / script), "--quick", "--out", str(tmp_path / "out")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    expected = list(OUTPUTS[script])
    if script == "training_video.py":
        from matplotlib.animation import PillowWriter
        if PillowWriter.isAvailable():
            expected.append("training_video.gif")
    for name in expected:
        path = tmp_path / "out" / name
        assert path.is_file() and path.stat().st_size > 1000, (name, res.stdout)
    assert "wrote" in res.stdout
