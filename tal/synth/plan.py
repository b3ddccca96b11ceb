"""Plan one synthetic video: its length, background, distractors and action instances.

Everything is drawn from one generator seeded by ``(seed, video_index)``, so a video is the
same whichever process renders it. Times are drawn in seconds and quantised to frames at
once; an instance's segment is ``[start_frame, end_frame) / fps``.

An actor fades in, idles (slow drift) for 0.5-1.5 s, performs its action, idles again and
fades out; only the action is annotated. Distractors share the shapes, sizes and colours of
actors, drift and wander slowly, and come and go, but never perform a pattern.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tal.synth.classes import MOTION_BY_NAME, ClassSpec, Pose, action_pose
from tal.synth.render import Background, Camera, Sprite, hsv_to_rgb, make_texture

MIN_ACTION_S = 1.0
"""Shortest action; with the shortest fades and idles it sets the shortest usable video."""
FADE_S = (0.25, 0.45)
IDLE_S = (0.5, 1.5)
ACTION_S = (1.5, 6.0)
MIN_VIDEO_S = 3.5
"""Shortest video in which one instance always fits (fades, idles, action, rounding)."""
RADIUS = (0.055, 0.085)
"""Object radius as a fraction of the frame size."""


@dataclass
class PlannedInstance:
    """One action instance and what is needed to check it against the rendered video."""

    class_id: int
    label: str
    start_frame: int
    end_frame: int
    visible: tuple[int, int]
    cycles: int
    amplitude: float
    box: tuple[int, int, int, int]
    """Pixels ``(x0, y0, x1, y1)`` the actor covers during the action."""
    style: int | None = None
    """Preset ``variation``: the index of the class style performed."""
    bursts: tuple[tuple[int, int], ...] = ()
    """Preset ``keyframes``: frame ranges ``[b0, b1)`` in which the class pattern runs."""
    cue: str | None = None
    """Preset ``context``: the cue marker shown before the action ..."""
    cue_frames: tuple[int, int] | None = None
    """... in frames ``[c0, c1)``, ended before the action starts."""

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "label": self.label,
            "label_id": self.class_id,
            "action_frames": [self.start_frame, self.end_frame],
            "visible_frames": list(self.visible),
            "cycles": self.cycles,
            "amplitude": round(self.amplitude, 4),
            "box": list(self.box),
        }
        if self.style is not None:
            out["style"] = self.style
        if self.bursts:
            out["bursts"] = [list(b) for b in self.bursts]
        if self.cue is not None and self.cue_frames is not None:
            out["cue"] = self.cue
            out["cue_frames"] = list(self.cue_frames)
        return out


@dataclass
class VideoPlan:
    """Everything needed to render one video and to annotate it."""

    index: int
    frames: int
    fps: float
    size: int
    background: Background
    sprites: list[Sprite] = field(default_factory=list)
    instances: list[PlannedInstance] = field(default_factory=list)
    camera: Camera | None = None
    """Preset ``camera``: the view's path (sprites are already in screen coordinates)."""


def to_frames(seconds: float, fps: float, minimum: int = 1) -> int:
    """``seconds`` as a whole number of frames at ``fps``, at least ``minimum``."""
    return max(minimum, round(seconds * fps))


def fade_curve(f: np.ndarray, appear: int, vanish: int, fade_in: int, fade_out: int) -> np.ndarray:
    """Opacity at frames ``f`` of an object on screen in ``[appear, vanish)``: a linear fade
    in over ``fade_in`` frames and out over ``fade_out``."""
    up = np.clip((f - appear + 1) / fade_in, 0.0, 1.0)
    down = np.clip((vanish - f) / fade_out, 0.0, 1.0)
    return up * down


def draw_background(rng: np.random.Generator, frames: int, fps: float, size: int) -> Background:
    """A textured background with a slow two-axis drift and a slow brightness change."""
    margin = int(np.ceil(0.08 * size)) + 2
    texture = make_texture(rng, size + 2 * margin + 1, size)
    t = np.arange(frames) / fps
    pans = []
    for _ in range(2):
        amp = (margin - 1) * rng.uniform(0.3, 1.0)
        pans.append(
            margin + amp * np.sin(2 * np.pi * t / rng.uniform(20, 60) + rng.uniform(0, 6.3))
        )
    gain = 1.0 + rng.uniform(0.04, 0.1) * np.sin(
        2 * np.pi * t / rng.uniform(8, 25) + rng.uniform(0, 6.3)
    )
    return Background(texture, pans[0], pans[1], gain, float(rng.uniform(0.005, 0.012)))


