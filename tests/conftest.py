"""Shared fixtures: where the real data of ../shared/data lives."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real annotations/videos folder: $TAL_SHARED_DATA or ../shared/data beside the repo."""
    return Path(os.environ.get("TAL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "README.md").is_file():
        pytest.fail(
            f"real test data not found at {path}: set TAL_SHARED_DATA to the shared/data folder"
        )
    return path


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A small `tal synth` dataset (8 videos, 3 classes, 64 px, 10 fps, 6-9 s), made once."""
    from tal.synth import generate_dataset

    root = tmp_path_factory.mktemp("tiny_synth")
    return generate_dataset(
        root, videos=8, classes=3, seed=3, size=64, fps=10.0, min_duration=6.0,
        max_duration=9.0, workers=2,
    )  # fmt: skip


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance with 2 CPUs for the whole session (started once: it takes seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
            configure_logging=False,
        )  # fmt: skip
    yield ray
    ray.shutdown()


TOY_FPS, TOY_DIM, TOY_T = 4.0, 16, 64
TOY_ATTRS = {
    "extractor": "toy", "weights_digest": {"rgb": "0" * 64, "flow": "1" * 64},
    "weights_origin": {"rgb": "toy", "flow": "toy"}, "clip_length": 1, "stride": 1, "fps": TOY_FPS,
    "input_size": 1, "dtype": "float32", "modalities": ["rgb", "flow"],
    "feature_dims": {"rgb": TOY_DIM, "flow": TOY_DIM},
}  # fmt: skip


@pytest.fixture(scope="session")
def toy_store(tmp_path_factory):
    """A feature store the localizer can learn quickly: 18 videos of 64 features (16 s, 4 fps,
    stride 1, clip 1), 2 classes, 1-2 actions each marked by a class pattern; 12 training and
    6 validation videos. Returns (root, annotations.json, store)."""
    from features.store import FeatureStore

    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    fs = FeatureStore.create(root / "feats.zarr", TOY_ATTRS)
    patterns = rng.normal(size=(2, 2 * TOY_DIM)).astype(np.float32)
    database = {}
    for v in range(18):
        vid = f"toy_{v:02d}"
        x = rng.normal(scale=0.5, size=(TOY_T, 2 * TOY_DIM)).astype(np.float32)
        annotations = []
        starts = [int(rng.integers(2, 24)), int(rng.integers(34, 50))][: 1 + v % 2]
        for start in starts:
            length, label = int(rng.integers(6, 13)), int(rng.integers(0, 2))
            x[start : start + length] += patterns[label]
            # features start..start+length-1 <-> seconds [start/fps, (start+length)/fps]
            annotations.append(
                {
                    "segment": [start / TOY_FPS, (start + length) / TOY_FPS],
                    "label": f"class_{label}",
                }
            )
        fs.write_video(
            vid,
            {"rgb": x[:, :TOY_DIM], "flow": x[:, TOY_DIM:]},
            {"num_frames": TOY_T, "fps": TOY_FPS},
        )
        subset = "training" if v < 12 else "validation"
        database[vid] = {"subset": subset, "duration": TOY_T / TOY_FPS, "annotations": annotations}
    fs.write_manifest()
    ann = root / "annotations.json"
    ann.write_text(json.dumps({"database": database}))
    return root, ann, root / "feats.zarr"
