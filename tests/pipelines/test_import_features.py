"""`tal import-features`: summary line, options, annotations, re-runs and exit status 2."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from features.importing import smallest_num_frames
from features.store import FeatureStore
from pipelines.cli import exit_status as run


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "i3d"
    path.mkdir()
    rng = np.random.default_rng(0)
    for vid, rows in [("video_test_0000004", 57), ("video_test_0000006", 9)]:
        np.save(path / f"{vid}.npy", rng.standard_normal((rows, 2048)).astype(np.float32))
    (path / "broken.npy").write_text("oops")
    return path


def test_import_thumos_style(folder, tmp_path, capsys):
    store_dir = tmp_path / "feats.zarr"
    args = ["import-features", str(folder), "--store", str(store_dir)]
    code = run(
        [
            *args,
            "--stride",
            "4",
            "--clip-length",
            "16",
            "--fps",
            "30",
            "--modalities",
            "rgb",
            "flow",
            "--extractor",
            "actionformer-i3d",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "imported 2, skipped 0 (already complete), failed 1" in out
    assert "failed: broken: file broken.npy: not a .npy file" in out
    store = FeatureStore.open(store_dir)
    assert store.attrs["extractor"] == "actionformer-i3d"
    data = np.load(folder / "video_test_0000004.npy")
    np.testing.assert_array_equal(store.read("video_test_0000004", "flow"), data[:, 1024:])
    np.testing.assert_allclose(store.centers("video_test_0000004"), (4 * np.arange(57) + 8) / 30)
    table = pq.read_table(store_dir / "manifest.parquet")
    assert {"video_id", "status", "num_frames", "num_features", "duration", "error"} <= set(
        table.column_names
    )

    assert run([*args, "--extractor", "actionformer-i3d"]) == 0
    assert "imported 0, skipped 2 (already complete), failed 1" in capsys.readouterr().out
    assert run([*args, "--overwrite"]) == 0  # other extractor name: allowed with --overwrite
    assert "imported 2, skipped 0 (already complete), failed 1" in capsys.readouterr().out
    assert FeatureStore.open(store_dir).attrs["extractor"] == "imported"


def test_rgb_only_ct_layout_float16(tmp_path, capsys):
    folder = tmp_path / "anet"
    folder.mkdir()
    data = np.random.default_rng(2).standard_normal((100, 1024)).astype(np.float32)
    np.save(folder / "v_abc.npy", data.T.copy())
    code = run(
        [
            "import-features",
            str(folder),
            "--store",
            str(tmp_path / "s.zarr"),
            "--modalities",
            "rgb",
            "--layout",
            "ct",
            "--dtype",
            "float16",
        ]
    )
    assert code == 0, capsys.readouterr().err
    store = FeatureStore.open(tmp_path / "s.zarr")
    assert store.modalities == ("rgb",)
    np.testing.assert_array_equal(store.read("v_abc"), data.astype(np.float16))


def test_annotations_give_durations(folder, tmp_path, capsys):
    ann = tmp_path / "ann.json"
    database = {
        "video_test_0000004": {
            "subset": "test",
            "duration": 241 / 30,
            "fps": 30,
            "annotations": [{"segment": [1.0, 2.0], "label": "Jump"}],
        },
        "video_test_0000006": {"subset": "test", "duration": 50.0, "annotations": []},
    }
    ann.write_text(json.dumps({"database": database}))
    code = run(
        [
            "import-features",
            str(folder),
            "--store",
            str(tmp_path / "s.zarr"),
            "--annotations",
            str(ann),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "note: video_test_0000006: duration 50.0 s" in captured.err
    store = FeatureStore.open(tmp_path / "s.zarr")
    assert store.meta("video_test_0000004")["num_frames"] == 241
    assert store.meta("video_test_0000006")["num_frames"] == smallest_num_frames(9, 16, 4)
    assert store.meta("video_test_0000006")["duration"] == 50.0


def test_user_errors_exit_2(folder, tmp_path, capsys):
    store = str(tmp_path / "s.zarr")
    assert run(["import-features", str(tmp_path / "nope"), "--store", store]) == 2
    assert "feature folder not found" in capsys.readouterr().err
    assert run(["import-features", str(folder), "--store", store, "--layout", "xy"]) == 2
    assert "layout" in capsys.readouterr().err
    bad_ann = tmp_path / "bad.json"
    bad_ann.write_text("{not json")
    assert (
        run(["import-features", str(folder), "--store", store, "--annotations", str(bad_ann)]) == 2
    )
    assert str(bad_ann) in capsys.readouterr().err
    assert run(["import-features", str(folder), "--store", store]) == 0
    capsys.readouterr()
    assert run(["import-features", str(folder), "--store", store, "--stride", "8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "stride" in err


def test_resized_activitynet_features_with_bmn_annotations(tmp_path, capsys):
    """`--resized`: BMN-layout annotations (format detected), files named v_ID.npy, each
    video's 100 steps resampled to 192 and spanning its own duration."""
    folder = tmp_path / "anet"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for vid in ("abc", "xyz"):
        np.save(folder / f"v_{vid}.npy", rng.standard_normal((100, 16)).astype(np.float32))
    bmn = {
        "v_abc": {"duration_second": 30.0, "annotations": [{"segment": [1, 29], "label": "A"}]},
        "v_xyz": {"duration_second": 240.0, "annotations": [{"segment": [5, 9], "label": "B"}]},
    }
    ann = tmp_path / "anet_anno_action.json"
    ann.write_text(json.dumps(bmn))
    (tmp_path / "video_info_new.csv").write_text(
        "video,numFrame,seconds,fps,rfps,subset,featureFrame\n"
        "v_abc,900,30.0,30.0,30.0,training,896\n"
        "v_xyz,6000,240.0,25.0,25.0,validation,5984\n"
    )
    args = ["import-features", str(folder), "--store", str(tmp_path / "s.zarr")]
    resized = [*args, "--annotations", str(ann), "--resized", "--file-prefix", "v_"]
    assert run([*resized, "--steps", "192", "--modalities", "rgb"]) == 0, capsys.readouterr().err
    assert "imported 2, skipped 0 (already complete), failed 0" in capsys.readouterr().out
    store = FeatureStore.open(tmp_path / "s.zarr")
    assert store.attrs["timing"] == "resized" and store.attrs["steps"] == 192
    for vid, duration in (("abc", 30.0), ("xyz", 240.0)):
        meta = store.meta(vid)
        assert (meta["num_features"], meta["source_num_features"]) == (192, 100)
        assert meta["duration"] == duration
        np.testing.assert_allclose(store.centers(vid), (np.arange(192) + 0.5) * duration / 192)
    assert store.meta("xyz")["video_fps"] == 25.0

    # one-line errors, status 2
    cases = [
        ([*resized, "--stride", "16", "--fps", "25"], "drop --stride, --fps"),
        ([*args, "--resized"], "--resized needs --annotations"),
        ([*args, "--steps", "192"], "give --resized too"),
    ]
    for argv, message in cases:
        assert run(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    np.save(folder / "v_new.npy", np.zeros((100, 16), dtype=np.float32))
    assert run([*resized, "--steps", "192", "--modalities", "rgb"]) == 2
    assert "video 'new' has no duration in the annotations" in capsys.readouterr().err
