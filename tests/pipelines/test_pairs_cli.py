"""`tal pairs` and `python -m pipelines pairs`: files, feature-store filter, user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from features.clips import num_features
from features.store import FeatureStore
from pipelines.cli import exit_status as run
from tal.config import load_config
from tal.data.annotations import load_annotations
from tal.pairs import build_pairs, read_pairs

REPO = Path(__file__).resolve().parents[2]

LABELS = {"a": ["Jump"], "b": ["Jump", "Run"], "c": ["Run"], "d": ["Jump"], "e": ["Swim"]}


def _write_annotations(path, labels=LABELS):
    database = {
        vid: {
            "subset": "training",
            "duration": 10.0,
            "annotations": [{"segment": [1.0, 3.0], "label": name} for name in names],
        }
        for vid, names in labels.items()
    }
    database["val1"] = {
        "subset": "validation",
        "duration": 10.0,
        "annotations": [{"segment": [1.0, 3.0], "label": "Jump"}],
    }
    path.write_text(json.dumps({"database": database}))
    return path


def _store(path, complete):
    attrs = {
        "extractor": "test",
        "weights_digest": "sha256:0",
        "clip_length": 16,
        "stride": 4,
        "fps": 10,
        "dtype": "float32",
        "feature_dims": {"rgb": 4, "flow": 4},
    }
    fs = FeatureStore.create(path, attrs)
    rows = num_features(40, 16, 4)
    for vid in complete:
        feats = {m: np.zeros((rows, 4), np.float32) for m in ("rgb", "flow")}
        fs.write_video(vid, feats, {"num_frames": 40})
    return path


def test_pairs_end_to_end(tmp_path, capsys):
    ann = _write_annotations(tmp_path / "ann.json")
    out = tmp_path / "out" / "pairs.parquet"
    argv = ["pairs", "--annotations", str(ann), "--output", str(out), "--seed", "3"]
    assert run([*argv, "--per-video", "1"]) == 0
    stdout = capsys.readouterr().out.splitlines()
    expected = build_pairs(load_annotations(ann), per_video=1, seed=3)
    assert stdout == [expected.summary(), f"wrote {out}"]
    assert stdout[0].startswith("4 pairs for 4 videos; pairs per class 0-")  # Swim: 0 pairs
    assert stdout[0].endswith("over 3 classes; 1 unpaired: e")
    table = read_pairs(out)
    assert table.equals(expected.table)
    assert sorted(table.column("video_a").to_pylist()) == ["a", "b", "c", "d"]
    assert set(table.column("subset").to_pylist()) == {"training"}  # val1 is not paired
    assert table.to_pylist()[2] == {  # c's only partner: b, the other Run video
        "video_a": "c",
        "video_b": "b",
        "shared_labels": ["Run"],
        "subset": "training",
    }
    first = out.read_bytes()
    assert run([*argv, "--per-video", "1"]) == 0
    assert out.read_bytes() == first  # same seed, same bytes
    assert run(argv) == 0  # default pairs.per_video = 2
    assert read_pairs(out).num_rows == 7  # a:2 b:2 c:1 (only b shares Run) d:2


def test_pairs_only_complete_videos_of_the_store(tmp_path, capsys):
    ann = _write_annotations(tmp_path / "ann.json")
    store = _store(tmp_path / "feats.zarr", complete=["a", "b", "c"])
    out = tmp_path / "pairs.parquet"
    code = run(["pairs", "--annotations", str(ann), "--store", str(store), "--output", str(out)])
    assert code == 0
    stdout = capsys.readouterr().out
    assert "2 not available: d, e" in stdout
    table = read_pairs(out)
    assert set(table.column("video_a").to_pylist()) == {"a", "b", "c"}
    assert not {"d", "e"} & set(table.column("video_b").to_pylist())


def test_pairs_from_a_config_and_as_a_module(tmp_path, capsys):
    ann = _write_annotations(tmp_path / "ann.json")
    out = tmp_path / "cfg_pairs.parquet"
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"name: t\nrun_dir: {tmp_path / 'run'}\ndata:\n  annotations: {ann}\n"
        f"pairs:\n  output: {out}\n  per_video: 1\n  seed: 7\n"
    )
    assert run(["pairs", "--config", str(cfg), "--set", "pairs.seed=8"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    expected = build_pairs(load_annotations(ann), per_video=1, seed=8)
    assert read_pairs(out).equals(expected.table)
    assert load_config(cfg).pairs.seed == 7  # the file itself is unchanged

    out.unlink()
    module = [sys.executable, "-m", "pipelines", "pairs", "--config", str(cfg)]
    done = subprocess.run(module, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert read_pairs(out).equals(build_pairs(load_annotations(ann), per_video=1, seed=7).table)


def test_pairs_user_errors_exit_2(tmp_path, capsys):
    out = tmp_path / "pairs.parquet"
    missing = tmp_path / "missing.json"
    assert run(["pairs", "--annotations", str(missing), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {missing}: annotation file not found" in err

    ann = _write_annotations(tmp_path / "ann.json")
    argv = ["pairs", "--annotations", str(ann), "--output", str(out)]
    assert run([*argv, "--per-video", "0"]) == 2
    assert "pairs.per_video" in capsys.readouterr().err

    assert run([*argv, "--store", str(tmp_path / "nope.zarr")]) == 2
    err = capsys.readouterr().err
    assert "error: feature store" in err and "nope.zarr: not found" in err

    empty = _store(tmp_path / "empty.zarr", complete=[])
    assert run([*argv, "--store", str(empty)]) == 2
    assert "none of the 5 videos of subset training is complete" in capsys.readouterr().err

    (tmp_path / "dir.parquet").mkdir()
    assert run(["pairs", "--annotations", str(ann), "--output", str(tmp_path / "dir.parquet")]) == 2
    assert "is a folder" in capsys.readouterr().err

    assert run(["pairs", "--annotations", str(ann)]) == 2  # no --output and no --config
    assert "--output" in capsys.readouterr().err
    assert not out.exists()


def test_pairs_on_the_tiny_synthetic_dataset(tiny_synth, tmp_path, capsys):
    out = tmp_path / "pairs.parquet"
    assert run(["pairs", "--annotations", str(tiny_synth.annotations), "--output", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    ann = load_annotations(tiny_synth.annotations)
    labels = {v.video_id: {i.label for i in v.instances} for v in ann.subset("training")}
    table = read_pairs(out)
    assert table.num_rows > 0
    rows = table.to_pylist()
    for row in rows:
        assert row["subset"] == "training" and row["video_a"] != row["video_b"]
        shared = labels[row["video_a"]] & labels[row["video_b"]]
        assert row["shared_labels"] == sorted(shared) and shared
    with_partner = {
        vid for vid in labels if any(labels[vid] & labels[o] for o in labels if o != vid)
    }
    assert {r["video_a"] for r in rows} == with_partner
