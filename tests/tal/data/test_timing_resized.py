"""Resized (ActivityNet-style) features on the real ActivityNet 1.3 annotations: with each
video's own rate every action lies inside its features; one global rate clips and drops.

Real annotations (../shared/data/activitynet13_bmn, BMN layout, read with the project's
importer) and synthetic features: T = 100 random steps for a fixed sample of 50 annotated
videos, as BMN's fixed-length ActivityNet features have. Skipped when the data is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from features.importing import import_features
from tal.data.annotations import AnnotationSet
from tal.data.dataset import FeatureDataset
from tal.data.importers import import_bmn_activitynet
from tal.postprocess import to_seconds

REPO_ROOT = Path(__file__).resolve().parents[3]
SAMPLE, STEPS = 50, 100
SUBSETS = ("training", "validation")


@pytest.fixture(scope="module")
def anet_sample(tmp_path_factory) -> tuple[AnnotationSet, Path]:
    """50 annotated ActivityNet videos (seeded choice) and a folder of [100, 8] .npy files."""
    shared = Path(os.environ.get("TAL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    source = shared / "activitynet13_bmn" / "anet_anno_action.json"
    if not source.is_file():
        pytest.skip(f"ActivityNet 1.3 annotations not found at {source}")
    full = import_bmn_activitynet(source)
    annotated = sorted(v.video_id for v in full if v.instances and v.subset in SUBSETS)
    chosen = np.random.default_rng(0).choice(annotated, SAMPLE, replace=False)
    sample = AnnotationSet({vid: full.videos[vid] for vid in sorted(chosen)}, source=str(source))
    folder = tmp_path_factory.mktemp("anet_npy")
    rng = np.random.default_rng(1)
    for vid in sample.videos:
        np.save(folder / f"v_{vid}.npy", rng.standard_normal((STEPS, 8)).astype(np.float32))
    return sample, folder


def _durations(sample: AnnotationSet) -> dict[str, tuple[float, float | None]]:
    return {v.video_id: (v.duration, v.fps) for v in sample if v.duration is not None}


def _outcome(dataset: FeatureDataset, sample: AnnotationSet) -> tuple[int, int, int]:
    """(instances, clipped, dropped) of the dataset against the annotated seconds."""
    total = clipped = dropped = 0
    for i, vid in enumerate(dataset.video_ids):
        item = dataset.load(i)
        instances = sample.videos[vid].instances
        total += len(instances)
        dropped += len(instances) - len(item.segments)
        wanted = item.timing.to_steps(np.array([[x.start, x.end] for x in instances]))
        kept = item.segments.numpy().astype(np.float64)
        if len(kept) == len(wanted):
            clipped += int((np.abs(kept - wanted) > 1e-3).any(axis=1).sum())
        else:  # count what no longer matches a whole annotated segment
            whole = [(np.abs(wanted - seg) <= 1e-3).all(axis=1).any() for seg in kept]
            clipped += len(kept) - int(sum(whole))
    return total, clipped, dropped


def test_resized_import_keeps_every_action_inside_its_video(anet_sample, tmp_path):
    sample, folder = anet_sample
    store = tmp_path / "resized.zarr"
    summary = import_features(
        folder,
        store,
        modalities=["rgb"],
        durations=_durations(sample),
        resized=True,
        file_prefix="v_",
    )
    assert len(summary.imported) == SAMPLE and not summary.failed
    dataset = FeatureDataset(store, sample, SUBSETS, sample.label_map())
    assert len(dataset) == SAMPLE
    total, clipped, dropped = _outcome(dataset, sample)
    assert total >= SAMPLE and (clipped, dropped) == (0, 0)
    for i, vid in enumerate(dataset.video_ids):
        item = dataset.load(i)
        video = sample.videos[vid]
        seconds = np.array([[x.start, x.end] for x in video.instances])
        # ActionFormer's mapping of fixed-length features: seconds * T / duration - 0.5
        expected = seconds * STEPS / video.duration - 0.5
        np.testing.assert_allclose(item.segments.numpy(), expected, atol=1e-4)
        # steps -> seconds -> steps, and the inference path's conversion back to seconds
        np.testing.assert_allclose(item.timing.to_steps(item.timing.to_seconds(expected)), expected)
        found = to_seconds(
            vid,
            expected,
            np.ones(len(expected)),
            np.zeros(len(expected), dtype=np.int64),
            item.timing,
            item.duration,
            ["x"],
        )
        np.testing.assert_allclose(np.stack([found.start, found.end], 1), seconds, atol=1e-9)


def test_one_global_rate_clips_and_drops_actions(anet_sample, tmp_path):
    """The old mode with ActionFormer's ActivityNet settings (stride 16, clip 16, 25 fps)
    on the same T = 100 files: every video spans 64 s whatever its duration."""
    sample, folder = anet_sample
    store = tmp_path / "global.zarr"
    import_features(
        folder,
        store,
        stride=16,
        clip_length=16,
        fps=25.0,
        modalities=["rgb"],
        durations=_durations(sample),
        file_prefix="v_",
    )
    dataset = FeatureDataset(store, sample, SUBSETS, sample.label_map())
    total, clipped, dropped = _outcome(dataset, sample)
    longer = sum(v.duration > (99 * 16 + 16) / 25 for v in sample)
    assert longer > 0 and clipped > 0 and dropped > 0
    print(
        f"global rate on {SAMPLE} videos: {longer} longer than 64 s, "
        f"{clipped}/{total} actions clipped, {dropped}/{total} dropped"
    )