def random_color(rng: np.random.Generator) -> np.ndarray:
    """A saturated, bright RGB colour for an object (actors and distractors alike)."""
    return hsv_to_rgb(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.75, 1.0))


def draw_distractors(
    rng: np.random.Generator, frames: int, fps: float, size: int, shapes: list[str]
) -> list[Sprite]:
    """2-4 slots, each a sequence of lives: fade in, wander slowly, fade out, pause."""
    sprites = []
    for _ in range(int(rng.integers(2, 5))):
        start = round(rng.uniform(-6.0, 2.0) * fps)  # may already be on screen at frame 0
        while start < frames:
            life = to_frames(rng.uniform(4.0, 14.0), fps)
            fade_in, fade_out = (to_frames(rng.uniform(*FADE_S), fps) for _ in range(2))
            vanish = start + life
            f0, f1 = max(0, start), min(frames, vanish)
            if f1 - f0 > 1:
                sprites.append(
                    _wanderer(rng, fps, size, shapes, start, vanish, f0, f1, fade_in, fade_out)
                )
            start = vanish + to_frames(rng.uniform(0.5, 4.0), fps)
    return sprites


def _wanderer(
    rng: np.random.Generator,
    fps: float,
    size: int,
    shapes: list[str],
    appear: int,
    vanish: int,
    f0: int,
    f1: int,
    fade_in: int,
    fade_out: int,
) -> Sprite:
    """A distractor: slow linear drift plus a smooth random wander, reflected at the borders."""
    shape = shapes[int(rng.integers(len(shapes)))]
    radius = rng.uniform(*RADIUS) * size
    f = np.arange(appear, vanish)
    t = (f - appear) / fps
    speed = rng.uniform(0.02, 0.08) * size
    heading = rng.uniform(0, 2 * np.pi)
    pos = []
    for axis in range(2):
        v = speed * (np.cos(heading) if axis == 0 else np.sin(heading)) * np.ones_like(t)
        for _ in range(2):  # wander: slowly varying velocity
            v = v + 0.5 * speed * np.sin(rng.uniform(0.3, 1.2) * t + rng.uniform(0, 6.3))
        p = rng.uniform(0, size) + np.cumsum(v) / fps
        lo, hi = radius * 1.2, size - radius * 1.2
        span = hi - lo
        q = np.mod(p - lo, 2 * span)
        pos.append(lo + np.where(q > span, 2 * span - q, q))
    keep = slice(f0 - appear, f1 - appear)
    n = f1 - f0
    spin = rng.uniform(-0.5, 0.5)
    return Sprite(
        shape=shape,
        color=random_color(rng),
        radius=radius,
        f0=f0,
        f1=f1,
        x=pos[0][keep],
        y=pos[1][keep],
        angle=(rng.uniform(0, 2 * np.pi) + spin * t)[keep],
        sx=np.ones(n),
        sy=np.ones(n),
        bright=np.ones(n),
        alpha=fade_curve(f, appear, vanish, fade_in, fade_out)[keep],
        layer=2 if rng.random() < 0.2 else 0,
    )


