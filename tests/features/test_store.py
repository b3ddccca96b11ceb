"""The Zarr feature store: round trips, completeness, attribute checks, ids, manifest, timing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import features.store as store_module
from features.store import FeatureStore, check_video_id, feature_centers, num_features

ATTRS = {
    "extractor": "i3d_pytorch",
    "weights_digest": "sha256:abc123",
    "weights_origin": "https://example.org/rgb_imagenet.pt",
    "clip_length": 16,
    "stride": 4,
    "fps": 30,
    "input_size": 224,
    "dtype": "float32",
    "feature_dims": {"rgb": 1024, "flow": 1024},
}


def _features(num_frames: int, seed: int = 0, dims: int = 1024) -> dict[str, np.ndarray]:
    rows = num_features(num_frames, 16, 4)
    rng = np.random.default_rng(seed)
    return {m: rng.standard_normal((rows, dims)).astype(np.float32) for m in ("rgb", "flow")}


@pytest.fixture
def store(tmp_path) -> FeatureStore:
    return FeatureStore.create(tmp_path / "feats.zarr", ATTRS)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip(tmp_path, dtype):
    fs = FeatureStore.create(tmp_path / "s.zarr", {**ATTRS, "dtype": dtype})
    feats = _features(100)
    fs.write_video("video_a", feats, {"num_frames": 100, "duration": 3.34})
    again = FeatureStore.open(tmp_path / "s.zarr")
    assert again.completed() == {"video_a"}
    assert again.is_complete("video_a")
    rgb = again.read("video_a", "rgb")
    assert rgb.dtype == np.dtype(dtype)
    assert rgb.shape == (num_features(100, 16, 4), 1024)
    np.testing.assert_array_equal(rgb, feats["rgb"].astype(dtype))
    meta = again.meta("video_a")
    assert meta == {"num_frames": 100, "fps": 30.0, "duration": 3.34, "num_features": 22}
    array = again.group["flow"]["video_a"]
    assert array.attrs["complete"] is True
    assert array.attrs["num_frames"] == 100
    assert array.chunks[1] == 1024
    assert again.attrs["format_version"] == store_module.FORMAT_VERSION
    assert again.attrs["weights_origin"] == ATTRS["weights_origin"]


def test_file_url(tmp_path):
    url = (tmp_path / "u.zarr").as_uri()
    assert url.startswith("file://")
    fs = FeatureStore.create(url, ATTRS)
    fs.write_video("v1", _features(40), {"num_frames": 40})
    fs.record("v2", "failed", error="boom")
    fs.write_manifest()
    assert FeatureStore.open(url).read("v1").shape == (7, 2048)
    assert FeatureStore.open(tmp_path / "u.zarr").completed() == {"v1"}
    assert (tmp_path / "u.zarr" / "manifest.parquet").is_file()


def test_concatenation_and_modalities(store):
    feats = _features(64, seed=1)
    store.write_video("v", feats, {"num_frames": 64})
    both = store.read("v")
    assert both.shape == (13, 2048)
    np.testing.assert_array_equal(both[:, :1024], feats["rgb"])
    np.testing.assert_array_equal(both[:, 1024:], feats["flow"])
    assert store.read("v", ("flow",)).shape == (13, 1024)
    np.testing.assert_array_equal(store.read("v", ("flow", "rgb"))[:, :1024], feats["flow"])
    with pytest.raises(ValueError, match="depth"):
        store.read("v", "depth")


def test_rgb_only_store(tmp_path):
    attrs = {**ATTRS, "feature_dims": {"rgb": 8}}
    fs = FeatureStore.create(tmp_path / "rgb.zarr", attrs)
    assert fs.modalities == ("rgb",)
    fs.write_video("v", {"rgb": np.ones((1, 8))}, {"num_frames": 5})
    assert fs.read("v").shape == (1, 8)


def test_missing_video_is_a_key_error_naming_it(store):
    with pytest.raises(KeyError, match=r"nope.*feats\.zarr"):
        store.read("nope")
    with pytest.raises(KeyError, match="nope"):
        store.meta("nope")


def test_partial_video_is_invisible_and_overwritten(store):
    # A writer that died after the rgb array: no marker.
    store.group["rgb"].create_array("half", shape=(3, 1024), dtype="float32")
    store.group["rgb"]["half"][...] = 7.0
    assert store.completed() == set()
    assert not store.is_complete("half")
    assert "half" not in store
    with pytest.raises(KeyError, match="half"):
        store.read("half")
    feats = _features(24, seed=2)
    store.write_video("half", feats, {"num_frames": 24})
    assert store.completed() == {"half"}
    np.testing.assert_array_equal(store.read("half", "rgb"), feats["rgb"])


def test_crash_between_modalities_hides_the_video(store, monkeypatch):
    store.write_video("v", _features(40, seed=3), {"num_frames": 40})
    assert store.is_complete("v")
    calls = []
    real = store_module.ZstdCodec

    def failing_codec(**kwargs):
        calls.append(kwargs)
        if len(calls) == 2:  # the second modality
            raise RuntimeError("simulated crash")
        return real(**kwargs)

    monkeypatch.setattr(store_module, "ZstdCodec", failing_codec)
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.write_video("v", _features(40, seed=4), {"num_frames": 40})
    reopened = FeatureStore.open(store.location)
    assert reopened.completed() == set()
    with pytest.raises(KeyError):
        reopened.read("v")
    monkeypatch.setattr(store_module, "ZstdCodec", real)
    feats = _features(40, seed=5)
    store.write_video("v", feats, {"num_frames": 40})
    np.testing.assert_array_equal(store.read("v", "flow"), feats["flow"])


def test_reopen_with_conflicting_attrs_lists_keys(store):
    store.write_video("v", _features(20), {"num_frames": 20})
    changed = {**ATTRS, "stride": 8, "weights_digest": "sha256:other"}
    with pytest.raises(ValueError, match="attributes differ") as info:
        FeatureStore.create(store.location, changed)
    message = str(info.value)
    assert "stride" in message and "weights_digest" in message
    assert "clip_length" not in message
    with pytest.raises(ValueError, match="extractor"):
        FeatureStore.open(store.location, "a", attrs={**ATTRS, "extractor": "other"})
    # Same attributes (tuples/lists or ints/floats alike): opened for appending, data kept.
    same = FeatureStore.create(store.location, {**ATTRS, "fps": 30.0})
    assert same.completed() == {"v"}
    replaced = FeatureStore.create(store.location, changed, overwrite=True)
    assert replaced.completed() == set()
    assert replaced.attrs["stride"] == 8
    assert replaced.manifest().num_rows == 0


def test_open_missing_and_read_only(tmp_path, store):
    with pytest.raises(FileNotFoundError, match="missing.zarr"):
        FeatureStore.open(tmp_path / "missing.zarr")
    store.write_video("v", _features(20), {"num_frames": 20})
    ro = FeatureStore.open(store.location, "r")
    assert ro.read("v").shape == (2, 2048)
    for write in (
        lambda: ro.write_video("w", _features(20), {"num_frames": 20}),
        lambda: ro.record("w", "failed", error="x"),
        lambda: ro.remove("v"),
    ):
        with pytest.raises(ValueError, match="read-only"):
            write()
    assert ro.completed() == {"v"}


def test_check_attrs_compares_only_given_keys(tmp_path):
    fs = FeatureStore.create(tmp_path / "rgb.zarr", {**ATTRS, "feature_dims": {"rgb": 1024}})
    fs.check_attrs({"extractor": "i3d_pytorch", "stride": np.int64(4)})
    with pytest.raises(ValueError, match="feature_dims"):
        fs.check_attrs({"feature_dims": {"rgb": 2048}})


@pytest.mark.parametrize(
    "bad",
    [
        *["", " ", "a/b", "a\\b", "..", ".", ".hidden", "a\nb", "tab\t", "nul\x00", "zarr.json"],
        *[3, "v_a..b", "x" * 201, "lone\ud800"],
    ],
)
def test_unsafe_ids_rejected(store, bad):
    with pytest.raises(ValueError, match="video id"):
        check_video_id(bad)
    with pytest.raises(ValueError, match="video id"):
        store.write_video(bad, _features(20), {"num_frames": 20})


def test_safe_ids_accepted():
    for good in ["video_test_0000004", "-0Xwbz9C2f0", "_abc", "v.a.b", "x y", "x" * 200]:
        assert check_video_id(good) == good


def test_write_checks(store):
    feats = _features(40)
    with pytest.raises(ValueError, match=r"'v'.*7 features.*give 22"):
        store.write_video("v", feats, {"num_frames": 100})
    with pytest.raises(ValueError, match="modalities"):
        store.write_video("v", {"rgb": feats["rgb"]}, {"num_frames": 40})
    with pytest.raises(ValueError, match="channels"):
        store.write_video("v", _features(40, dims=512), {"num_frames": 40})
    with pytest.raises(ValueError, match="num_frames"):
        store.write_video("v", feats, {"fps": 30})
    bad = {**feats, "flow": feats["flow"].copy()}
    bad["flow"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        store.write_video("v", bad, {"num_frames": 40})
    assert store.completed() == set()


def test_remove(store):
    store.write_video("v", _features(20), {"num_frames": 20})
    store.write_video("w", _features(20), {"num_frames": 20})
    store.write_manifest()
    store.remove("v")
    assert store.completed() == {"w"}
    assert "v" not in store.group["rgb"]
    assert store.manifest().column("video_id").to_pylist() == ["w"]
    pq_ids = pq.read_table(store.local / "manifest.parquet").column("video_id").to_pylist()
    assert pq_ids == ["w"]


def test_manifest_from_two_processes(store):
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from features.store import FeatureStore
        fs = FeatureStore.open(sys.argv[1], "a")
        vid = sys.argv[2]
        if vid == "bad":
            fs.record(vid, "failed", error="cannot decode: moov atom not found", seconds=0.5)
        else:
            feats = {m: np.zeros((7, 1024), np.float32) for m in ("rgb", "flow")}
            fs.write_video(vid, feats, {"num_frames": 40, "duration": 1.5}, seconds=2.0)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, store.location, vid])
        for vid in ("good", "bad")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    table = store.write_manifest()
    on_disk = pq.read_table(store.local / "manifest.parquet")
    assert on_disk.equals(table)
    assert on_disk.schema.field("video_id").type == pa.string()
    assert on_disk.schema.field("status").type == pa.string()
    assert on_disk.schema.field("num_frames").type == pa.int64()
    assert on_disk.schema.field("num_features").type == pa.int64()
    assert on_disk.schema.field("duration").type == pa.float64()
    assert on_disk.schema.field("error").type == pa.string()
    rows = {r["video_id"]: r for r in on_disk.to_pylist()}
    assert set(rows) == {"good", "bad"}
    assert rows["good"]["status"] == "done" and rows["good"]["error"] is None
    assert rows["good"]["num_frames"] == 40 and rows["good"]["num_features"] == 7
    assert rows["good"]["duration"] == 1.5 and rows["good"]["seconds"] == 2.0
    assert rows["bad"]["status"] == "failed"
    assert rows["bad"]["error"] == "cannot decode: moov atom not found"
    assert store.completed() == {"good"}


def test_record_upserts(store):
    store.record("v", "failed", error="timeout after 600 s")
    store.write_manifest()
    assert store.manifest().to_pylist()[0]["status"] == "failed"
    store.write_video("v", _features(20), {"num_frames": 20})
    rows = store.manifest().to_pylist()
    assert len(rows) == 1 and rows[0]["status"] == "done" and rows[0]["error"] is None
    with pytest.raises(ValueError, match="error"):
        store.record("w", "failed")
    with pytest.raises(ValueError, match="status"):
        store.record("w", "skipped")


def test_formulas():
    assert num_features(1, 16, 4) == 1
    assert num_features(15, 16, 4) == 1
    assert num_features(16, 16, 4) == 1
    assert num_features(20, 16, 4) == 2
    assert num_features(100, 16, 4) == 22
    centers = feature_centers(3, 16, 4, 30)
    np.testing.assert_allclose(centers, [8 / 30, 12 / 30, 16 / 30])


def test_store_centers(store):
    store.write_video("v", _features(100), {"num_frames": 100})
    centers = store.centers("v")
    assert centers.shape == (22,)
    assert centers[0] == pytest.approx(8 / 30)
    assert store.num_features(10) == 1


def test_leftover_marker_without_metadata_is_not_complete(store):
    store.write_video("v", _features(20), {"num_frames": 20})
    marker = store.local / "_done" / "v" / "zarr.json"
    marker.rename(marker.with_suffix(".abc.partial"))  # as a crash inside zarr's atomic write
    assert store.completed() == set()
    assert not store.is_complete("v")
    store.write_video("v", _features(20), {"num_frames": 20})
    assert store.completed() == {"v"}
    assert sorted(p.name for p in (store.local / "_done" / "v").iterdir()) == ["zarr.json"]


def test_create_refuses_a_foreign_folder(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "keep.mp4").write_bytes(b"x")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="not a feature store"):
            FeatureStore.create(folder, ATTRS, overwrite=overwrite)
    assert (folder / "keep.mp4").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert FeatureStore.create(empty, ATTRS).completed() == set()


def test_fsspec_memory_url():
    url = f"memory://tal-test/{uuid.uuid4().hex}/s.zarr"
    fs = FeatureStore.create(url, ATTRS)
    assert fs.local is None
    fs.write_video("v1", _features(20), {"num_frames": 20})
    fs.record("v2", "failed", error="bad file")
    table = FeatureStore.open(url, "a", attrs=ATTRS).write_manifest()
    assert table.column("status").to_pylist() == ["done", "failed"]
    again = FeatureStore.open(url, "a")
    assert again.completed() == {"v1"}
    assert again.read("v1").shape == (2, 2048)
    again.remove("v1")
    assert again.completed() == set()
    assert again.manifest().column("video_id").to_pylist() == ["v2"]
    replaced = FeatureStore.create(url, {**ATTRS, "stride": 8}, overwrite=True)
    assert replaced.manifest().num_rows == 0


def test_meta_is_read_once_per_handle_and_follows_rewrites(store, monkeypatch):
    store.write_video("v", _features(100), {"num_frames": 100})
    reads = []
    original = store._subgroup
    monkeypatch.setattr(store, "_subgroup", lambda name: reads.append(name) or original(name))
    first = store.meta("v")
    first["num_frames"] = -1  # a copy: the cached meta is not changed through it
    assert store.meta("v")["num_frames"] == 100
    assert reads.count(store_module.DONE_GROUP) == 1  # three datasets, one read
    store.write_video("v", _features(120), {"num_frames": 120})
    assert store.meta("v")["num_frames"] == 120
    store.remove("v")
    with pytest.raises(KeyError, match="video 'v' is not"):
        store.meta("v")
