"""Shared fixtures: where the real data of ../shared/data lives."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


# test files that bring up a whole loopback stack (`ray start --head` records "the" local
# cluster in /tmp/ray): under pytest-xdist they run one after another on one worker
STACK_FILES = ("test_local_stack.py", "test_cluster_stack.py", "test_stack_faults.py")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under ``pytest -n N --dist loadgroup`` (``make test``): a file's tests stay together on
    one worker (its module fixtures are made once), the stack files share one worker, and they
    are handed out first, since they are the longest group."""
    if not hasattr(config, "workerinput"):  # not an xdist worker
        return
    for item in items:
        name = item.path.name
        group = "stack" if name in STACK_FILES else str(item.path.relative_to(REPO_ROOT))
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: item.path.name not in STACK_FILES)  # stable: stack first


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


def _tiny_pipeline_config(run_dir: Path, name: str = "tiny", **synth) -> dict:
    """A whole-pipeline config that runs in seconds: a synthetic dataset (8 videos of 6-9 s
    unless ``synth`` changes it), 32 px features, a small I2Net, 2 epochs on 2 Ray workers."""
    return {
        "name": name,
        "dataset": name,
        "seed": 0,
        "run_dir": str(run_dir),
        "data": {
            "synth": {
                "videos": 8,
                "classes": 3,
                "seed": 3,
                "size": 64,
                "fps": 10,
                "min_duration": 6,
                "max_duration": 9,
                **synth,
            }
        },
        "features": {
            "fps": 10,
            "input_size": 32,
            "clip_length": 8,
            "stride": 4,
            "flow_method": "dis",
            "dtype": "float16",
            "num_actors": 1,
        },
        "model": {
            "embed_dim": 32,
            "num_heads": 4,
            "num_levels": 3,
            "max_seq_len": 16,
            "attention_window": 5,
        },
        "training": {"epochs": 2, "eval_every": 2, "batch_size": 2, "num_workers": 2},
    }


@pytest.fixture(scope="session")
def tiny_pipeline_config():
    """Builds a config of the whole pipeline that runs in seconds (see _tiny_pipeline_config)."""
    return _tiny_pipeline_config


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A small `tal synth` dataset (8 videos, 3 classes, 64 px, 10 fps, 6-9 s), made once."""
    from tal.synth import generate_dataset

    root = tmp_path_factory.mktemp("tiny_synth")
    return generate_dataset(
        root,
        videos=8,
        classes=3,
        seed=3,
        size=64,
        fps=10.0,
        min_duration=6.0,
        max_duration=9.0,
        workers=2,
    )


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """Runs set torch's thread count from their config (``training.cpus_per_worker``); each
    test starts from the session's count, whatever the tests before it ran."""
    import torch

    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _unit_tier_starts_no_ray(request):
    """In the unit tier (``-m "not slow"``, ``make test-fast``) a test that leaves Ray running
    fails: Ray, servers and jobs belong to tests marked slow."""
    yield
    if "not slow" not in (request.config.option.markexpr or ""):
        return
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
        pytest.fail(f"{request.node.nodeid} started Ray: mark it slow (pytest.mark.slow)")


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray instance with 2 CPUs for the whole session (started once: it takes seconds),
    on 127.0.0.1 only as the product's."""
    from pipelines.ray_env import keep_ray_on_loopback

    keep_ray_on_loopback()
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()


TOY_FPS, TOY_DIM, TOY_T = 4.0, 16, 64
TOY_ATTRS = {
    "extractor": "toy",
    "weights_digest": {"rgb": "0" * 64, "flow": "1" * 64},
    "weights_origin": {"rgb": "toy", "flow": "toy"},
    "clip_length": 1,
    "stride": 1,
    "fps": TOY_FPS,
    "input_size": 1,
    "dtype": "float32",
    "modalities": ["rgb", "flow"],
    "feature_dims": {"rgb": TOY_DIM, "flow": TOY_DIM},
}


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
