"""Trimmed clip windows: placement, background, labels, determinism, decoding, bad input."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from tal.backbone.clips import (
    BackboneError,
    ClipWindow,
    build_clip_set,
    class_names,
    plan_windows,
    video_timing,
)
from tal.data.annotations import Instance, LabelMap, Video, load_annotations

LABELS = LabelMap(["jump", "run"])


def _videos() -> tuple[list[Video], dict[str, tuple[int, float]]]:
    in_a = [Instance("jump", 2.0, 4.0), Instance("run", 9.0, 16.0)]
    in_b = [Instance("run", 0.0, 0.5), Instance("jump", 11.0, 12.0)]
    videos = [
        Video("a", "training", 20.0, 10.0, in_a),
        Video("b", "training", 12.0, 10.0, in_b),
        Video("c", "training", 8.0, 10.0, []),
    ]
    return videos, {"a": (200, 10.0), "b": (120, 10.0), "c": (80, 10.0)}


def _overlaps(window: ClipWindow, inst: Instance) -> bool:
    return window.start_time < inst.end and window.end_time > inst.start


def test_windows_inside_videos_and_labelled():
    videos, timing = _videos()
    windows = plan_windows(videos, timing, LABELS, clip_length=16, background_ratio=1.0)
    by_id = {v.video_id: v for v in videos}
    assert windows
    for w in windows:
        assert w.length == 16 and w.start >= 0 and w.start + w.length <= timing[w.video_id][0]
        if w.label < len(LABELS):  # an action window sits on an instance of its class
            assert any(
                _overlaps(w, i) and LABELS.index(i.label) == w.label
                for i in by_id[w.video_id].instances
            )
    actions = [w for w in windows if w.label < len(LABELS)]
    assert len(actions) == 4  # one per instance
    # centred on the instance, clamped at the video's start and end
    assert ClipWindow("a", 22, 16, 0, 10.0) in actions  # centre 3.0 s = frame 30
    assert ClipWindow("b", 0, 16, 1, 10.0) in actions
    assert ClipWindow("b", 104, 16, 0, 10.0) in actions


def test_background_windows_overlap_no_action():
    videos, timing = _videos()
    windows = plan_windows(videos, timing, LABELS, clip_length=16, background_ratio=2.0, seed=3)
    background = [w for w in windows if w.label == len(LABELS)]
    assert len(background) == 8  # 2 x 4 action windows
    by_id = {v.video_id: v for v in videos}
    for w in background:
        assert not any(_overlaps(w, i) for i in by_id[w.video_id].instances)
    assert len(set(background)) == len(background)


def test_background_ratio_zero_and_too_little_background():
    videos, timing = _videos()
    none = plan_windows(videos, timing, LABELS, clip_length=16, background_ratio=0.0)
    assert all(w.label < len(LABELS) for w in none)
    # one short video fully covered by an action: no background to draw, no crash
    covered = [Video("x", "training", 2.0, 10.0, [Instance("run", 0.0, 2.0)])]
    windows = plan_windows(covered, {"x": (20, 10.0)}, LABELS, 16, background_ratio=5.0)
    assert [w.label for w in windows] == [1]


def test_deterministic_for_a_seed():
    videos, timing = _videos()
    args = (videos, timing, LABELS, 16, 1, 1.0)
    assert plan_windows(*args, seed=7) == plan_windows(*args, seed=7)
    assert plan_windows(*args, seed=7) != plan_windows(*args, seed=8)


def test_clips_per_instance_spreads_over_long_instances():
    videos, timing = _videos()
    windows = plan_windows(videos, timing, LABELS, 16, clips_per_instance=3, background_ratio=0)
    run_a = [w for w in windows if w.video_id == "a" and w.label == 1]
    assert [w.start for w in run_a] == [90, 117, 144]  # 9..16 s spread, first and last inside
    jump_b = [w for w in windows if w.video_id == "b" and w.label == 0]
    assert len(jump_b) == 1  # shorter than a clip: one window


def test_videos_without_timing_are_left_out():
    videos, timing = _videos()
    del timing["a"]
    assert "a" not in {w.video_id for w in plan_windows(videos, timing, LABELS, 16, 1, 5.0)}


def test_class_names_add_background():
    assert class_names(LABELS) == ["jump", "run", "background"]
    assert class_names(LabelMap(["background", "run"]))[-1] == "_background"


def test_build_rgb_and_flow_clips(tiny_synth):
    ann = load_annotations(tiny_synth.annotations)
    videos = tiny_synth.out_dir / "videos"
    common = {"clip_length": 8, "input_size": 32, "fps": 10.0, "seed": 0}
    rgb = build_clip_set(ann, videos, ["training"], **common)
    n_actions = sum(len(v.instances) for v in ann.subset("training"))
    assert rgb.clips.shape == (len(rgb), 8, 32, 32, 3) and rgb.clips.dtype == np.uint8
    assert (rgb.labels < 3).sum() == n_actions
    assert (rgb.labels == 3).sum() == round(0.5 * n_actions)
    assert rgb.label_names[-1] == "background" and len(rgb.label_names) == 4
    assert rgb.clips.std() > 0 and not rgb.skipped
    again = build_clip_set(ann, videos, ["training"], **common)
    assert np.array_equal(again.clips, rgb.clips) and again.windows == rgb.windows

    flow = build_clip_set(ann, videos, ["training"], modality="flow", flow_method="dis", **common)
    assert flow.clips.shape == (len(rgb), 8, 32, 32, 2) and flow.clips.dtype == np.float16
    assert flow.windows == rgb.windows
    assert np.abs(flow.clips).max() <= 1.0 and np.abs(flow.clips).max() > 0


def test_undecodable_video_is_skipped_with_warning(tiny_synth, tmp_path, caplog):
    ann = load_annotations(tiny_synth.annotations)
    folder = tmp_path / "videos"
    shutil.copytree(tiny_synth.out_dir / "videos", folder)
    broken = folder / f"{ann.subset('training')[0].video_id}.mp4"
    broken.write_bytes(b"not a video at all")
    with caplog.at_level(logging.WARNING):
        clips = build_clip_set(ann, folder, ["training"], clip_length=8, input_size=32, fps=10.0)
    assert len(clips.skipped) == 1 and str(broken) in clips.skipped[0]
    assert str(broken) in caplog.text
    assert {w.video_id for w in clips.windows} == {v.video_id for v in ann.subset("training")[1:]}
    timing, files, skipped = video_timing(ann.subset("training"), folder, 10.0, [".mp4"])
    assert broken.stem not in timing and len(files) == len(ann.subset("training")) - 1
    assert skipped == clips.skipped


def test_no_clips_is_a_clear_error(tiny_synth, tmp_path):
    ann = load_annotations(tiny_synth.annotations)
    args = {"clip_length": 8, "input_size": 32, "fps": 10.0}
    for video in ann.subset("validation"):
        video.instances.clear()
    with pytest.raises(BackboneError, match=r"annotations\.json: subset validation: no action"):
        build_clip_set(ann, tiny_synth.out_dir / "videos", ["validation"], **args)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BackboneError, match=r"subset training: no clips .* could not be decoded"):
        build_clip_set(ann, empty, ["training"], **args)
