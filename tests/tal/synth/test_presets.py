"""Presets of `tal synth`: sizes, each scenario's promise, config/CLI resolution, rendering.

Most checks read plans only (``iter_plans``: no rendering); the few that render use 64 px
videos of a few seconds.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from pydantic import ValidationError

from tal.config import SynthConfig
from tal.data.annotations import load_annotations
from tal.synth import generate_dataset
from tal.synth.classes import CUE_SHAPES, MOTIONS, SHAPES, weak_class_specs
from tal.synth.generate import iter_plans
from tal.synth.plan import PlannedInstance, VideoPlan
from tal.synth.presets import (
    PLAIN_DEFAULTS,
    PRESET_NAMES,
    PRESETS,
    PresetName,
    get_preset,
    resolve_sizes,
)
from tal.synth.render import Camera, render_frames
from tal.synth.scenario import (
    _sway_and_bursts,
    plan_scenario_video,
    preset_class_specs,
    scenario_class_specs,
)
from tal.synth.stats import presets_table

BUDGET_S = 1800.0
"""Total video seconds a preset may hold (I3D RGB + flow on 2 cores in about 20 minutes)."""


@dataclass
class _Video:
    """What the tests need of a plan (plans hold textures: too big to keep 300 of)."""

    subset: str
    frames: int
    fps: float
    instances: list[PlannedInstance]
    camera: Camera | None


@functools.cache
def _planned(name: str) -> list[_Video]:
    """Every video of preset ``name`` at its default sizes and seed 0, planned once."""
    return [
        _Video(subset, p.frames, p.fps, p.instances, p.camera)
        for subset, p in iter_plans(preset=name)
    ]


def _count(name: str, subset: str) -> int:
    return sum(len(v.instances) for v in _planned(name) if v.subset == subset)


def test_preset_names_are_the_config_literal_and_each_is_documented():
    assert PRESET_NAMES == get_args(PresetName) == tuple(PRESETS)
    assert set(PRESET_NAMES) == {"standard", "context", "variation", "keyframes", "weak", "camera"}
    for name, p in PRESETS.items():
        assert p.name == name
        assert len(p.summary) > 20 and len(p.stresses) > 200, name
        assert p.size == PLAIN_DEFAULTS["size"] and p.fps == PLAIN_DEFAULTS["fps"]


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_stays_within_the_feature_budget_and_every_video_has_an_action(name):
    videos = _planned(name)
    p = get_preset(name)
    assert len(videos) == p.videos
    seconds = [v.frames / v.fps for v in videos]
    assert sum(seconds) <= BUDGET_S, sum(seconds)
    assert min(seconds) >= p.min_duration - 0.5 / p.fps and max(seconds) <= p.max_duration
    assert all(v.instances for v in videos)
    assert {v.subset for v in videos} == {"training", "validation", "test"}


@pytest.mark.parametrize("name", PRESET_NAMES)
@pytest.mark.parametrize("fps", [5.0, 15.0, 30.0])
def test_the_shortest_video_a_preset_allows_holds_an_action(name, fps):
    shortest = get_preset(name).scenario.min_video_s
    for _, plan in iter_plans(
        preset=name, videos=12, fps=fps, size=64, min_duration=shortest, max_duration=shortest
    ):
        assert plan.instances, (name, fps, plan.index)
        for inst in plan.instances:
            assert 0 <= inst.visible[0] <= inst.start_frame < inst.end_frame <= plan.frames
    with pytest.raises(ValueError, match=rf"^min_duration must be .* >= {shortest:g}"):
        next(iter_plans(preset=name, min_duration=shortest - 0.1, max_duration=shortest))


def test_standard_is_large_enough_to_rank_methods():
    p = get_preset("standard")
    assert p.videos >= 120 and p.classes >= 10
    assert _count("standard", "validation") >= 150
    assert _count("standard", "test") >= 150
    # two timelines: some instances overlap in time
    overlapping = 0
    for video in _planned("standard"):
        spans = sorted((i.start_frame, i.end_frame) for i in video.instances)
        overlapping += sum(b[0] < a[1] for a, b in itertools.pairwise(spans))
    assert overlapping > 50


def test_context_pairs_act_alike_and_differ_only_in_their_cue():
    specs = scenario_class_specs("context", get_preset("context").classes)
    assert len(specs) == 8
    for a, b in zip(specs[0::2], specs[1::2], strict=True):
        assert (a.motion, a.shape) == (b.motion, b.shape)
        assert (a.cue, b.cue) == CUE_SHAPES
    assert len({(s.motion, s.shape) for s in specs}) == 4
    with pytest.raises(ValueError, match=r"^classes must be an even integer"):
        scenario_class_specs("context", 7)


def test_context_the_cue_precedes_each_action_and_follows_the_start_of_the_one_before():
    specs = {s.id: s for s in scenario_class_specs("context", get_preset("context").classes)}
    lead = get_preset("context").scenario.cue.lead_s  # type: ignore[union-attr]
    n = 0
    for video in _planned("context"):
        actions = [(i.start_frame, i.end_frame) for i in video.instances]
        cues = [i.cue_frames for i in video.instances]
        for inst in video.instances:
            assert inst.cue == specs[inst.class_id].cue
            assert inst.cue_frames is not None
            c0, c1 = inst.cue_frames
            assert 0 <= c0 < c1
            gap_s = (inst.start_frame - c1) / video.fps
            assert lead[0] - 0.1 <= gap_s <= lead[1] + 0.1
            # the cue never shows before an earlier action of the video has started (it
            # may show while that one runs), and its own actor is not yet visible
            assert all(s < c0 for s, e in actions if s < inst.start_frame)
            assert c1 <= inst.visible[0]
            # and the latest cue before an action is its own
            before = [c for c in cues if c is not None and c[1] <= inst.start_frame]
            assert max(before) == inst.cue_frames
            n += 1
    assert n >= 100


def test_variation_every_class_shows_three_styles_in_training():
    specs = scenario_class_specs("variation", get_preset("variation").classes)
    shapes_of = {s.id: [st.shape for st in s.styles] for s in specs}
    for s in specs:
        assert len(s.styles) >= 3 and len(set(shapes_of[s.id])) == len(s.styles)
        assert len({(st.tempo, st.amplitude) for st in s.styles}) == len(s.styles)
    every_shape = [shape for shapes in shapes_of.values() for shape in shapes]
    assert all(every_shape.count(shape) >= 2 for shape in every_shape)  # shape names no class
    seen: dict[int, set[int]] = {s.id: set() for s in specs}
    mixed = 0
    for video in _planned("variation"):
        for inst in video.instances:
            assert inst.style is not None
            if video.subset == "training":
                seen[inst.class_id].add(inst.style)
        by_class: dict[int, set[int]] = {}
        for inst in video.instances:
            by_class.setdefault(inst.class_id, set()).add(inst.style)  # type: ignore[arg-type]
        mixed += sum(len(styles) > 1 for styles in by_class.values())
    assert all(len(styles) >= 3 for styles in seen.values()), seen
    assert mixed > 0  # a video sometimes performs one class in two styles


def test_keyframes_bursts_lie_inside_actions_and_cover_well_under_half():
    fractions = []
    counts = set()
    for video in _planned("keyframes"):
        for inst in video.instances:
            assert 1 <= len(inst.bursts) <= 2
            counts.add(len(inst.bursts))
            covered = 0
            for (b0, b1), nxt in zip(inst.bursts, [*inst.bursts[1:], None], strict=True):
                assert inst.start_frame <= b0 < b1 <= inst.end_frame
                assert 0.4 * video.fps - 1 <= b1 - b0 <= 1.0 * video.fps + 1
                if nxt is not None:
                    assert b1 <= nxt[0]
                covered += b1 - b0
            fractions.append(covered / (inst.end_frame - inst.start_frame))
    assert counts == {1, 2}
    assert max(fractions) <= 0.4 and np.mean(fractions) < 0.3


def test_keyframes_pose_is_a_generic_sway_outside_bursts_and_rests_at_both_ends():
    fps, start, end = 15.0, 10, 85
    f = np.arange(0, 100)
    spec = get_preset("keyframes").scenario.bursts
    assert spec is not None
    changes = {}
    for motion in ("slide", "blink"):
        pose, cycles, bursts = _sway_and_bursts(
            np.random.default_rng(1),
            motion,
            f,
            start,
            end,
            fps,
            (0.5, 1.0),
            10.0 if motion == "slide" else 0.7,
            1,
            spec,
        )
        assert cycles >= len(bursts) >= 1
        in_burst = np.zeros(len(f), bool)
        for b0, b1 in bursts:
            in_burst[b0:b1] = True
        outside = ~in_burst
        # outside the bursts: the same sway for every class (no displacement, no blink)
        assert np.all(pose.dx[outside] == 0) and np.all(pose.dy[outside] == 0)
        assert np.all(pose.bright[outside] == 1) and np.all(pose.sx == pose.sy)
        rest = (f < start) | (f >= end)
        assert np.all(pose.angle[rest] == 0) and np.all(pose.sx[rest] == 1)
        active = ~rest & outside
        assert np.abs(pose.angle[active]).mean() > 0.1  # the extent is visible
        changes[motion] = (np.abs(pose.dx) + np.abs(1 - pose.bright))[in_burst].mean()
        # the sway is near rest at the action's first and last frames
        assert abs(pose.angle[start]) < 0.1 and abs(pose.angle[end - 1]) < 0.1
    assert min(changes.values()) > 0.1  # the class pattern shows in the bursts


def test_weak_one_class_per_video_in_many_short_videos():
    p = get_preset("weak")
    assert p.videos >= 300 and p.max_duration <= 6.0
    for video in _planned("weak"):
        assert len({i.class_id for i in video.instances}) == 1
    labels = {i.class_id for v in _planned("weak") if v.subset == "training" for i in v.instances}
    assert labels == set(range(p.classes))


@pytest.mark.parametrize("classes", range(4, 2 * len(MOTIONS) + 1, 2))
def test_weak_classes_need_both_shape_and_motion(classes):
    specs = weak_class_specs(classes)
    assert len({(s.motion, s.shape) for s in specs}) == classes == len({s.name for s in specs})
    motions = [s.motion for s in specs]
    shapes = [s.shape for s in specs]
    assert all(motions.count(m) >= 2 for m in motions)
    assert all(shapes.count(s) >= 2 for s in shapes)
    assert set(shapes) <= set(SHAPES)


def test_camera_pans_and_zooms_far_more_than_the_plain_background_drift():
    size = get_preset("camera").size
    cam_speed, plain_speed = [], []
    for video in _planned("camera"):
        cam = video.camera
        assert cam is not None
        assert np.ptp(cam.zoom) >= 0.1 and cam.zoom.min() >= 1.0
        centre = cam.x0 + size / (2 * cam.zoom)
        assert np.ptp(centre) >= 0.05 * size
        cam_speed.append(np.abs(np.diff(cam.x0)).mean())
    for _, plan in iter_plans(videos=24, min_duration=15.0, max_duration=25.0):
        plain_speed.append(np.abs(np.diff(plan.background.pan_x)).mean())
    assert np.mean(cam_speed) > 5 * np.mean(plain_speed)


def _idle_motion(plan: VideoPlan) -> float:
    """Mean absolute frame-to-frame difference over frames in which no action runs (without
    the sensor noise, which would otherwise dominate a still scene's differences)."""
    plan.background.noise_sigma = 0.0
    frames = np.stack(
        list(render_frames(plan.background, plan.sprites, plan.frames, 64, [0, 0, 1]))
    )
    diff = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    idle = np.ones(plan.frames - 1, bool)
    for inst in plan.instances:
        idle[max(0, inst.start_frame - 1) : inst.end_frame] = False
    assert idle.sum() >= 10
    return float(diff[idle].mean())


def test_camera_moves_the_rendered_scene_between_frames_and_keeps_actors_in_view():
    camera = get_preset("camera").scenario
    specs = scenario_class_specs("plain", 3)
    moving, still = [], []
    for index in range(3):
        plan = plan_scenario_video(2, index, specs, 64, 15.0, 6.0, 6.0, camera)
        moving.append(_idle_motion(plan))
        for sp in plan.sprites:  # actors stay in view while fully visible
            if sp.layer == 1:
                on = sp.alpha > 0.99
                reach = sp.radius * 1.3 * np.maximum(sp.sx, sp.sy)
                assert np.all(sp.x[on] - reach[on] >= -1) and np.all(sp.x[on] + reach[on] <= 65)
                assert np.all(sp.y[on] - reach[on] >= -1) and np.all(sp.y[on] + reach[on] <= 65)
        plain = plan_scenario_video(
            2, index, specs, 64, 15.0, 6.0, 6.0, replace(camera, camera=None)
        )
        still.append(_idle_motion(plain))
    assert np.mean(moving) > 3 * np.mean(still), (moving, still)


def test_config_fills_unset_sizes_from_the_preset_and_keeps_explicit_ones():
    weak = get_preset("weak")
    config = SynthConfig(preset="weak", videos=10, seed=2)
    assert config.model_dump() == {**weak.sizes(), "videos": 10, "seed": 2, "preset": "weak"}
    assert SynthConfig(**config.model_dump()) == config  # the resolved values round-trip
    assert SynthConfig().model_dump() == {**PLAIN_DEFAULTS, "seed": 0, "preset": None}
    assert resolve_sizes("camera", {"fps": 10.0, "videos": None})["fps"] == 10.0
    assert resolve_sizes("camera", {})["videos"] == get_preset("camera").videos
    with pytest.raises(ValidationError, match="standard.*camera"):
        SynthConfig(preset="cinema")
    with pytest.raises(ValidationError, match="classes must be an even integer"):
        SynthConfig(preset="context", classes=5)
    with pytest.raises(ValueError, match=r"^preset must be one of standard, context, .*'cinema'"):
        get_preset("cinema")


def test_bad_preset_arguments_raise_value_errors_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"^preset must be one of"):
        generate_dataset(tmp_path / "a", preset="cinema")
    with pytest.raises(ValueError, match=r"^classes must be an integer in \[2, 10\]"):
        generate_dataset(tmp_path / "b", preset="variation", classes=12)
    with pytest.raises(ValueError, match=r"^min_duration must be"):
        generate_dataset(tmp_path / "c", preset="context", min_duration=4.0, max_duration=5.0)
    assert not any(tmp_path.iterdir())
    assert preset_class_specs(None, 6, 3.5)[0].name == "bounce_disc"


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_a_tiny_preset_dataset_renders_decodes_and_records_the_preset(tmp_path, name):
    import decord

    shortest = max(4.0, get_preset(name).scenario.min_video_s)
    summary = generate_dataset(
        tmp_path, preset=name, videos=3, size=64, min_duration=shortest, max_duration=shortest + 1
    )
    meta = json.loads((tmp_path / "synth.json").read_text())
    p = get_preset(name)
    assert (
        meta["params"]
        == SynthConfig(
            preset=name, videos=3, size=64, min_duration=shortest, max_duration=shortest + 1
        ).model_dump()
    )
    assert meta["params"]["classes"] == p.classes and meta["params"]["preset"] == name
    assert [c["name"] for c in meta["classes"]] == summary.class_names
    annotations = load_annotations(summary.annotations)
    assert annotations.num_instances() == summary.instances >= 3
    for video_id, info in meta["videos"].items():
        vr = decord.VideoReader(str(tmp_path / info["file"]))
        assert len(vr) == info["frames"] and vr[0].shape == (64, 64, 3)
        for inst in info["instances"]:
            assert ("cue_frames" in inst) == (name == "context")
            assert ("bursts" in inst) == (name == "keyframes")
            assert ("style" in inst) == (name == "variation")
        assert annotations.videos[video_id].instances


