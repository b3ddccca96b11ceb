"""`tal demo` / `python -m pipelines demo` end to end on a small synthetic dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tal.data.annotations import load_annotations

REPO = Path(__file__).resolve().parents[2]


def demo(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    sets = {
        "run_dir": tmp_path,
        "data.root": tmp_path / "data",
        "data.synth.videos": 5,
        "data.synth.classes": 3,
        "data.synth.size": 64,
        "data.synth.min_duration": 8,
        "data.synth.max_duration": 10,
    }
    overrides = [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]
    cmd = [
        *(sys.executable, "-m", "pipelines", "demo", "--config", "configs/demo.yaml"),
        *overrides,
        *extra,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_demo_generates_evaluates_and_reuses(tmp_path):
    first = demo(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "generating 5 videos" in first.stderr
    result = json.loads((tmp_path / "baseline_eval.json").read_text())
    assert result["tiou"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert 0.0 <= result["average_mAP"] <= 1.0
    assert "average mAP" in first.stdout
    ann = load_annotations(tmp_path / "data" / "annotations.json")
    assert len(ann) == 5 and len(list((tmp_path / "data" / "videos").glob("*.mp4"))) == 5
    preds = json.loads((tmp_path / "baseline_predictions.json").read_text())["results"]
    assert set(preds) <= {v.video_id for v in ann.subset("validation")}

    again = demo(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "reusing" in again.stderr
    assert json.loads((tmp_path / "baseline_eval.json").read_text()) == result


def test_demo_bad_override_stops_before_work(tmp_path):
    proc = demo(tmp_path, "--set", "data.synth.size=63")
    assert proc.returncode == 2
    assert "data.synth.size" in proc.stderr and "even" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_demo_refuses_to_overwrite_foreign_data(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("precious")
    proc = demo(tmp_path)
    assert proc.returncode == 2
    assert "refusing to overwrite" in proc.stderr
    assert (tmp_path / "data" / "mine.txt").read_text() == "precious"
