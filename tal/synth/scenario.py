"""Plan one video of a preset: the plain planner's scene plus the preset's scenario.

The same pieces as ``tal.synth.plan`` (textured background, wandering distractors, actors
that fade in, idle, act, idle and fade out), drawn from the same ``(seed, video_index)``
generator, with what a ``Scenario`` asks for: several timelines of actions at once, one
class per video, classes performed in styles, a cue before each action, the class pattern
only in short bursts of a generic sway, a camera that pans and zooms. The plain planner is
left untouched, so a dataset without a preset stays byte for byte what it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tal.synth.classes import (
    CUE_SHAPES,
    MOTION_BY_NAME,
    ClassSpec,
    Pose,
    action_pose,
    class_specs,
    context_class_specs,
    variation_class_specs,
    weak_class_specs,
)
from tal.synth.plan import (
    FADE_S,
    PlannedInstance,
    Taken,
    VideoPlan,
    View,
    draw_background,
    draw_distractors,
    fade_curve,
    path_box,
    pixel_box,
    place_actor,
    place_apart,
    to_frames,
)
from tal.synth.presets import (
    BurstSpec,
    CameraSpec,
    ClassSet,
    CueSpec,
    Scenario,
    Schedule,
    get_preset,
)
from tal.synth.render import Background, Camera, Sprite, hsv_to_rgb, make_texture

CUE_COLORS = {"star": (0.14, 0.85, 1.0), "crescent": (0.52, 0.85, 1.0)}
"""HSV of each cue: yellow stars, cyan crescents (shape and colour both name the cue)."""
_DEPTH_MOTIONS = ("grow", "blink", "squash", "rotate")
"""Motions whose amplitude is a depth (or unused), not a displacement in frame sizes."""


def scenario_class_specs(class_set: ClassSet, classes: int) -> list[ClassSpec]:
    """The ``classes`` classes of a scenario's class set (ValueError when it has no such size)."""
    if class_set == "context":
        return context_class_specs(classes)
    if class_set == "variation":
        return variation_class_specs(classes)
    if class_set == "weak":
        return weak_class_specs(classes)
    return class_specs(classes)


def preset_class_specs(preset: str | None, classes: int, min_duration: float) -> list[ClassSpec]:
    """The classes of a dataset with ``preset`` (or none); ValueError, naming the argument,
    when the preset cannot hold ``classes`` classes or videos as short as ``min_duration``."""
    if preset is None:
        return class_specs(classes)
    scenario = get_preset(preset).scenario
    specs = scenario_class_specs(scenario.class_set, classes)
    if min_duration < scenario.min_video_s:
        raise ValueError(
            f"min_duration must be a number of seconds >= {scenario.min_video_s:g} for preset "
            f"{preset!r} (shorter videos cannot hold one of its actions), got {min_duration!r}"
        )
    return specs


@dataclass(frozen=True)
class _Slot:
    """An actor's timing in frames, and its cue's ``[c0, c1)`` when the scenario has cues."""

    appear: int
    fade_in: int
    start: int
    end: int
    fade_out: int
    vanish: int
    cue: tuple[int, int] | None = None