@pytest.mark.slow
@pytest.mark.parametrize("name", ["context", "camera"])
def test_a_preset_dataset_is_the_same_for_any_workers(tmp_path, name):
    args = {"preset": name, "videos": 3, "size": 64, "min_duration": 6.0, "max_duration": 7.0}
    one = generate_dataset(tmp_path / "one", **args)
    two = generate_dataset(tmp_path / "two", workers=2, **args)
    for rel in ["annotations.json", "synth.json", *(f"videos/{v}.mp4" for v in one.frames)]:
        assert (one.out_dir / rel).read_bytes() == (two.out_dir / rel).read_bytes(), rel


@pytest.mark.slow
def test_the_data_guide_table_is_what_the_planner_counts():
    guide = (Path(__file__).resolve().parents[3] / "docs/guides/data.md").read_text()
    assert presets_table() in guide  # after changing a preset: python -m tal.synth.stats


def test_standard_tests_on_its_own_larger_share_and_the_others_on_a_fifth():
    from tal.synth.generate import assign_subsets

    assert get_preset("standard").split == (0.15, 0.4)
    counts = Counter(subset for subset, _ in iter_plans(preset="standard", seed=0))
    assert counts == {"training": 90, "validation": 30, "test": 80}
    plain = assign_subsets(24, 0)
    assert plain == assign_subsets(24, 0, 0.2, 0.2)  # the former split, unchanged
    assert Counter(plain) == {"training": 14, "validation": 5, "test": 5}
