"""The synthetic benchmark: decodable H.264, strict annotations, determinism, content."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import decord
import numpy as np
import pytest

from tal.config import SynthConfig
from tal.data.annotations import SUBSETS, load_annotations
from tal.synth import SynthSummary, generate_dataset
from tal.synth.classes import MAX_CLASSES, MOTIONS, action_pose, class_specs
from tal.synth.encode import rgb_to_yuv420p, write_h264
from tal.synth.generate import assign_subsets
from tal.synth.plan import plan_video
from tal.synth.render import render_frames

TINY = {
    "videos": 5,
    "classes": 3,
    "size": 64,
    "fps": 15.0,
    "min_duration": 6.0,
    "max_duration": 10.0,
}


def _generate(path: Path, **overrides) -> SynthSummary:
    return generate_dataset(path, **{**TINY, "seed": 3, **overrides})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> SynthSummary:
    return _generate(tmp_path_factory.mktemp("tiny"))


def _meta(summary: SynthSummary) -> dict:
    return json.loads((summary.out_dir / "synth.json").read_text())


def _decode(path: Path) -> np.ndarray:
    vr = decord.VideoReader(str(path))
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def _frame_hashes(summary: SynthSummary) -> dict[str, str]:
    return {
        video_id: hashlib.sha256(
            _decode(summary.out_dir / "videos" / f"{video_id}.mp4")
        ).hexdigest()
        for video_id in summary.frames
    }


def test_videos_decode_with_recorded_frames_size_and_fps(tiny):
    meta = _meta(tiny)
    assert set(meta["videos"]) == set(tiny.frames) and len(tiny.frames) == TINY["videos"]
    for video_id, info in meta["videos"].items():
        vr = decord.VideoReader(str(tiny.out_dir / info["file"]))
        assert len(vr) == info["frames"] == tiny.frames[video_id]
        assert vr[0].shape == (info["height"], info["width"], 3) == (64, 64, 3)
        assert vr.get_avg_fps() == pytest.approx(TINY["fps"], rel=1e-3)
        assert vr[len(vr) - 1].shape == (64, 64, 3)


def test_annotations_load_strictly_with_segments_inside_the_video(tiny):
    annotations = load_annotations(tiny.annotations)
    meta = _meta(tiny)
    ids = {c["name"]: c["id"] for c in meta["classes"]}
    assert list(ids) == tiny.class_names
    assert annotations.num_instances() == tiny.instances > TINY["videos"]
    for video in annotations:
        assert video.fps == TINY["fps"]
        assert video.duration == pytest.approx(tiny.frames[video.video_id] / TINY["fps"])
        assert video.instances, f"{video.video_id} has no action"
        for inst in video.instances:
            assert 0 <= inst.start < inst.end <= video.duration
            assert inst.label_id == ids[inst.label]
            # Segments lie on frame boundaries.
            assert inst.start * TINY["fps"] == pytest.approx(round(inst.start * TINY["fps"]))


def test_metadata_params_match_the_config_schema(tiny):
    params = _meta(tiny)["params"]
    # without a preset, synth.json has no "preset" key (the file is what it was before presets)
    assert params == SynthConfig(**TINY, seed=3).model_dump(exclude_none=True)
    assert "preset" not in params


def test_without_a_preset_the_metadata_is_byte_for_byte_what_it_was_before_presets(tiny):
    # sha256 of the files the generator wrote for TINY, seed 3 before presets existed
    # (commit 04069a3); annotations and metadata depend on the plans only, not the encoder
    digest = {
        "annotations.json": "81e7b64d97f07d4f56057762acab2761bc7c2b31ee8567dbdd79b58cc10e0bc7",
        "synth.json": "b9d789684a366f7a2708a9ae5a466723e594f8427dfb3259b5ddbe4a945ce2d5",
    }
    for name, expected in digest.items():
        assert hashlib.sha256((tiny.out_dir / name).read_bytes()).hexdigest() == expected, name


def test_every_subset_is_present_and_the_split_is_roughly_60_20_20(tiny):
    assert {v.subset for v in load_annotations(tiny.annotations)} == set(SUBSETS)
    for n in range(3, 60):
        split = assign_subsets(n, seed=0)
        assert len(split) == n and set(split) == set(SUBSETS)
        if n >= 20:
            assert abs(split.count("training") / n - 0.6) < 0.1
    assert assign_subsets(24, 0) == assign_subsets(24, 0) != assign_subsets(24, 1)


@pytest.mark.slow
def test_same_seed_same_dataset_for_any_workers_and_other_seed_differs(tiny, tmp_path):
    again = _generate(tmp_path / "again", workers=2)
    assert again.annotations.read_bytes() == tiny.annotations.read_bytes()
    assert (again.out_dir / "synth.json").read_bytes() == (tiny.out_dir / "synth.json").read_bytes()
    assert _frame_hashes(again) == _frame_hashes(tiny)
    other = _generate(tmp_path / "other", seed=4)
    assert other.annotations.read_bytes() != tiny.annotations.read_bytes()
    assert set(_frame_hashes(other).values()).isdisjoint(_frame_hashes(tiny).values())


def test_motion_matters_the_actor_moves_more_in_its_action_than_while_idle(tiny):
    """Inside the actor's action box, frame differences rise from the idle lead-in."""
    ratios = []
    for info in _meta(tiny)["videos"].values():
        frames = _decode(tiny.out_dir / info["file"]).astype(np.float32)
        diff = np.abs(np.diff(frames, axis=0)).mean(axis=3)  # diff[k]: frame k -> k + 1
        for inst in info["instances"]:
            x0, y0, x1, y1 = inst["box"]
            start, end = inst["action_frames"]
            appear = inst["visible_frames"][0]
            region = diff[:, y0:y1, x0:x1].mean(axis=(1, 2))
            idle = region[appear + 7 : start - 1]  # after the fade-in, before the onset
            if len(idle) >= 3:
                ratios.append(region[start : end - 1].mean() / max(idle.mean(), 1e-3))
    assert len(ratios) >= TINY["videos"]
    assert min(ratios) > 1.0, ratios
    assert np.median(ratios) > 1.5, ratios


