"""FeatureDataset / PairDataset over a real (small) Zarr feature store."""

from __future__ import annotations

import logging
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from features.store import FeatureStore, num_features
from tal.data.annotations import LabelMap, parse_annotations
from tal.data.dataset import (
    DatasetError,
    FeatureDataset,
    PairDataset,
    collate,
    collate_pairs,
    crop_segments,
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
    "feature_dims": {"rgb": 1024, "flow": 1024},
}
# Steps of a time t (s): (30 t - 8) / 4. Seconds of a step s: (4 s + 8) / 30.
FRAMES = {"v1": 100, "v2": 400, "v4": 60, "v5": 40}  # -> 22, 97, 12, 7 features
DATABASE = {
    "v1": {
        "subset": "training",
        "duration": 3.34,
        "annotations": [
            {"segment": [1.0, 2.0], "label": "jump"},  # steps [5.5, 13.0]
            {"segment": [0.0, 0.5], "label": "run"},  # [-2, 1.75] -> [-0.5, 1.75]
            {"segment": [3.0, 3.3], "label": "jump"},  # [20.5, 22.75] -> [20.5, 21.5]
            {"segment": [3.31, 3.34], "label": "run"},  # after the last feature: dropped
        ],
    },
    "v2": {
        "subset": "training",
        "duration": 13.34,
        "annotations": [
            {"segment": [48 / 30, 88 / 30], "label": "run"},  # steps [10, 20]
            {"segment": [248 / 30, 288 / 30], "label": "jump"},  # steps [60, 70]
        ],
    },
    "v3": {
        "subset": "training",
        "duration": 5.0,
        "annotations": [{"segment": [1, 2], "label": "run"}],
    },
    "v4": {
        "subset": "validation",
        "duration": 2.0,
        "annotations": [{"segment": [0.5, 1.5], "label": "run"}],
    },
    "v5": {"subset": "training", "duration": 1.4, "annotations": []},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> FeatureStore:
    fs = FeatureStore.create(tmp_path_factory.mktemp("ds") / "feats.zarr", ATTRS)
    rng = np.random.default_rng(0)
    for vid, frames in FRAMES.items():  # v3 is annotated but never extracted
        rows = num_features(frames, 16, 4)
        feats = {m: rng.standard_normal((rows, 1024)).astype(np.float32) for m in ("rgb", "flow")}
        fs.write_video(vid, feats, {"num_frames": frames})
    return fs


@pytest.fixture(scope="module")
def annotations():
    return parse_annotations({"database": DATABASE}, source="anno.json")


@pytest.fixture(scope="module")
def labels(annotations) -> LabelMap:
    return annotations.label_map()


def _dataset(store, annotations, labels, subsets="training", **kwargs) -> FeatureDataset:
    return FeatureDataset(store, annotations, subsets, labels, **kwargs)


def test_segments_converted_to_steps_exactly(store, annotations, labels):
    ds = _dataset(store, annotations, labels)
    assert labels.names == ["jump", "run"]
    item = ds[ds.index_of("v1")]
    assert item.video_id == "v1"
    np.testing.assert_allclose(
        item.segments.numpy(), [[5.5, 13.0], [-0.5, 1.75], [20.5, 21.5]], atol=1e-6
    )
    assert item.segments.dtype == torch.float32 and item.labels.dtype == torch.int64
    assert item.labels.tolist() == [0, 1, 0]
    assert item.timing == FeatureTiming(fps=30.0, stride=4, clip_length=16)
    assert item.duration == 3.34  # the annotation's duration
    assert (item.num_features, item.offset, item.length) == (22, 0, 22)
    assert item.feats.shape == (2048, 22) and item.feats.dtype == torch.float32
    np.testing.assert_array_equal(item.feats.numpy(), store.read("v1").T)
    v4 = _dataset(store, annotations, labels, "val")[0]
    np.testing.assert_allclose(v4.segments.numpy(), [[1.75, 9.25]])
    empty = ds[ds.index_of("v5")]
    assert empty.segments.shape == (0, 2) and empty.labels.shape == (0,)


def test_missing_videos_listed_and_warned(store, annotations, labels, caplog):
    with caplog.at_level(logging.WARNING, logger="tal.data.dataset"):
        ds = _dataset(store, annotations, labels)
    assert ds.missing == ["v3"]
    assert ds.video_ids == ["v1", "v2", "v5"] and len(ds) == 3
    assert "v3" not in ds and "v1" in ds
    assert any("v3" in r.getMessage() and "1 of 4" in r.getMessage() for r in caplog.records)
    with pytest.raises(KeyError, match="v3"):
        ds.index_of("v3")
    both = _dataset(store, annotations, labels, ["training", "validation"])
    assert both.video_ids == ["v1", "v2", "v4", "v5"]


def test_no_usable_videos_names_store_annotations_and_subsets(tmp_path, annotations, labels):
    empty = FeatureStore.create(tmp_path / "empty.zarr", ATTRS)
    with pytest.raises(DatasetError, match=r"empty\.zarr.*anno\.json.*'training'.*none of the 4"):
        _dataset(empty, annotations, labels)
    only_v3 = parse_annotations({"database": {"v3": DATABASE["v3"]}}, source="other.json")
    with pytest.raises(DatasetError, match=r"other\.json.*\['test'\].*no video in these subsets"):
        _dataset(empty, only_v3, labels, "test")


def test_store_of_other_videos_is_refused_and_an_outlier_warned(store, annotations, labels, caplog):
    shifted = {vid: {**info, "duration": info["duration"] + 10} for vid, info in DATABASE.items()}
    other = parse_annotations({"database": shifted}, source="regenerated.json")
    with pytest.raises(
        DatasetError,
        match=r"regenerated\.json.*3 of 3 videos have a duration in the store that differs.*"
        r"v1 \(13\.34 s annotated, 3\.33333 s stored\).*tal extract --overwrite",
    ):
        _dataset(store, other, labels)
    one_off = {**DATABASE, "v2": {**DATABASE["v2"], "duration": 30.0}}
    with caplog.at_level(logging.WARNING, logger="tal.data.dataset"):
        ds = _dataset(store, parse_annotations({"database": one_off}, source="a.json"), labels)
    assert len(ds) == 3  # one outlier is only warned about
    assert any("v2 (30 s annotated, 13.3333 s stored)" in r.getMessage() for r in caplog.records)


def test_store_given_as_path_and_modality_selection(store, annotations, labels):
    ds = _dataset(store.location, annotations, labels, modalities="rgb")
    item = ds[0]
    assert item.feats.shape == (1024, 22) and ds.feat_dim == 1024
    np.testing.assert_array_equal(item.feats.numpy(), store.read("v1", "rgb").T)
    swapped = _dataset(store, annotations, labels, modalities=["flow", "rgb"])[0]
    assert swapped.feats.shape == (2048, 22)
    np.testing.assert_array_equal(swapped.feats[:1024].numpy(), store.read("v1", "flow").T)
    assert _dataset(store, annotations, labels).feat_dim == 2048
    with pytest.raises(
        DatasetError, match=r"has modalities \['rgb', 'flow'\]; asked for \['depth'\]"
    ):
        _dataset(store, annotations, labels, modalities=["depth"])


def test_float16_store_gives_float32(tmp_path):
    attrs = {**ATTRS, "dtype": "float16", "feature_dims": {"rgb": 8}}
    fs = FeatureStore.create(tmp_path / "half.zarr", attrs)
    fs.write_video("v", {"rgb": np.full((2, 8), 0.5)}, {"num_frames": 20})
    anns = parse_annotations({"database": {"v": {"subset": "test", "annotations": []}}})
    item = FeatureDataset(fs, anns, "test", LabelMap([]))[0]
    assert item.feats.dtype == torch.float32 and item.feats.shape == (8, 2)
    assert item.duration == pytest.approx(20 / 30)  # from the store: no annotated duration


def test_bad_arguments(store, annotations, labels):
    with pytest.raises(DatasetError, match=r"label 'run'.*1 labels"):
        _dataset(store, annotations, LabelMap(["jump"]))
    with pytest.raises(DatasetError, match="max_seq_len"):
        _dataset(store, annotations, labels, max_seq_len=0)
    with pytest.raises(DatasetError, match="trunc_threshold"):
        _dataset(store, annotations, labels, trunc_threshold=1.5)
    with pytest.raises(DatasetError, match="subsets"):
        _dataset(store, annotations, labels, [])


def test_crop_segments_by_hand():
    segs = np.array([[2.0, 10.0], [20.0, 30.0], [28.0, 40.0]])
    # window of features 25..34 covers steps [24.5, 34.5]
    kept, keep = crop_segments(segs, start=25, length=10, threshold=0.5)
    assert keep.tolist() == [False, True, True]  # overlaps 0, 5.5/10, 6.5/12
    np.testing.assert_allclose(kept, [[-0.5, 5.0], [3.0, 9.5]])
    kept, keep = crop_segments(segs, start=25, length=10, threshold=0.6)
    assert keep.tolist() == [False, False, False] and kept.shape == (0, 2)
    kept, keep = crop_segments(segs, start=0, length=50, threshold=1.0)
    np.testing.assert_allclose(kept, segs)


def test_training_crop_is_random_deterministic_and_keeps_instances(store, annotations, labels):
    full = _dataset(store, annotations, labels)
    whole = full[full.index_of("v2")]
    np.testing.assert_allclose(whole.segments.numpy(), [[10, 20], [60, 70]], atol=1e-5)
    ds = _dataset(store, annotations, labels, max_seq_len=32, training=True, seed=7)
    index = ds.index_of("v2")
    offsets = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        item = ds[index]
        assert item.feats.shape == (2048, 32) and item.length == 32
        assert item.num_features == 97 and 0 <= item.offset <= 97 - 32
        np.testing.assert_array_equal(
            item.feats.numpy(), store.read("v2")[item.offset : item.offset + 32].T
        )
        # ActionFormer's bounds: half a clip (16 frames / stride 4 / 2 = 2 steps) either side
        kept, keep = crop_segments(whole.segments.numpy(), item.offset, 32, 0.5, (2.0, 2.0))
        assert len(item.labels) >= 1  # retries found a window with an instance
        np.testing.assert_allclose(item.segments.numpy(), kept, atol=1e-5)
        assert item.labels.tolist() == whole.labels[torch.from_numpy(keep)].tolist()
        assert item.segments.min() >= -2.0 and item.segments.max() <= 34.0
        again = _dataset(store, annotations, labels, max_seq_len=32, training=True, seed=7)
        again.set_epoch(epoch)
        assert again[index].offset == item.offset  # same seed, epoch, index: same window
        offsets.append(item.offset)
    assert len(set(offsets)) > 1  # epochs draw different windows
    other = _dataset(store, annotations, labels, max_seq_len=32, training=True, seed=8)
    other_offsets = []
    for epoch in range(8):
        other.set_epoch(epoch)
        other_offsets.append(other[index].offset)
    assert other_offsets != offsets
    # 22 <= 32: crop_ratio (0.9, 1.0) crops it to 20..22 features (22: left whole)
    short = ds[ds.index_of("v1")]
    assert 20 <= short.length <= 22 and short.offset <= 22 - short.length
    whole_short = _dataset(
        store, annotations, labels, max_seq_len=32, training=True, seed=7, crop_ratio=None
    )[ds.index_of("v1")]
    assert (whole_short.length, whole_short.offset) == (22, 0)  # the former crop
    evaluation = _dataset(store, annotations, labels, max_seq_len=32, training=False)
    assert evaluation[index].length == 97 and evaluation[index].offset == 0


def test_crop_without_a_surviving_instance_returns_an_empty_window(store, annotations, labels):
    # Instances span 10 steps; no window of 5 features holds one whole.
    ds = _dataset(store, annotations, labels, max_seq_len=5, training=True, trunc_threshold=1.0)
    item = ds[ds.index_of("v2")]
    assert item.length == 5 and item.segments.shape == (0, 2) and item.labels.shape == (0,)


def test_collate_pads_masks_and_rounds_up(store, annotations, labels):
    v1 = _dataset(store, annotations, labels)[0]  # 22 features
    v4 = _dataset(store, annotations, labels, "validation")[0]  # 12 features
    batch = collate([v1, v4], divisible_by=8)
    assert batch.feats.shape == (2, 2048, 24) and batch.feats.dtype == torch.float32
    assert batch.masks.dtype == torch.bool
    assert batch.masks.sum(dim=1).tolist() == [22, 12]
    assert batch.masks[1, :12].all() and not batch.masks[1, 12:].any()
    torch.testing.assert_close(batch.feats[1, :, :12], v4.feats)
    assert (batch.feats[1, :, 12:] == 0).all() and (batch.feats[0, :, 22:] == 0).all()
    assert batch.video_ids == ["v1", "v4"]
    assert batch.segments[0] is v1.segments and batch.labels[1] is v4.labels
    assert batch.items == [v1, v4]
    assert collate([v1, v4], divisible_by=1).feats.shape[-1] == 22
    assert collate([v4], divisible_by=16).feats.shape[-1] == 16
    with pytest.raises(ValueError, match=r"'v1' has 22 features, more than max_len 20"):
        collate([v1, v4], divisible_by=8, max_len=20)
    with pytest.raises(ValueError, match="divisible_by"):
        collate([v1], divisible_by=0)
    rgb = _dataset(store, annotations, labels, "validation", modalities="rgb")[0]
    with pytest.raises(ValueError, match="channel"):
        collate([v1, rgb], divisible_by=4)


def test_pair_dataset_pairs_and_self_partner(store, annotations, labels, tmp_path, caplog):
    base = _dataset(store, annotations, labels)  # v1, v2, v5
    table = pa.table(
        {
            "video_a": ["v1", "v2", "v1", "v4"],
            "video_b": ["v2", "v1", "v3", "v1"],  # v3: not extracted; v4: not training
            "shared_labels": [["run"], ["run"], ["run"], ["run"]],
        }
    )
    with caplog.at_level(logging.WARNING, logger="tal.data.dataset"):
        pairs = PairDataset(base, table)
    assert "2 of 4 rows" in caplog.text
    assert pairs.dropped == [("v1", "v3"), ("v4", "v1")]
    assert pairs.self_paired == ["v5"]
    assert len(pairs) == 3
    got = [(a.video_id, b.video_id) for a, b in (pairs[i] for i in range(len(pairs)))]
    assert got == [("v1", "v2"), ("v2", "v1"), ("v5", "v5")]
    a, b = pairs[2]
    assert a is b
    listed = PairDataset(base, [("v1", "v2"), ("v2", "v1")])
    assert listed.pairs == pairs.pairs
    pq.write_table(table, tmp_path / "pairs.parquet")
    assert PairDataset(base, tmp_path / "pairs.parquet").pairs == pairs.pairs
    batch_a, batch_b = collate_pairs([pairs[0], pairs[2]], divisible_by=4)
    assert batch_a.video_ids == ["v1", "v5"] and batch_b.video_ids == ["v2", "v5"]
    assert batch_a.feats.shape == batch_b.feats.shape == (2, 2048, 100)  # 97 -> 100
    assert batch_a.masks.sum(dim=1).tolist() == [22, 7]
    assert batch_b.masks.sum(dim=1).tolist() == [97, 7]
    with pytest.raises(DatasetError, match=r"missing columns \['video_b'\]"):
        PairDataset(base, pa.table({"video_a": ["v1"]}))


def test_partners_drawn_each_epoch_walk_every_video_once(store, annotations, labels):
    base = _dataset(store, annotations, labels)  # v1, v2, v5
    rows = [("v1", "v2"), ("v1", "v5"), ("v2", "v1"), ("v2", "v5"), ("v5", "v1")]
    fixed = PairDataset(base, rows)
    assert len(fixed) == 5  # a row is an item: v1 and v2 twice each, beside the same partners
    drawn = PairDataset(base, rows, partner_draw="each_epoch")
    assert len(drawn) == 3
    assert drawn.candidates == {0: [1, 2], 1: [0, 2], 2: [0]}
    seen: dict[str, set[str]] = {"v1": set(), "v2": set(), "v5": set()}
    epochs = []
    for epoch in range(12):
        drawn.set_epoch(epoch)
        got = [(a.video_id, b.video_id) for a, b in (drawn[i] for i in range(len(drawn)))]
        assert [a for a, _ in got] == ["v1", "v2", "v5"]  # every video once, in table order
        for a, b in got:
            assert (a, b) in rows
            seen[a].add(b)
        epochs.append(got)
    assert seen == {"v1": {"v2", "v5"}, "v2": {"v1", "v5"}, "v5": {"v1"}}
    again = PairDataset(_dataset(store, annotations, labels), rows, partner_draw="each_epoch")
    again.set_epoch(7)
    assert again.pairs == [(base.index_of(a), base.index_of(b)) for a, b in epochs[7]]
    with pytest.raises(DatasetError, match="partner_draw must be 'table' or 'each_epoch'"):
        PairDataset(base, rows, partner_draw="step")  # type: ignore[arg-type]


def test_pair_crops_follow_the_epoch(store, annotations, labels):
    base = _dataset(store, annotations, labels, max_seq_len=32, training=True)
    pairs = PairDataset(base, [("v1", "v2")])
    offsets = set()
    for epoch in range(6):
        pairs.set_epoch(epoch)
        _, b = pairs[0]
        assert b.length == 32
        offsets.add(b.offset)
        assert pairs[0][1].offset == b.offset
    assert base.epoch == 5 and len(offsets) > 1


def test_pickles_for_dataloader_workers(store, annotations, labels):
    ds = _dataset(store, annotations, labels, max_seq_len=32, training=True, modalities="flow")
    ds.set_epoch(3)
    ds[1]  # fills the cache
    copy = pickle.loads(pickle.dumps(ds))
    assert copy.epoch == 3 and copy.missing == ["v3"]
    first, second = ds[1], copy[1]
    assert first.offset == second.offset
    torch.testing.assert_close(first.feats, second.feats)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, collate_fn=lambda items: collate(items, divisible_by=4)
    )
    shapes = [batch.feats.shape for batch in loader]
    assert shapes == [(2, 1024, 32), (1, 1024, 8)]


def test_weak_items_have_video_labels_and_long_videos_are_resampled(store, annotations, labels):
    ds = _dataset(store, annotations, labels, weak=True)
    v1 = ds[ds.index_of("v1")]
    # the classes of its instances (the one after the last feature included), no segments
    assert v1.labels.tolist() == [0, 1] and v1.segments.shape == (0, 2)
    assert ds[ds.index_of("v5")].labels.tolist() == []
    train = _dataset(store, annotations, labels, weak=True, training=True, max_seq_len=20)
    item = train[train.index_of("v2")]  # 97 features -> 20, one from each bin of ~4.85
    assert item.length == 20 and item.num_features == 97 and item.segments.shape == (0, 2)
    full = store.read("v2").T
    picks = [int(np.flatnonzero((full == item.feats.numpy()[:, [j]]).all(0))[0]) for j in range(20)]
    assert all(97 * j / 20 <= p < 97 * (j + 1) / 20 for j, p in enumerate(picks))
    train.set_epoch(1)
    assert not torch.equal(train[train.index_of("v2")].feats, item.feats)  # new draw per epoch
    assert train[train.index_of("v1")].length == 20  # 22 > 20: resampled, not cropped
