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