def test_progress_reports_each_video_and_a_smaller_rerun_removes_stale_videos(tmp_path):
    calls = []
    _generate(
        tmp_path, videos=4, min_duration=3.5, max_duration=3.5, progress=lambda *a: calls.append(a)
    )
    assert calls == [(i + 1, 4, f"synth_000{i}") for i in range(4)]
    summary = _generate(tmp_path, videos=3, min_duration=3.5, max_duration=3.5)
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [
        f"synth_000{i}.mp4" for i in range(3)
    ]
    assert all(len(v.instances) >= 1 for v in load_annotations(summary.annotations))


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"videos": 2}, "videos"),
        ({"classes": 1}, "classes"),
        ({"classes": MAX_CLASSES + 1}, "classes"),
        ({"size": 63}, "size"),
        ({"size": 16}, "size"),
        ({"fps": 0}, "fps"),
        ({"fps": float("nan")}, "fps"),
        ({"seed": -1}, "seed"),
        ({"min_duration": 1.0, "max_duration": 2.0}, "min_duration"),
        ({"min_duration": 9.0, "max_duration": 8.0}, "max_duration"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_argument(tmp_path, overrides, name):
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        _generate(tmp_path / "out", **overrides)
    assert not (tmp_path / "out").exists()


def test_classes_share_shapes_and_motions_so_neither_alone_names_a_class():
    specs = class_specs(MAX_CLASSES)
    assert len({s.name for s in specs}) == MAX_CLASSES
    assert specs[0].name == "bounce_disc"
    for n in (6, MAX_CLASSES):
        shapes = [s.shape for s in specs[:n]]
        assert all(shapes.count(shape) >= 2 for shape in shapes)
    motions = [s.motion for s in specs]
    assert all(motions.count(m) == 2 for m in motions)


@pytest.mark.parametrize("motion", [m.name for m in MOTIONS])
def test_every_motion_starts_and_ends_in_the_rest_pose(motion):
    rng = np.random.default_rng(0)
    duration = 3.0
    t = np.linspace(-1.0, duration + 1.0, 401)
    pose = action_pose(motion, t, duration, 3, 5.0 if motion != "blink" else 0.7, 1, rng)
    rest = (t < 0) | (t > duration)
    # each pose channel and its value at rest
    channels = [(pose.dx, 0), (pose.dy, 0), (pose.angle, 0)]
    channels += [(pose.sx, 1), (pose.sy, 1), (pose.bright, 1)]
    for values, neutral in channels:
        assert np.all(values[rest] == neutral)
    inside = (t > 0.05) & (t < duration - 0.05)
    change = sum(np.abs(values - neutral) for values, neutral in channels)
    assert change[inside].mean() > 0.1
    if motion not in ("shake", "rotate"):  # shake is jitter; a rotation ends a whole turn on
        near_ends = (np.abs(t) < 0.01) | (np.abs(t - duration) < 0.01)
        assert change[near_ends].max() < 0.2


def test_the_encoder_is_deterministic_whatever_memory_held_before(tmp_path):
    # With B-frames and mbtree on, libx264 gave a different bitstream almost every run here.
    plan = plan_video(3, 2, class_specs(3), 64, 15.0, 6.0, 6.0)
    frames = list(render_frames(plan.background, plan.sprites, plan.frames, 64, [3, 2, 1]))
    rng = np.random.default_rng(0)
    digests = set()
    for k in range(4):
        junk = [
            rng.integers(0, 256, int(rng.integers(10**3, 2 * 10**6)), np.uint8) for _ in range(5)
        ]
        del junk
        assert write_h264(tmp_path / f"{k}.mp4", frames, 15.0) == len(frames)
        digests.add(hashlib.sha256((tmp_path / f"{k}.mp4").read_bytes()).hexdigest())
    assert len(digests) == 1
    decoded = _decode(tmp_path / "0.mp4").astype(np.int16)
    assert np.abs(decoded - np.stack(frames)).mean() < 4.0


def test_rgb_to_yuv420p_matches_bt601_on_flat_colours():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[:, :, 0] = 255  # pure red: Y 81.5, U 90, V 240 in BT.601 TV range
    yuv = rgb_to_yuv420p(rgb)
    assert yuv.shape == (6, 6)  # 4 rows of Y, then U (2x3) and V (2x3)
    assert np.all(yuv[:4] == 82) and np.all(yuv[4] == 90) and np.all(yuv[5] == 240)
