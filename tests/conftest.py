"""Shared fixtures: where the real data of ../shared/data lives."""

from __future__ import annotations

import os
from pathlib import Path

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
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
