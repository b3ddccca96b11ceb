"""Repository-wide rules: ruff lint and format, and the import direction of DESIGN.md."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is not installed: `make test` installs it with the dev extras")
    return [exe]


def test_ruff_lint():
    proc = subprocess.run([*_ruff(), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format():
    proc = subprocess.run(
        [*_ruff(), "format", "--check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


FORBIDDEN = {
    "tal": r"(ray|prefect|mlflow|pipelines|flows)",
    "features": r"(tal|pipelines|flows|ray|prefect|mlflow)",
    "pipelines": r"(flows)",
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package):
    pattern = re.compile(rf"^\s*(import|from)\s+{FORBIDDEN[package]}\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / package).rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, f"{package}/ must not import {FORBIDDEN[package]}: {offenders}"
