"""Importing ActionFormer-style .npy features: round trip, timing, layouts, re-runs, bad files."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow.parquet as pq
import pytest

from features.importing import (
    FeatureImportError,
    import_features,
    list_feature_files,
    resample_linear,
    smallest_num_frames,
)
from features.store import FeatureStore, num_features


def _save(folder, video_id: str, rows: int, channels: int = 2048, seed: int = 0) -> np.ndarray:
    data = np.random.default_rng(seed).standard_normal((rows, channels)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{video_id}.npy", data)
    return data


@pytest.fixture
def thumos(tmp_path):
    """Three THUMOS-like videos, [T, 2048] float32."""
    folder = tmp_path / "npy"
    arrays = {
        vid: _save(folder, vid, rows, seed=i)
        for i, (vid, rows) in enumerate(
            [("video_test_0000004", 57), ("video_test_0000006", 1), ("video_val_0000051", 300)]
        )
    }
    return folder, arrays


def test_smallest_num_frames_inverts_the_formula():
    for count in (1, 2, 57, 300):
        frames = smallest_num_frames(count, 16, 4)
        assert num_features(frames, 16, 4) == count
        assert num_features(frames - 1, 16, 4) != count or count == 1  # 1: full clip
    assert smallest_num_frames(1, 16, 4) == 16
    with pytest.raises(ValueError):
        smallest_num_frames(0, 16, 4)


def test_round_trip_splits_rgb_then_flow(thumos, tmp_path):
    folder, arrays = thumos
    summary = import_features(folder, tmp_path / "s.zarr", extractor="actionformer-i3d")
    assert sorted(summary.imported) == sorted(arrays)
    assert summary.skipped == [] and summary.failed == {}
    assert summary.line() == "imported 3, skipped 0 (already complete), failed 0"
    store = FeatureStore.open(tmp_path / "s.zarr")
    assert store.completed() == set(arrays)
    assert store.attrs["extractor"] == "actionformer-i3d"
    assert store.attrs["weights_digest"] == "unknown"
    assert store.attrs["feature_dims"] == {"rgb": 1024, "flow": 1024}
    assert store.attrs["modalities"] == ["rgb", "flow"]
    assert (store.attrs["clip_length"], store.attrs["stride"], store.attrs["fps"]) == (16, 4, 30)
    assert store.attrs["source"] == str(folder.resolve())
    for vid, data in arrays.items():
        np.testing.assert_array_equal(store.read(vid), data)
        np.testing.assert_array_equal(store.read(vid, "rgb"), data[:, :1024])
        np.testing.assert_array_equal(store.read(vid, "flow"), data[:, 1024:])
        meta = store.meta(vid)
        assert meta["num_features"] == len(data)
        assert meta["num_frames"] == (len(data) - 1) * 4 + 16
        assert meta["duration"] == pytest.approx(meta["num_frames"] / 30)
        assert meta["frames_from"] == "features"


def test_centres_follow_the_thumos_convention(thumos, tmp_path):
    folder, arrays = thumos
    import_features(folder, tmp_path / "s.zarr")
    store = FeatureStore.open(tmp_path / "s.zarr")
    for vid, data in arrays.items():
        i = np.arange(len(data))
        np.testing.assert_allclose(store.centers(vid), (4 * i + 8) / 30)


def test_ct_layout(tmp_path):
    folder = tmp_path / "npy"
    folder.mkdir()
    data = np.random.default_rng(1).standard_normal((40, 2048)).astype(np.float32)
    np.save(folder / "v_anet1.npy", data.T.copy())
    summary = import_features(folder, tmp_path / "s.zarr", layout="ct")
    assert summary.imported == ["v_anet1"]
    np.testing.assert_array_equal(FeatureStore.open(tmp_path / "s.zarr").read("v_anet1"), data)


def test_wrong_layout_fails_with_a_hint(tmp_path):
    folder = tmp_path / "npy"
    _save(folder, "a", 30)
    np.save(folder / "b.npy", np.zeros((2048, 30), np.float32))
    summary = import_features(folder, tmp_path / "s.zarr")
    assert summary.imported == ["a"]
    assert "wrong --layout?" in summary.failed["b"]


def test_single_modality_and_explicit_split(tmp_path):
    folder = tmp_path / "rgb"
    data = _save(folder, "v", 12, channels=1024)
    summary = import_features(folder, tmp_path / "rgb.zarr", modalities=["rgb"])
    assert summary.imported == ["v"]
    store = FeatureStore.open(tmp_path / "rgb.zarr")
    assert store.modalities == ("rgb",) and store.attrs["feature_dims"] == {"rgb": 1024}
    np.testing.assert_array_equal(store.read("v"), data)

    folder = tmp_path / "both"
    data = _save(folder, "w", 12, channels=1536)
    import_features(folder, tmp_path / "both.zarr", modalities=["flow", "rgb"], split=1024)
    store = FeatureStore.open(tmp_path / "both.zarr")
    assert store.attrs["feature_dims"] == {"rgb": 1024, "flow": 512}
    np.testing.assert_array_equal(store.read("w", "rgb"), data[:, :1024])
    np.testing.assert_array_equal(store.read("w", "flow"), data[:, 1024:])


def test_odd_channels_need_a_split(tmp_path):
    folder = tmp_path / "npy"
    _save(folder, "v", 5, channels=1025)
    with pytest.raises(FeatureImportError, match="--split"):
        import_features(folder, tmp_path / "s.zarr")


def test_annotation_durations_give_frame_counts(tmp_path):
    folder = tmp_path / "npy"
    _save(folder, "exact", 57)
    _save(folder, "off", 57)
    _save(folder, "missing", 10)
    exact_frames = 241  # 240..243 frames give 57 features; 241 is not the smallest
    assert num_features(exact_frames, 16, 4) == 57
    durations = {"exact": (exact_frames / 30, 29.97), "off": 100.0}
    summary = import_features(folder, tmp_path / "s.zarr", durations=durations)
    assert sorted(summary.imported) == ["exact", "missing", "off"]
    store = FeatureStore.open(tmp_path / "s.zarr")
    exact = store.meta("exact")
    assert exact["num_frames"] == exact_frames
    assert exact["duration"] == pytest.approx(exact_frames / 30)
    assert exact["frames_from"] == "annotations"
    assert exact["video_fps"] == 29.97
    assert exact["fps"] == 30
    off = store.meta("off")
    assert off["num_frames"] == smallest_num_frames(57, 16, 4)
    assert off["duration"] == 100.0  # the real duration is kept
    assert off["frames_from"] == "features"
    assert store.meta("missing")["num_frames"] == smallest_num_frames(10, 16, 4)
    notes = "\n".join(summary.notes)
    assert "off: duration 100.0 s at 30.0 fps is 3000 frames" in notes
    assert "missing: not in the annotations" in notes
    assert "exact" not in notes


def test_rerun_skips_and_overwrite_replaces(thumos, tmp_path):
    folder, arrays = thumos
    location = tmp_path / "s.zarr"
    import_features(folder, location)
    again = import_features(folder, location)
    assert again.imported == [] and sorted(again.skipped) == sorted(arrays)
    assert again.line() == "imported 0, skipped 3 (already complete), failed 0"

    (folder / "video_val_0000051.npy").unlink()
    replaced = import_features(folder, location, overwrite=True)
    assert sorted(replaced.imported) == ["video_test_0000004", "video_test_0000006"]
    store = FeatureStore.open(location)
    assert store.completed() == {"video_test_0000004", "video_test_0000006"}
    assert sorted(store.manifest().column("video_id").to_pylist()) == sorted(store.completed())


def test_other_attributes_are_refused_without_overwrite(thumos, tmp_path):
    folder, _ = thumos
    import_features(folder, tmp_path / "s.zarr")
    with pytest.raises(FeatureImportError, match="stride"):
        import_features(folder, tmp_path / "s.zarr", stride=8)
    summary = import_features(folder, tmp_path / "s.zarr", stride=8, overwrite=True)
    assert len(summary.imported) == 3


def test_bad_files_are_recorded_and_the_good_ones_done(tmp_path):
    folder = tmp_path / "npy"
    good = {vid: _save(folder, vid, 20, seed=i) for i, vid in enumerate(["g1", "g2", "g3"])}
    (folder / "text.npy").write_text("not numpy at all")
    with open(folder / "pickled.npy", "wb") as handle:
        np.save(handle, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (folder / "raw_pickle.npy").write_bytes(pickle.dumps([1, 2, 3]))
    np.save(folder / "flat.npy", np.zeros(2048, np.float32))
    np.save(folder / "cube.npy", np.zeros((2, 3, 2048), np.float32))
    np.save(folder / "narrow.npy", np.zeros((20, 1000), np.float32))
    np.save(folder / "empty.npy", np.zeros((0, 2048), np.float32))
    np.save(folder / "strings.npy", np.full((3, 2048), "x"))
    nan = np.zeros((20, 2048), np.float32)
    nan[5, 7] = np.nan
    np.save(folder / "nan.npy", nan)
    inf = np.zeros((20, 2048), np.float32)
    inf[0, 0] = np.inf
    np.save(folder / "inf.npy", inf)
    np.save(folder / "ctrl\x01id.npy", np.zeros((20, 2048), np.float32))
    np.save(folder / ".hidden.npy", np.zeros((20, 2048), np.float32))
    (folder / "not_a_feature.txt").write_text("ignored")
    (folder / "dir.npy").mkdir()

    summary = import_features(folder, tmp_path / "s.zarr")
    assert sorted(summary.imported) == ["g1", "g2", "g3"]
    reasons = summary.failed
    assert set(reasons) == {
        "text",
        "pickled",
        "raw_pickle",
        "flat",
        "cube",
        "narrow",
        "empty",
        "strings",
        "nan",
        "inf",
        "ctrl%01id",
        "%2Ehidden",
        "dir",
    }
    assert "not a .npy file" in reasons["text"]
    assert "without pickle" in reasons["pickled"]
    assert "not a .npy file" in reasons["raw_pickle"]
    assert "2-D" in reasons["flat"] and "(2048,)" in reasons["flat"]
    assert "2-D" in reasons["cube"]
    assert "1000 channels" in reasons["narrow"] and "expected 2048" in reasons["narrow"]
    assert "T = 0" in reasons["empty"]
    assert "not a real number type" in reasons["strings"]
    assert "NaN or inf" in reasons["nan"] and "first row 5" in reasons["nan"]
    assert "NaN or inf" in reasons["inf"]
    assert (
        "control characters" in reasons["ctrl%01id"] and "ctrl\\x01id.npy" in reasons["ctrl%01id"]
    )
    assert "must not start with '.'" in reasons["%2Ehidden"]
    assert "cannot be read" in reasons["dir"]
    assert summary.line() == "imported 3, skipped 0 (already complete), failed 13"

    store = FeatureStore.open(tmp_path / "s.zarr")
    assert store.completed() == set(good)
    table = pq.read_table(tmp_path / "s.zarr" / "manifest.parquet")
    assert table.column_names[:6] == [
        "video_id",
        "status",
        "num_frames",
        "num_features",
        "duration",
        "error",
    ]
    rows = {r["video_id"]: r for r in table.to_pylist()}
    assert set(rows) == set(good) | set(reasons)
    for vid in good:
        assert rows[vid]["status"] == "done" and rows[vid]["error"] is None
        assert rows[vid]["num_features"] == 20
        assert rows[vid]["num_frames"] == smallest_num_frames(20, 16, 4)
        assert rows[vid]["duration"] == pytest.approx(rows[vid]["num_frames"] / 30)
    for vid, reason in reasons.items():
        assert rows[vid]["status"] == "failed" and rows[vid]["error"] == reason

    # fix one file: the re-run imports it, skips the good ones and fails the rest again
    np.save(folder / "nan.npy", np.ones((20, 2048), np.float32))
    again = import_features(folder, tmp_path / "s.zarr")
    assert again.imported == ["nan"] and sorted(again.skipped) == ["g1", "g2", "g3"]
    assert len(again.failed) == 12
    row = {r["video_id"]: r for r in FeatureStore.open(tmp_path / "s.zarr").manifest().to_pylist()}
    assert row["nan"]["status"] == "done" and row["nan"]["error"] is None


def test_channel_count_is_the_most_common_one(tmp_path):
    folder = tmp_path / "npy"
    _save(folder, "a_odd", 10, channels=1000)  # sorted first, but in the minority
    _save(folder, "b", 10)
    _save(folder, "c", 10)
    summary = import_features(folder, tmp_path / "s.zarr")
    assert sorted(summary.imported) == ["b", "c"] and list(summary.failed) == ["a_odd"]


def test_float16_store_and_overflow(tmp_path):
    folder = tmp_path / "npy"
    data = _save(folder, "ok", 8)
    np.save(folder / "huge.npy", np.full((8, 2048), 1e6, np.float32))
    summary = import_features(folder, tmp_path / "s.zarr", dtype="float16")
    assert summary.imported == ["ok"]
    assert "overflow float16" in summary.failed["huge"]
    out = FeatureStore.open(tmp_path / "s.zarr").read("ok")
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, data.astype(np.float16))


def test_whole_import_errors(tmp_path):
    with pytest.raises(FeatureImportError, match="not found"):
        import_features(tmp_path / "missing", tmp_path / "s.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatureImportError, match="no \\*.npy files"):
        import_features(tmp_path / "empty", tmp_path / "s.zarr")
    folder = tmp_path / "npy"
    _save(folder, "v", 4)
    for kwargs, match in [
        ({"layout": "cth"}, "layout"),
        ({"modalities": ["depth"]}, "unknown modalities"),
        ({"modalities": ["rgb", "rgb"]}, "distinct"),
        ({"stride": 0}, "stride"),
        ({"fps": 0}, "fps"),
        ({"dtype": "float64"}, "dtype"),
        ({"split": 2048}, "split"),
    ]:
        with pytest.raises(FeatureImportError, match=match):
            import_features(folder, tmp_path / "s.zarr", **kwargs)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    with pytest.raises(FeatureImportError, match="not a feature store"):
        import_features(folder, tmp_path / "plain")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.npy").write_text("nope")
    with pytest.raises(FeatureImportError, match="none of the 1"):
        import_features(tmp_path / "junk", tmp_path / "s.zarr")


def test_list_feature_files_sorted_and_flat(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ["b.npy", "a.npy", "c.npz", "sub/d.npy", ".npy"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_feature_files(tmp_path)] == ["a.npy", "b.npy"]


# ---------------------------------------------------------------- resized (ActivityNet) features


@pytest.mark.parametrize(("count", "steps"), [(100, 192), (7, 3), (1, 5), (5, 5), (128, 100)])
def test_resample_linear_is_torch_interpolate_linear(count, steps):
    """Expected values: torch.nn.functional.interpolate(mode="linear", align_corners=False),
    the call ActionFormer's anet.py makes to up-sample ActivityNet features to 192."""
    torch = pytest.importorskip("torch")
    data = np.random.default_rng(count).standard_normal((count, 6)).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(data.T.copy())[None], size=steps, mode="linear", align_corners=False
    )[0].T.numpy()
    got = resample_linear(data, steps)
    assert got.shape == (steps, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_resample_linear_by_hand():
    """2 -> 4 steps: outputs sample positions (j + 0.5) / 2 - 0.5 = -0.25 (clamped to 0),
    0.25, 0.75, 1.25 (the last neighbour repeats): 0, 2.5, 7.5, 10 for inputs 0 and 10."""
    out = resample_linear(np.array([[0.0], [10.0]]), 4)
    np.testing.assert_allclose(out[:, 0], [0.0, 2.5, 7.5, 10.0])


def test_resized_import_gives_each_video_its_own_rate(tmp_path):
    folder = tmp_path / "npy"
    _save(folder, "short", 100, channels=8)
    _save(folder, "long", 100, channels=8, seed=1)
    durations = {"short": (20.0, 25.0), "long": 400.0}
    summary = import_features(
        folder, tmp_path / "s.zarr", modalities=["rgb"], durations=durations, resized=True
    )
    assert sorted(summary.imported) == ["long", "short"] and not summary.notes
    store = FeatureStore.open(tmp_path / "s.zarr")
    attrs = store.attrs
    assert (attrs["stride"], attrs["clip_length"], attrs["fps"]) == (1, 1, None)
    assert attrs["timing"] == "resized" and attrs["steps"] is None
    for vid, duration in (("short", 20.0), ("long", 400.0)):
        meta = store.meta(vid)
        assert meta["fps"] == pytest.approx(100 / duration)  # steps per second
        assert (meta["num_frames"], meta["num_features"]) == (100, 100)
        assert meta["duration"] == duration and meta["frames_from"] == "resized"
        # ActionFormer (anet.py, fixed-length features): feat_stride = duration * fps / T,
        # offset half a step: step i is centred at (i + 0.5) * duration / T; the 100 steps
        # tile [0, duration] exactly
        np.testing.assert_allclose(store.centers(vid), (np.arange(100) + 0.5) * duration / 100)
    assert store.meta("short")["video_fps"] == 25.0


def test_resized_import_resamples_to_steps(tmp_path):
    folder = tmp_path / "npy"
    data = _save(folder, "v_a", 100, channels=8)
    location = tmp_path / "s.zarr"
    import_features(
        folder,
        location,
        modalities=["rgb", "flow"],
        durations={"a": 50.0},
        resized=True,
        steps=192,
        file_prefix="v_",
    )
    store = FeatureStore.open(location)
    meta = store.meta("a")
    assert (meta["num_features"], meta["source_num_features"]) == (192, 100)
    assert meta["fps"] == pytest.approx(192 / 50.0) and store.attrs["steps"] == 192
    np.testing.assert_allclose(store.read("a"), resample_linear(data, 192), rtol=1e-6)
    np.testing.assert_allclose(store.centers("a")[[0, -1]], [0.5 * 50 / 192, 191.5 * 50 / 192])
    # the same store cannot take other steps, nor global-stride features
    with pytest.raises(FeatureImportError, match="steps 192, asked for 100"):
        import_features(
            folder, location, durations={"a": 50.0}, resized=True, steps=100, file_prefix="v_"
        )
    with pytest.raises(FeatureImportError, match="stride"):
        import_features(folder, location, file_prefix="v_")


def test_resized_import_needs_every_duration(tmp_path):
    folder = tmp_path / "npy"
    for vid in ("a", "b", "c"):
        _save(folder, vid, 10, channels=8)
    location = tmp_path / "s.zarr"
    with pytest.raises(FeatureImportError, match=r"video 'b' \(and 1 more\) has no duration"):
        import_features(folder, location, durations={"a": 5.0}, resized=True)
    with pytest.raises(FeatureImportError, match="need each video's duration"):
        import_features(folder, location, resized=True)
    with pytest.raises(FeatureImportError, match="give --resized"):
        import_features(folder, location, steps=100)
    assert not location.exists()  # nothing written before the checks
    summary = import_features(
        folder, location, durations={"a": 5.0, "b": 0.0, "c": 2.0}, resized=True
    )
    assert sorted(summary.imported) == ["a", "c"]
    assert "duration 0.0 in the annotations" in summary.failed["b"]