def _track(
    rng: np.random.Generator, frames: int, fps: float, s: Schedule, cue: CueSpec | None
) -> list[_Slot]:
    """One timeline of actors (the plain ``_schedule`` with the schedule's knobs and cues)."""
    slots: list[_Slot] = []
    prev_end: int | None = None
    prev_start: int | None = None
    prev_len = 0
    min_action = to_frames(s.min_action_s, fps)
    while True:
        fade_in, fade_out = (to_frames(rng.uniform(*FADE_S), fps) for _ in range(2))
        lead_in, lead_out = (to_frames(rng.uniform(*s.idle_s), fps) for _ in range(2))
        wanted = to_frames(np.exp(rng.uniform(*np.log(s.action_s))), fps)
        cue_len = cue_lead = cue_after = 0
        if cue is not None:
            cue_len = to_frames(rng.uniform(*cue.duration_s), fps)
            cue_lead = to_frames(rng.uniform(*cue.lead_s), fps)
            cue_after = to_frames(rng.uniform(*cue.after_s), fps)
        gap_draw = rng.random()
        if prev_end is None:
            start = to_frames(rng.uniform(*s.first_s), fps, minimum=0) + fade_in + lead_in
        elif gap_draw < s.overlap_p:
            start = prev_end - to_frames(rng.uniform(0.15, 0.4) * prev_len / fps, fps)
        elif gap_draw < s.overlap_p + s.short_gap_p:
            start = prev_end + to_frames(rng.uniform(*s.short_gap_s), fps)
        else:
            start = prev_end + to_frames(rng.uniform(*s.long_gap_s), fps)
        earliest = fade_in + lead_in
        if cue is not None:  # the cue comes after the previous action has started
            earliest = max(earliest, (prev_start or 0) + cue_after + cue_len + cue_lead)
        start = max(start, earliest)
        room = frames - lead_out - fade_out - start
        if room < min_action and prev_end is None:
            # The first instance always fits (see Scenario.min_video_s): shortest everything.
            fade_in = fade_out = to_frames(FADE_S[0], fps)
            lead_in = lead_out = to_frames(s.idle_s[0], fps)
            start = fade_in + lead_in
            if cue is not None:
                cue_len = to_frames(cue.duration_s[0], fps)
                cue_lead = to_frames(cue.lead_s[0], fps)
                start = max(start, cue_len + cue_lead)
            room = frames - lead_out - fade_out - start
        if room < min_action:
            break
        end = start + min(wanted, room)
        cue_frames = None
        if cue is not None:
            c1 = start - cue_lead
            cue_frames = (c1 - cue_len, c1)
        appear, vanish = start - lead_in - fade_in, end + lead_out + fade_out
        slots.append(_Slot(appear, fade_in, start, end, fade_out, vanish, cue_frames))
        prev_start, prev_end, prev_len = start, end, end - start
    return slots


def _camera(
    rng: np.random.Generator, frames: int, fps: float, size: int, spec: CameraSpec
) -> tuple[Camera, Background]:
    """The camera's path and a background texture laid out in world pixels under it."""
    t = np.arange(frames) / fps
    pans = []
    for _ in range(2):
        amp = rng.uniform(*spec.pan) * size
        wave = 0.7 * np.sin(2 * np.pi * t / rng.uniform(*spec.pan_period_s) + rng.uniform(0, 6.3))
        wave += 0.3 * np.sin(2 * np.pi * t / rng.uniform(*spec.pan_period_s) + rng.uniform(0, 6.3))
        pans.append(amp * wave)
    top = rng.uniform(*spec.zoom)
    phase = 2 * np.pi * t / rng.uniform(*spec.zoom_period_s) + rng.uniform(0, 6.3)
    zoom = 1.0 + (top - 1.0) * (0.5 - 0.5 * np.cos(phase))
    half = size / (2.0 * zoom)
    camera = Camera(size / 2 + pans[0] - half, size / 2 + pans[1] - half, zoom)
    # The view stays inside world [-pan, size + pan]; the texture covers that and a pixel.
    margin = int(np.ceil(spec.pan[1] * size)) + 2
    texture = make_texture(rng, size + 2 * margin + 2, size)
    gain = 1.0 + rng.uniform(0.04, 0.1) * np.sin(
        2 * np.pi * t / rng.uniform(8, 25) + rng.uniform(0, 6.3)
    )
    background = Background(
        texture,
        margin + camera.x0,
        margin + camera.y0,
        gain,
        float(rng.uniform(0.005, 0.012)),
        zoom=zoom,
    )
    return camera, background


