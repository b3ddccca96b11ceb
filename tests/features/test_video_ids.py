"""One video-id rule: what the store refuses, the annotation loader refuses too."""

from __future__ import annotations

import json

import numpy as np
import pytest

from features.store import FeatureStore
from features.video_ids import MAX_VIDEO_ID_BYTES, VideoIdError, check_video_id
from tal.data.annotations import AnnotationError, load_annotations

REFUSED = [
    ".hidden",
    "zarr.json",
    "a/b",
    "a\\b",
    "",
    "   ",
    ".",
    "..",
    "x..y",
    "line\nbreak",
    "tab\there",
    "nul\x00",
    "del\x7f",
    "x" * (MAX_VIDEO_ID_BYTES + 1),
    "é" * (MAX_VIDEO_ID_BYTES // 2 + 1),  # 2 bytes each in UTF-8
    "lone\ud800",
]
ORDINARY = ["video_test_0000004", "v_abc-DEF_1", "-0Xwbz9C2f0", "_abc", "a.b", "x y", "é"]
ATTRS = {
    "extractor": "i3d_pytorch",
    "weights_digest": "sha256:abc",
    "clip_length": 16,
    "stride": 4,
    "fps": 30,
    "dtype": "float32",
    "feature_dims": {"rgb": 4},
}


def _annotations(tmp_path, video_id: str):
    path = tmp_path / "gt.json"
    doc = {"database": {video_id: {"subset": "test", "duration": 5.0, "annotations": []}}}
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _write(store: FeatureStore, video_id: str) -> None:
    store.write_video(video_id, {"rgb": np.zeros((1, 4), np.float32)}, {"num_frames": 16})


@pytest.mark.parametrize("bad", REFUSED)
def test_ids_the_store_refuses_are_refused_by_the_annotation_loader(tmp_path, bad):
    store = FeatureStore.create(tmp_path / "s.zarr", ATTRS)
    with pytest.raises(VideoIdError, match="video id"):
        _write(store, bad)
    path = _annotations(tmp_path, bad)
    with pytest.raises(AnnotationError, match="not usable as a store key") as err:
        load_annotations(path)
    message = str(err.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert "expected" in message and repr(bad) in message


@pytest.mark.parametrize("good", ORDINARY)
def test_ordinary_ids_pass_everywhere(tmp_path, good):
    assert check_video_id(good) == good
    assert list(load_annotations(_annotations(tmp_path, good)).videos) == [good]
    store = FeatureStore.create(tmp_path / "s.zarr", ATTRS)
    _write(store, good)
    assert FeatureStore.open(tmp_path / "s.zarr").completed() == {good}


def test_the_longest_id_fits_in_the_store(tmp_path):
    longest = "é" * (MAX_VIDEO_ID_BYTES // 2)
    store = FeatureStore.create(tmp_path / "s.zarr", ATTRS)
    _write(store, longest)
    store.write_manifest()
    again = FeatureStore.open(tmp_path / "s.zarr")
    assert again.read(longest).shape == (1, 4)
    assert again.manifest().column("video_id").to_pylist() == [longest]


def test_the_error_is_a_value_error_naming_id_source_and_rule():
    with pytest.raises(ValueError, match=r"^rows\.csv: row 3: video id 'a/b' .*expected") as e:
        check_video_id("a/b", "rows.csv: row 3")
    assert isinstance(e.value, VideoIdError)
    with pytest.raises(VideoIdError, match="not a string but int"):
        check_video_id(3)
