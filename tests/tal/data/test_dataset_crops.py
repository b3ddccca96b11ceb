"""Training crops: parity with ActionFormer's ``truncate_feats`` and I2Net's pair crop.

Expected values marked "official" were printed by the official ActionFormer release
(``libs/datasets/data_utils.py`` ``truncate_feats``, run outside this repository with its
``random.randint`` replaced by a function returning the start and length noted beside each
case, offset 2.0 = 0.5 * 16 frames / stride 4, trunc_thresh 0.5, crop_ratio (0.9, 1.0)).
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from features.store import FeatureStore
from tal.config import TrainingConfig
from tal.data.annotations import parse_annotations
from tal.data.dataset import (
    DatasetError,
    FeatureDataset,
    PairDataset,
    crop_segments,
    window_bounds,
)
from tal.data.timing import FeatureTiming

ATTRS = {
    "extractor": "i3d_test",
    "weights_digest": "sha256:test",
    "clip_length": 16,
    "stride": 4,
    "fps": 30,
    "input_size": 224,
    "dtype": "float32",
    "feature_dims": {"rgb": 4},
}
TIMING = FeatureTiming(fps=30.0, stride=4, clip_length=16)


def _frames(features: int) -> int:
    return 4 * (features - 1) + 16  # num_features(frames, 16, 4) == features


def _seconds(step: float) -> float:
    return (4 * step + 8) / 30  # feature step -> seconds (FeatureTiming.to_seconds)


def _store_and_annotations(tmp_path, videos: dict[str, tuple[int, list[tuple[float, float, str]]]]):
    """A store with ``features`` zero features per video and annotations given in steps."""
    store = FeatureStore.create(tmp_path / "feats.zarr", ATTRS)
    database = {}
    for vid, (features, instances) in videos.items():
        store.write_video(
            vid, {"rgb": np.zeros((features, 4), np.float32)}, {"num_frames": _frames(features)}
        )
        database[vid] = {
            "subset": "training",
            "duration": _frames(features) / 30,
            "annotations": [
                {"segment": [_seconds(s), _seconds(e)], "label": label} for s, e, label in instances
            ],
        }
    annotations = parse_annotations({"database": database}, source="anno.json")
    return store, annotations


def test_crop_segments_match_actionformer_truncate_feats():
    segs = np.array([[10.0, 20.0], [28.0, 40.0], [33.0, 41.0], [60.0, 70.0]])
    bounds = window_bounds("actionformer", TIMING)
    assert bounds == (2.0, 2.0)
    # official, 100 features, max_seq_len 32, start 5:
    # segments [[5, 15], [23, 34], [28, 34]], labels [0, 1, 2]
    kept, keep = crop_segments(segs, 5, 32, 0.5, bounds)
    np.testing.assert_allclose(kept, [[5.0, 15.0], [23.0, 34.0], [28.0, 34.0]])
    assert keep.tolist() == [True, True, True, False]
    # the former bounds [4.5, 36.5]: [33, 41] keeps 3.5 / 8 < 0.5 and is dropped
    kept, keep = crop_segments(segs, 5, 32, 0.5, window_bounds("feature_range", TIMING))
    assert keep.tolist() == [True, True, False, False]
    np.testing.assert_allclose(kept, [[5.0, 15.0], [23.0, 31.5]])
    # official, a 20-feature video: crop_ratio draws 18 (from randint(18, 20)), start 1:
    # segments [[0, 4], [14, 18.5]]
    kept, _ = crop_segments(np.array([[1.0, 5.0], [15.0, 19.5]]), 1, 18, 0.5, bounds)
    np.testing.assert_allclose(kept, [[0.0, 4.0], [14.0, 18.5]])
    with pytest.raises(ValueError, match="crop_bounds"):
        window_bounds("nope", TIMING)  # type: ignore[arg-type]


def test_short_videos_are_cropped_by_crop_ratio(tmp_path):
    store, annotations = _store_and_annotations(
        tmp_path,
        {"short": (20, [(1.0, 5.0, "a"), (15.0, 19.0, "b")]), "empty": (20, [])},
    )
    labels = annotations.label_map()
    ds = FeatureDataset(store, annotations, "training", labels, max_seq_len=32, training=True)
    lengths = set()
    for epoch in range(40):
        ds.set_epoch(epoch)
        item = ds[ds.index_of("short")]
        # official: randint(max(round(0.9 * 20), 1), min(round(1.0 * 20), 20)) = 18..20
        assert 18 <= item.length <= 20 and 0 <= item.offset <= 20 - item.length
        assert ds[ds.index_of("empty")].length == 20  # no instance: never truncated
        lengths.add(item.length)
    assert lengths == {18, 19, 20}
    former = FeatureDataset(
        store, annotations, "training", labels, max_seq_len=32, training=True, crop_ratio=None
    )
    assert {former[0].length, former[1].length} == {20}
    with pytest.raises(DatasetError, match="crop_ratio"):
        FeatureDataset(store, annotations, "training", labels, crop_ratio=(0.9, 0.5))


def test_crop_tries_find_a_rare_window(tmp_path):
    # One 2-step action in 1000 features: 37 of the 969 windows of 32 keep it (p = 0.038).
    # 200 tries find one with probability 0.9996, 10 tries with 0.32.
    store, annotations = _store_and_annotations(tmp_path, {"long": (1000, [(500.0, 502.0, "a")])})
    labels = annotations.label_map()

    def found(tries: int) -> int:
        ds = FeatureDataset(
            store, annotations, "training", labels, max_seq_len=32, training=True, crop_tries=tries
        )
        hits = 0
        for epoch in range(20):
            ds.set_epoch(epoch)
            item = ds[0]
            assert item.length == 32
            hits += len(item.labels)
        return hits

    assert found(200) == 20
    assert found(10) < 15


PAIR_VIDEOS = {  # every two videos share "a", some also "b", "c" or "d"
    "p0": (200, [(20.0, 28.0, "a"), (90.0, 100.0, "b"), (150.0, 160.0, "c")]),
    "p1": (200, [(170.0, 178.0, "a"), (30.0, 40.0, "b"), (100.0, 110.0, "d")]),
    "p2": (160, [(80.0, 86.0, "a"), (10.0, 20.0, "c"), (130.0, 145.0, "d")]),
    "p3": (240, [(5.0, 12.0, "a"), (200.0, 215.0, "a"), (60.0, 80.0, "b")]),
}


@pytest.mark.parametrize("pair_crop", ["shared_action", "independent"])
def test_pair_crop_keeps_the_shared_action_in_both_crops(tmp_path, pair_crop):
    store, annotations = _store_and_annotations(tmp_path, PAIR_VIDEOS)
    labels = annotations.label_map()
    classes = {v: {labels.index(c) for *_, c in inst} for v, (_, inst) in PAIR_VIDEOS.items()}
    rows = [(a, b) for a in PAIR_VIDEOS for b in PAIR_VIDEOS if a != b]
    both, total = 0, 0
    for seed in range(8):
        base = FeatureDataset(
            store, annotations, "training", labels, max_seq_len=32, training=True, seed=seed
        )
        pairs = PairDataset(base, rows, pair_crop=pair_crop)
        for epoch in range(3):
            pairs.set_epoch(epoch)
            for i in range(len(pairs)):
                label = pairs.shared_label(i)  # drawn among the classes both videos have
                video_a, video_b = (base.video_ids[k] for k in pairs.pairs[i])
                assert label in classes[video_a] & classes[video_b]
                item_a, item_b = pairs[i]
                assert item_a.length == item_b.length == 32
                both += int(label in item_a.labels.tolist() and label in item_b.labels.tolist())
                total += 1
    if pair_crop == "shared_action":
        assert both == total  # both crops of every pair hold an action of the drawn class
    else:  # the former crop: the shared action is often missing from one side
        assert both < 0.5 * total
    with pytest.raises(DatasetError, match="pair_crop"):
        PairDataset(base, rows, pair_crop="both")  # type: ignore[arg-type]


def test_training_config_crop_keys():
    t = TrainingConfig()
    assert (t.crop_ratio, t.trunc_thresh, t.crop_tries) == ((0.9, 1.0), 0.5, 200)
    assert (t.crop_bounds, t.pair_crop, t.partner_draw) == (
        "actionformer",
        "independent",
        "table",
    )
    assert TrainingConfig(crop_ratio=None).crop_ratio is None
    with pytest.raises(ValidationError, match="crop_ratio"):
        TrainingConfig(crop_ratio=(0.9, 0.5))
    with pytest.raises(ValidationError, match="pair_crop"):
        TrainingConfig(pair_crop="both")
