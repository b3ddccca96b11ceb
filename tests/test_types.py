"""tal/ and features/ type-check with mypy (settings in pyproject.toml: the method interface,
the config and the checkpoint/inference data strictly)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a whole-tree static check (~20 s): make test and CI run it
def test_mypy_passes_on_tal_and_features(tmp_path):
    exe = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("mypy is not installed: `make test` installs it with the dev extras")
    done = subprocess.run(
        [exe, "--cache-dir", str(tmp_path / "cache")], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Success: no issues found" in done.stdout
