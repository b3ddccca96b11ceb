"""bench/gpu_check.sh: the script a GPU machine runs, checked here with the CPU standing in for
the GPU (``--accelerator cpu``) on a few small videos: set-up, every step, its page; and its
one-line refusal where no GPU is visible."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "data.synth.videos=6",
    "data.synth.min_duration=6",
    "data.synth.max_duration=9",
    "data.synth.size=64",
    "features.input_size=32",
    "model.embed_dim=32",
    "model.num_levels=3",
    "model.max_seq_len=16",
    "model.attention_window=5",
]


def _check(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    sets = [item for s in [*TINY, f"data.root={tmp_path / 'data'}"] for item in ("--set", s)]
    command = ["bash", str(REPO / "bench" / "gpu_check.sh"), *args, *sets]
    command += ["--out", str(tmp_path / "out"), "--results-dir", str(tmp_path)]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_every_step_runs_with_the_cpu_standing_in_and_writes_its_page(tmp_path):
    done = _check(
        tmp_path,
        "--accelerator",
        "cpu",
        "--epochs",
        "2",
        "--cpu-videos",
        "2",
        "--precisions",
        "float32",
        "bfloat16",
        "--net-size",
        "64",
        "--net-batch",
        "4",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"cpu float32: +[\d.]+ clips/s \(\d+ clips, 2 videos\)", out), out
    # the same network and videos in float32 agree exactly; bfloat16 rounds, within 5%
    same = re.search(r"cpu float32 : .*6 videos.* differ from the CPU's by (\S+) of", out)
    rounded = re.search(r"cpu bfloat16: .*6 videos.* differ from the CPU's by (\S+) of", out)
    assert same and float(same.group(1)) == 0.0, out
    assert rounded and 0 < float(rounded.group(1)) < 0.05, out
    assert re.search(r"cpu bfloat16: +[\d.]+ clips/s \(batch 4\); x[\d.]+ the CPU", out), out
    assert re.search(r"cpu: [\d.]+ s/epoch .*validation mAP [\d.]+", out), out
    assert re.search(r"cpu, gloo group of 1: [\d.]+ s/epoch, validation mAP [\d.]+", out), out
    store = tmp_path / "out" / "features_bfloat16.zarr"
    from features.store import FeatureStore

    fs = FeatureStore.open(store)
    assert fs.attrs["precision"] == "bfloat16" and len(fs.completed()) == 6
    page = (tmp_path / "gpu_check.md").read_text()
    assert "Written by `bench/gpu_check.py`" in page and "## Provenance" in page
    assert "the CPU (a dry run)" in page


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible here")
def test_without_a_gpu_it_says_so_in_one_line(tmp_path):
    done = _check(tmp_path, "--no-page")
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("gpu_check: no CUDA GPU is visible to torch")
    )
    assert not (tmp_path / "data").exists()  # refused before it made anything
