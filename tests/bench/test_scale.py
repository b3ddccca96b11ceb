"""bench/scale.py: its synthetic ActivityNet-shaped data (split, shapes, made once), its table,
and the whole bench on a few videos (every stage through the real commands)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import scale  # noqa: E402

from tal.data.annotations import load_annotations  # noqa: E402


def test_data_are_split_as_activitynet_and_made_once(tmp_path):
    ann = scale.make_data(tmp_path, videos=20, classes=4, steps=10, dim=6, seed=3)
    load_annotations(ann)  # a valid annotation file
    database = json.loads(ann.read_text())["database"]
    counts = {s: sum(v["subset"] == s for v in database.values()) for s, _ in scale.SPLIT}
    assert counts == {"training": 10, "validation": 5, "testing": 5}
    for vid, video in database.items():
        assert 1 <= len(video["annotations"]) <= 3
        for action in video["annotations"]:
            start, end = action["segment"]
            assert 0 <= start < end <= video["duration"]
        assert np.load(tmp_path / "npy" / f"{vid}.npy").shape == (10, 6)
    stamp = (tmp_path / "npy" / "v_000000.npy").stat().st_mtime_ns
    again = scale.make_data(tmp_path, videos=20, classes=4, steps=10, dim=6, seed=3)
    assert again == ann and (tmp_path / "npy" / "v_000000.npy").stat().st_mtime_ns == stamp
    scale.make_data(tmp_path, videos=8, classes=4, steps=10, dim=6, seed=3)  # other settings
    assert len(list((tmp_path / "npy").glob("*.npy"))) == 8


def test_table_gives_each_measure_and_the_ratio():
    before = scale.Version("before x", Path("."), {"train": scale.Stage(30.0, 200.0)})
    after = scale.Version("this checkout", Path("."), {"train": scale.Stage(10.0, 100.0)})
    before.numbers["train start-up s"], after.numbers["train start-up s"] = 12.0, 4.0
    lines = scale.table([before, after])
    assert lines[0].split() == ["measure", "before", "x", "this", "checkout", "before/after"]
    rows = {line[:22].strip(): line[22:].split() for line in lines[1:]}
    assert rows["train s"] == ["30.0", "10.0", "3.00"]
    assert rows["train peak MB"] == ["200.0", "100.0", "2.00"]
    assert rows["train start-up s"] == ["12.0", "4.0", "3.00"]


def test_each_version_imports_its_own_tree(tmp_path):
    """Stages run in their version's tree: from this checkout, ``python -m pipelines`` would
    import this checkout's code whatever PYTHONPATH names (its working directory comes
    first), which made an earlier run time this checkout twice."""
    tree = tmp_path / "tree"
    (tree / "pipelines").mkdir(parents=True)
    (tree / "pipelines" / "__init__.py").write_text("")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)}
    assert scale.imported_from(tree, env) == (tree / "pipelines").resolve()
    assert scale.imported_from(REPO, env) == (REPO / "pipelines").resolve()  # the trap


def test_stage_env_is_unbuffered_with_the_trees_code(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    env = scale.stage_env(tmp_path, 3)
    assert env["PYTHONPATH"] == str(tmp_path) and env["PYTHONUNBUFFERED"] == "1"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "3"
    assert "MLFLOW_TRACKING_URI" not in env


@pytest.mark.slow
def test_every_stage_runs_on_a_few_videos(tmp_path):
    small = ["--videos", "16", "--classes", "3", "--steps", "16", "--dim", "8"]
    small += ["--max-seq-len", "16", "--set", "model.num_levels=2"]
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "scale.py"),
            *small,
            "--work",
            str(tmp_path),
            "--no-page",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("measure"))
    rows = {line[:22].strip() for line in lines[head + 1 :] if line[:1].isalpha()}
    for stage in ("import", "pairs", "train", "infer", "eval"):
        assert {f"{stage} s", f"{stage} peak MB"} <= rows, done.stdout
    assert {"train start-up s", "train epoch s", "infer ms per video"} <= rows, done.stdout
    pred = json.loads((tmp_path / "this_checkout" / "predictions.json").read_text())
    assert len(pred["results"]) == 4  # every validation video predicted