def _schedule(
    rng: np.random.Generator, frames: int, fps: float
) -> list[tuple[int, int, int, int, int, int]]:
    """Instance timings as frames: (appear, fade_in, start, end, fade_out, vanish)."""
    slots = []
    prev: tuple[int, int] | None = None
    min_action = to_frames(MIN_ACTION_S, fps)
    while True:
        fade_in, fade_out = (to_frames(rng.uniform(*FADE_S), fps) for _ in range(2))
        lead_in, lead_out = (to_frames(rng.uniform(*IDLE_S), fps) for _ in range(2))
        wanted = to_frames(np.exp(rng.uniform(*np.log(ACTION_S))), fps)
        gap_draw = rng.random()
        if prev is None:
            start = to_frames(rng.uniform(0.0, 1.5), fps, minimum=0) + fade_in + lead_in
        elif gap_draw < 0.1:  # a small overlap with the previous action
            prev_len = prev[1] - prev[0]
            start = prev[1] - to_frames(rng.uniform(0.15, 0.4) * prev_len / fps, fps)
        elif gap_draw < 0.4:
            start = prev[1] + to_frames(rng.uniform(0.2, 1.0), fps)
        else:
            start = prev[1] + to_frames(rng.uniform(1.0, 4.5), fps)
        start = max(start, fade_in + lead_in)
        room = frames - lead_out - fade_out - start
        if room < min_action and prev is None:
            # The first instance always fits (see MIN_VIDEO_S): shortest fades and idles.
            fade_in = fade_out = to_frames(FADE_S[0], fps)
            lead_in = lead_out = to_frames(IDLE_S[0], fps)
            start = fade_in + lead_in
            room = frames - lead_out - fade_out - start
        if room < min_action:
            break
        end = start + min(wanted, room)
        slots.append(
            (start - lead_in - fade_in, fade_in, start, end, fade_out, end + lead_out + fade_out)
        )
        prev = (start, end)
    return slots


def _actor(
    rng: np.random.Generator,
    spec: ClassSpec,
    slot: tuple[int, int, int, int, int, int],
    fps: float,
    size: int,
    taken: Taken,
) -> tuple[Sprite, PlannedInstance]:
    """The sprite of one instance, placed so its whole path stays in frame."""
    appear, fade_in, start, end, fade_out, vanish = slot
    motion = MOTION_BY_NAME[spec.motion]
    f = np.arange(appear, vanish)
    duration = (end - start) / fps
    cycles = max(1, round(duration / rng.uniform(*motion.period)))
    amplitude = rng.uniform(*motion.amplitude)
    if spec.motion not in ("grow", "blink", "squash", "rotate"):
        amplitude *= size
        if spec.motion == "shake":
            amplitude = max(amplitude, 1.5)
    direction = 1 if rng.random() < 0.5 else -1
    # Mid-frame sampling: every frame in [start, end) shows the action, none outside does.
    pose = action_pose(
        spec.motion, (f + 0.5 - start) / fps, duration, cycles, amplitude, direction, rng
    )
    sprite, box = place_actor(
        rng, spec.shape, pose, (appear, start, end, vanish), (fade_in, fade_out), fps, size, taken
    )
    inst = PlannedInstance(
        spec.id,
        spec.name,
        start,
        end,
        (appear, vanish),
        cycles,
        float(amplitude),
        pixel_box(box, size),
    )
    return sprite, inst