def _sway_and_bursts(
    rng: np.random.Generator,
    motion: str,
    f: np.ndarray,
    start: int,
    end: int,
    fps: float,
    period: tuple[float, float],
    amplitude: float,
    direction: int,
    spec: BurstSpec,
) -> tuple[Pose, int, tuple[tuple[int, int], ...]]:
    """A generic sway over the whole action, and the class pattern in short bursts of it.

    Returns the pose, the class pattern's cycles (all bursts) and the burst frame ranges.
    The sway (rocking plus a slight scale pulse, whole cycles) is the same for every class
    and at rest at both ends of the action; each burst is a whole ``action_pose``.
    """
    n_act = end - start
    duration = n_act / fps
    t = (f + 0.5 - start) / fps
    active = (t >= 0) & (t <= duration)
    tc = np.clip(t, 0.0, duration)
    sway_period = duration / max(1, round(duration / rng.uniform(*spec.sway_period_s)))
    angle = np.where(active, spec.sway_angle * np.sin(2 * np.pi * tc / sway_period), 0.0)
    scale = np.where(active, 1.0 + spec.sway_scale * np.abs(np.sin(np.pi * tc / sway_period)), 1.0)
    pose = Pose(np.zeros_like(t), np.zeros_like(t), angle, scale, scale.copy(), np.ones_like(t))
    count = spec.count[0]
    if duration >= spec.two_from_s:
        count = int(rng.integers(spec.count[0], spec.count[1] + 1))
    cap = max(1, int(spec.max_fraction * n_act) // count)
    margin = to_frames(0.2, fps, minimum=0)
    cycles = 0
    bursts = []
    for k in range(count):
        s0 = start + (n_act * k) // count
        s1 = start + (n_act * (k + 1)) // count
        length = min(to_frames(rng.uniform(*spec.duration_s), fps), cap, s1 - s0)
        lo, hi = s0 + margin, s1 - margin - length
        if hi < lo:
            lo = hi = s0 + (s1 - s0 - length) // 2
        b0 = int(rng.integers(lo, hi + 1))
        b_dur = length / fps
        n = max(1, round(b_dur / rng.uniform(*period)))
        p = action_pose(motion, (f + 0.5 - b0) / fps, b_dur, n, amplitude, direction, rng)
        pose = Pose(
            pose.dx + p.dx,
            pose.dy + p.dy,
            pose.angle + p.angle,
            pose.sx * p.sx,
            pose.sy * p.sy,
            pose.bright * p.bright,
        )
        cycles += n
        bursts.append((b0, b0 + length))
    return pose, cycles, tuple(bursts)


def _actor(
    rng: np.random.Generator,
    spec: ClassSpec,
    style: int | None,
    slot: _Slot,
    fps: float,
    size: int,
    taken: Taken,
    bursts: BurstSpec | None,
    camera: Camera | None,
) -> tuple[Sprite, PlannedInstance]:
    """The sprite of one instance in world coordinates, placed so its path stays in view."""
    appear, start, end, vanish = slot.appear, slot.start, slot.end, slot.vanish
    motion = MOTION_BY_NAME[spec.motion]
    f = np.arange(appear, vanish)
    duration = (end - start) / fps
    shape, tempo, amp_factor = spec.shape, 1.0, 1.0
    if style is not None:
        st = spec.styles[style]
        shape, tempo, amp_factor = st.shape, st.tempo, st.amplitude
    period = (motion.period[0] * tempo, motion.period[1] * tempo)
    amplitude = rng.uniform(*motion.amplitude) * amp_factor
    if spec.motion == "blink":
        amplitude = min(amplitude, 0.95)  # a depth: darker than black is not a blink
    if spec.motion not in _DEPTH_MOTIONS:
        amplitude *= size
        if spec.motion == "shake":
            amplitude = max(amplitude, 1.5)
    direction = 1 if rng.random() < 0.5 else -1
    burst_frames: tuple[tuple[int, int], ...] = ()
    if bursts is None:
        cycles = max(1, round(duration / rng.uniform(*period)))
        pose = action_pose(
            spec.motion, (f + 0.5 - start) / fps, duration, cycles, amplitude, direction, rng
        )
    else:
        pose, cycles, burst_frames = _sway_and_bursts(
            rng, spec.motion, f, start, end, fps, period, amplitude, direction, bursts
        )
    sprite, box = place_actor(
        rng,
        shape,
        pose,
        (appear, start, end, vanish),
        (slot.fade_in, slot.fade_out),
        fps,
        size,
        taken,
        _view(camera, size, appear, vanish),
    )
    if camera is not None:  # the annotated box is where the action is on screen
        fa, act = np.arange(start, end), slice(start - appear, end - appear)
        z = camera.zoom[fa]
        reach = sprite.radius * 1.3 * np.maximum(sprite.sx, sprite.sy)
        xs, ys, r = (
            (sprite.x[act] - camera.x0[fa]) * z,
            (sprite.y[act] - camera.y0[fa]) * z,
            reach[act] * z,
        )
        box = path_box(xs, ys, r)(0.0, 0.0)
    inst = PlannedInstance(
        spec.id,
        spec.name,
        start,
        end,
        (appear, vanish),
        cycles,
        float(amplitude),
        pixel_box(box, size),
        style=style,
        bursts=burst_frames,
    )
    return sprite, inst


def _view(camera: Camera | None, size: int, f0: int, f1: int) -> View:
    """World window ``(x0, y0, x1, y1)`` the view shows in frames ``[f0, f1)``."""
    if camera is None:
        return 0.0, 0.0, float(size), float(size)
    x0, y0 = camera.x0[f0:f1], camera.y0[f0:f1]
    width = size / camera.zoom[f0:f1]
    return x0, y0, x0 + width, y0 + width


def _cue(
    rng: np.random.Generator,
    shape: str,
    frames: tuple[int, int],
    size: int,
    spec: CueSpec,
    taken: Taken,
    camera: Camera | None,
) -> Sprite:
    """A still marker in frames ``[c0, c1)``, away from actors on screen at the time."""
    c0, c1 = frames
    radius = rng.uniform(*spec.radius) * size
    vx0, vy0, vx1, vy1 = _view(camera, size, c0, c1)
    reach = radius * 1.3
    lo_x, hi_x = np.max(vx0) + reach + 1, np.min(vx1) - reach - 1
    lo_y, hi_y = np.max(vy0) + reach + 1, np.min(vy1) - reach - 1
    cx, cy, _ = place_apart(
        rng,
        (lo_x, hi_x, lo_y, hi_y),
        lambda x, y: (x - reach, y - reach, x + reach, y + reach),
        (c0, c1),
        taken,
    )
    n = c1 - c0
    f = np.arange(c0, c1)
    hue, sat, val = CUE_COLORS[shape]
    return Sprite(
        shape=shape,
        color=hsv_to_rgb(hue + rng.uniform(-0.02, 0.02), sat, val),
        radius=radius,
        f0=c0,
        f1=c1,
        x=np.full(n, cx),
        y=np.full(n, cy),
        angle=np.zeros(n),
        sx=np.ones(n),
        sy=np.ones(n),
        bright=np.ones(n),
        alpha=fade_curve(f, c0, c1, 2, 2),
        layer=2,
    )


def plan_scenario_video(
    seed: int,
    index: int,
    classes: list[ClassSpec],
    size: int,
    fps: float,
    min_duration: float,
    max_duration: float,
    scenario: Scenario,
) -> VideoPlan:
    """Draw video ``index`` of a preset's dataset with ``seed`` (pure: same inputs, same plan).

    ``classes`` is ``scenario_class_specs(scenario.class_set, n)``.
    """
    rng = np.random.default_rng([seed, index])
    frames = max(to_frames(rng.uniform(min_duration, max_duration), fps), 2)
    camera = None
    if scenario.camera is None:
        background = draw_background(rng, frames, fps, size)
    else:
        camera, background = _camera(rng, frames, fps, size, scenario.camera)
    plan = VideoPlan(index, frames, fps, size, background, camera=camera)
    shapes = sorted({st.shape for c in classes for st in c.styles} | {c.shape for c in classes})
    shapes = [s for s in shapes if s != "mixed"]
    plan.sprites += draw_distractors(rng, frames, fps, size, shapes)
    if scenario.one_class_per_video:
        weights = np.zeros(len(classes))
        weights[int(rng.integers(len(classes)))] = 1.0
    else:
        weights = rng.dirichlet(np.full(len(classes), 2.0))
    # with styles: the style this video mostly performs each class in
    dominant = {c.id: int(rng.integers(len(c.styles))) for c in classes if c.styles}
    slots = [
        slot
        for _ in range(scenario.schedule.tracks)
        for slot in _track(rng, frames, fps, scenario.schedule, scenario.cue)
    ]
    slots.sort(key=lambda s: (s.start, s.end))
    taken: Taken = []
    for slot in slots:
        spec = classes[int(rng.choice(len(classes), p=weights))]
        style = None
        if spec.styles:
            style = dominant[spec.id]
            if rng.random() >= scenario.dominant_style_p:
                others = [k for k in range(len(spec.styles)) if k != style]
                style = others[int(rng.integers(len(others)))]
        sprite, inst = _actor(
            rng, spec, style, slot, fps, size, taken, scenario.bursts, plan.camera
        )
        plan.sprites.append(sprite)
        if slot.cue is not None:
            if spec.cue not in CUE_SHAPES:
                raise ValueError(f"class {spec.name!r} has no cue; a scenario with cues needs them")
            assert spec.cue is not None and scenario.cue is not None
            plan.sprites.append(_cue(rng, spec.cue, slot.cue, size, scenario.cue, taken, camera))
            inst.cue, inst.cue_frames = spec.cue, slot.cue
        plan.instances.append(inst)
    if camera is not None:
        for sp in plan.sprites:
            camera.apply(sp)
    return plan