Box = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in pixels."""
Taken = list[tuple[int, int, Box]]
"""Boxes already placed, each with the frames ``[f0, f1)`` it is on screen."""


def path_box(dx: np.ndarray, dy: np.ndarray, reach: np.ndarray) -> Callable[[float, float], Box]:
    """The box an object with offsets ``dx, dy`` and extent ``reach`` (per frame) covers when
    its rest point is at ``(cx, cy)``."""

    def box(cx: float, cy: float) -> Box:
        return (
            float(np.min(cx + dx - reach)),
            float(np.min(cy + dy - reach)),
            float(np.max(cx + dx + reach)),
            float(np.max(cy + dy + reach)),
        )

    return box


def place_apart(
    rng: np.random.Generator,
    bounds: tuple[float, float, float, float],
    box_at: Callable[[float, float], Box],
    frames: tuple[int, int],
    taken: Taken,
) -> tuple[float, float, Box]:
    """A rest point ``(cx, cy)`` in ``bounds`` ``(lo_x, hi_x, lo_y, hi_y)`` (the middle of an
    empty range) whose box overlaps least the boxes of ``taken`` on screen in the same
    ``frames`` ``[f0, f1)``: up to 30 draws, the first without overlap wins. The chosen box
    joins ``taken``."""
    lo_x, hi_x, lo_y, hi_y = bounds
    f0, f1 = frames
    best = None
    for _ in range(30):
        cx = rng.uniform(lo_x, hi_x) if hi_x > lo_x else (lo_x + hi_x) / 2
        cy = rng.uniform(lo_y, hi_y) if hi_y > lo_y else (lo_y + hi_y) / 2
        box = box_at(cx, cy)
        clash = sum(box_overlap(box, other) for a, b, other in taken if a < f1 and f0 < b)
        if best is None or clash < best[0]:
            best = (clash, cx, cy, box)
        if clash == 0:
            break
    assert best is not None
    _, cx, cy, box = best
    taken.append((f0, f1, box))
    return cx, cy, box


def pixel_box(box: Box, size: int) -> tuple[int, int, int, int]:
    """``box`` widened to whole pixels and clipped to a ``size`` frame."""
    return (
        max(0, int(box[0])),
        max(0, int(box[1])),
        min(size, int(np.ceil(box[2])) + 1),
        min(size, int(np.ceil(box[3])) + 1),
    )


View = tuple[np.ndarray | float, np.ndarray | float, np.ndarray | float, np.ndarray | float]
"""What a frame shows, ``(x0, y0, x1, y1)`` in scene pixels: scalars, or one per frame."""


def place_actor(
    rng: np.random.Generator,
    shape: str,
    pose: Pose,
    frames: tuple[int, int, int, int],
    fades: tuple[int, int],
    fps: float,
    size: int,
    taken: Taken,
    view: View | None = None,
) -> tuple[Sprite, Box]:
    """The sprite of an actor performing ``pose`` (one value per frame it is on screen):
    ``frames`` are ``(appear, start, end, vanish)``, on screen in ``[appear, vanish)`` and
    acting in ``[start, end)``, fading in and out over ``fades`` frames. It gets a random size
    and slow drift and a rest point that keeps its whole path inside ``view`` (default: the
    frame) and away from ``taken`` (``place_apart``); returned with the box its action
    covers."""
    appear, start, end, vanish = frames
    f = np.arange(appear, vanish)
    radius = rng.uniform(*RADIUS) * size
    t = (f - appear) / fps
    heading = rng.uniform(0, 2 * np.pi)
    drift = rng.uniform(0.0, 0.012) * size
    dx = pose.dx + drift * np.cos(heading) * t
    dy = pose.dy + drift * np.sin(heading) * t
    reach = radius * 1.3 * np.maximum(pose.sx, pose.sy)
    if view is None:
        lo_x, hi_x = np.max(reach - dx) + 1, np.min(size - reach - dx) - 1
        lo_y, hi_y = np.max(reach - dy) + 1, np.min(size - reach - dy) - 1
    else:
        vx0, vy0, vx1, vy1 = view
        lo_x, hi_x = np.max(vx0 + reach - dx) + 1, np.min(vx1 - reach - dx) - 1
        lo_y, hi_y = np.max(vy0 + reach - dy) + 1, np.min(vy1 - reach - dy) - 1
    act = slice(start - appear, end - appear)
    cx, cy, box = place_apart(
        rng,
        (lo_x, hi_x, lo_y, hi_y),
        path_box(dx[act], dy[act], reach[act]),
        (appear, vanish),
        taken,
    )
    sprite = Sprite(
        shape=shape,
        color=random_color(rng),
        radius=radius,
        f0=appear,
        f1=vanish,
        x=cx + dx,
        y=cy + dy,
        angle=rng.uniform(0, 2 * np.pi) + rng.uniform(-0.3, 0.3) * t + pose.angle,
        sx=pose.sx,
        sy=pose.sy,
        bright=pose.bright,
        alpha=fade_curve(f, appear, vanish, *fades),
        layer=1,
    )
    return sprite, box


def box_overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Area shared by two ``(x0, y0, x1, y1)`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def plan_video(
    seed: int,
    index: int,
    classes: list[ClassSpec],
    size: int,
    fps: float,
    min_duration: float,
    max_duration: float,
) -> VideoPlan:
    """Draw video ``index`` of the dataset with ``seed`` (pure: same inputs, same plan)."""
    rng = np.random.default_rng([seed, index])
    frames = max(to_frames(rng.uniform(min_duration, max_duration), fps), 2)
    plan = VideoPlan(index, frames, fps, size, draw_background(rng, frames, fps, size))
    shapes = sorted({c.shape for c in classes})
    plan.sprites += draw_distractors(rng, frames, fps, size, shapes)
    weights = rng.dirichlet(np.full(len(classes), 2.0))
    taken: Taken = []
    for slot in _schedule(rng, frames, fps):
        spec = classes[int(rng.choice(len(classes), p=weights))]
        sprite, inst = _actor(rng, spec, slot, fps, size, taken)
        plan.sprites.append(sprite)
        plan.instances.append(inst)
    return plan
