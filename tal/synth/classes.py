"""Action classes of the synthetic benchmark: a motion pattern performed by a shape.

A class is (motion, shape). Shapes are shared between classes and with the distractors, and
once there are more classes than motions, motions are shared too, so neither appearance nor
motion alone names the class. Every motion starts and ends in the object's rest pose and
changes it from the first action frame on, so the annotated segment is exactly the span in
which the object moves in a way idle objects never do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("disc", "square", "triangle", "cross", "ring")


@dataclass(frozen=True)
class MotionSpec:
    """A motion pattern and the per-instance ranges it is drawn from."""

    name: str
    period: tuple[float, float]
    """Seconds per cycle (per turn, bounce, pulse...)."""
    amplitude: tuple[float, float]
    """Displacement as a fraction of the frame size, or a scale/brightness depth."""


MOTIONS: tuple[MotionSpec, ...] = (
    MotionSpec("bounce", (0.5, 1.0), (0.10, 0.20)),  # vertical hops up from the rest point
    MotionSpec("slide", (0.8, 1.6), (0.10, 0.20)),  # horizontal back and forth
    MotionSpec("rotate", (0.8, 2.0), (0.0, 0.0)),  # whole turns in place
    MotionSpec("grow", (0.6, 1.2), (0.35, 0.70)),  # scale pulses
    MotionSpec("blink", (0.5, 1.0), (0.60, 0.85)),  # brightness off/on
    MotionSpec("zigzag", (1.2, 2.0), (0.10, 0.18)),  # sharp-cornered diagonal path
    MotionSpec("orbit", (0.9, 1.8), (0.07, 0.13)),  # circular path through the rest point
    MotionSpec("shake", (0.5, 1.0), (0.012, 0.025)),  # fast small random jitter
    MotionSpec("figure8", (1.2, 2.0), (0.10, 0.16)),  # lissajous figure eight
    MotionSpec("squash", (0.6, 1.2), (0.30, 0.50)),  # alternately wide and tall
)
MOTION_BY_NAME = {m.name: m for m in MOTIONS}

# Class k = (MOTIONS[k % 10], shape). The first ten use three shapes in turn, so even the
# default six classes share every shape between two classes; classes 10-19 repeat the
# motions with other shapes.
_CLASS_SHAPES = (
    *("disc", "square", "triangle", "square", "triangle"),  # classes 0-4
    *("disc", "cross", "ring", "cross", "ring"),  # classes 5-9
    *("triangle", "disc", "square", "triangle", "disc"),  # classes 10-14
    *("square", "ring", "cross", "disc", "cross"),  # classes 15-19
)
MAX_CLASSES = len(_CLASS_SHAPES)


@dataclass(frozen=True)
class Style:
    """One way of performing a class (preset ``variation``): a shape and factors on the
    motion's period and amplitude ranges."""

    shape: str
    tempo: float
    """Factor on the period (below 1: faster)."""
    amplitude: float
    """Factor on the amplitude (depths of blink stay below 1)."""

    def to_json(self) -> dict[str, object]:
        return {"shape": self.shape, "tempo": self.tempo, "amplitude": self.amplitude}


@dataclass(frozen=True)
class ClassSpec:
    """One action class: its index, readable name, motion and shape.

    Presets add: ``cue``, the marker shape that names the class within a pair of classes
    that act alike (``context``), and ``styles``, the ways the class is performed
    (``variation``; ``shape`` is then ``"mixed"``: each style has its own).
    """

    id: int
    name: str
    motion: str
    shape: str
    cue: str | None = None
    styles: tuple[Style, ...] = ()

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id,
            "name": self.name,
            "motion": self.motion,
            "shape": self.shape,
        }
        if self.cue is not None:
            out["cue"] = self.cue
        if self.styles:
            out["styles"] = [s.to_json() for s in self.styles]
        return out


def class_specs(classes: int) -> list[ClassSpec]:
    """The first ``classes`` class specs (fixed order, so names and ids never change)."""
    if not 1 <= classes <= MAX_CLASSES:
        raise ValueError(f"classes must be in [1, {MAX_CLASSES}], got {classes}")
    specs = []
    for k in range(classes):
        motion = MOTIONS[k % len(MOTIONS)].name
        shape = _CLASS_SHAPES[k]
        specs.append(ClassSpec(k, f"{motion}_{shape}", motion, shape))
    return specs


CUE_SHAPES = ("star", "crescent")
"""Cue markers of the ``context`` preset: no actor or distractor has these shapes, and no
rotation of one looks like the other."""
STYLE_TEMPO = (1.0, 0.6, 1.6)
STYLE_AMPLITUDE = (1.0, 0.65, 1.35)


def context_class_specs(classes: int) -> list[ClassSpec]:
    """Pairs of classes that act alike: classes ``2j`` and ``2j + 1`` both have the motion
    and shape of plain class ``j`` and differ only in the cue shown before them."""
    if classes % 2 or not 2 <= classes <= MAX_CLASSES:
        raise ValueError(
            f"classes must be an even integer in [2, {MAX_CLASSES}] for preset 'context' "
            f"(classes come in pairs), got {classes!r}"
        )
    return [
        ClassSpec(2 * j + m, f"{base.name}_{cue}", base.motion, base.shape, cue=cue)
        for j, base in enumerate(class_specs(classes // 2))
        for m, cue in enumerate(CUE_SHAPES)
    ]


def variation_class_specs(classes: int) -> list[ClassSpec]:
    """A class per motion, each in 3 styles: its own shape, tempo and amplitude.

    Style ``s`` of class ``k`` has shape ``SHAPES[(k + 2s) % 5]``: three different shapes
    per class, and every shape in several classes, so a shape never names a class.
    """
    if not 2 <= classes <= len(MOTIONS):
        raise ValueError(
            f"classes must be an integer in [2, {len(MOTIONS)}] for preset 'variation' "
            f"(a class is a motion), got {classes!r}"
        )
    specs = []
    for k in range(classes):
        styles = tuple(
            Style(SHAPES[(k + 2 * s) % len(SHAPES)], tempo, amp)
            for s, (tempo, amp) in enumerate(zip(STYLE_TEMPO, STYLE_AMPLITUDE, strict=True))
        )
        motion = MOTIONS[k].name
        specs.append(ClassSpec(k, motion, motion, "mixed", styles=styles))
    return specs


def weak_class_specs(classes: int) -> list[ClassSpec]:
    """Motions and shapes paired in a cycle: motion ``j`` with shapes ``j`` and ``j + 1``
    (modulo the shapes used), so each motion and each shape belongs to two classes or more
    and neither alone names a class (preset ``weak``)."""
    if classes % 2 or not 4 <= classes <= 2 * len(MOTIONS):
        raise ValueError(
            f"classes must be an even integer in [4, {2 * len(MOTIONS)}] for preset 'weak' "
            f"(each motion in two classes), got {classes!r}"
        )
    n_shapes = min(len(SHAPES), classes // 2)
    specs: list[ClassSpec] = []
    for j in range(classes // 2):
        motion = MOTIONS[j].name
        for shape in (SHAPES[j % n_shapes], SHAPES[(j + 1) % n_shapes]):
            specs.append(ClassSpec(len(specs), f"{motion}_{shape}", motion, shape))
    return specs


@dataclass
class Pose:
    """Per-frame changes an action applies to the rest pose (arrays of one length)."""

    dx: np.ndarray
    dy: np.ndarray
    angle: np.ndarray
    sx: np.ndarray
    sy: np.ndarray
    bright: np.ndarray


def _triangle_wave(u: np.ndarray) -> np.ndarray:
    """Period-1 triangle wave: 0 at u=0, +1 at 0.25, -1 at 0.75 (sharp corners)."""
    return (2.0 / np.pi) * np.arcsin(np.sin(2.0 * np.pi * u))


def action_pose(
    motion: str,
    t: np.ndarray,
    duration: float,
    cycles: int,
    amplitude: float,
    direction: int,
    rng: np.random.Generator,
) -> Pose:
    """Pose changes at times ``t`` (seconds since action start) of an action of ``cycles``.

    ``amplitude`` is in pixels for moving patterns and a depth for grow/blink/squash.
    Outside ``[0, duration]`` the pose is the rest pose; ``cycles`` whole cycles make the
    action end where it started, so its offset is as sharp as its onset.
    """
    active = (t >= 0) & (t <= duration)
    t = np.clip(t, 0.0, duration)
    period = duration / cycles
    w = 2.0 * np.pi / period
    zero = np.zeros_like(t)
    one = np.ones_like(t)
    dx, dy, angle, sx, sy, bright = zero, zero, zero, one, one, one
    a = amplitude
    if motion == "bounce":
        dy = -a * np.abs(np.sin(np.pi * t / period))
    elif motion == "slide":
        dx = direction * a * np.sin(w * t)
    elif motion == "rotate":
        angle = direction * w * t
    elif motion == "grow":
        sx = sy = 1.0 + a * np.abs(np.sin(np.pi * t / period))
    elif motion == "blink":
        bright = 1.0 - a * np.minimum(1.0, 1.4 * np.abs(np.sin(np.pi * t / period)))
    elif motion == "zigzag":
        dx = direction * a * _triangle_wave(t / period)
        dy = 0.45 * a * _triangle_wave(3.0 * t / period)
    elif motion == "orbit":
        dx = direction * a * np.sin(w * t)
        dy = -a * (1.0 - np.cos(w * t))
    elif motion == "shake":
        # Random jitter that mostly reverses every frame, so it reads as shaking.
        n = len(t)
        flips = np.where(rng.random((n, 2)) < 0.8, -1.0, 1.0)
        sign = np.cumprod(flips, axis=0) * direction
        mag = a * rng.uniform(0.6, 1.0, size=(n, 2))
        dx, dy = sign[:, 0] * mag[:, 0], sign[:, 1] * mag[:, 1]
    elif motion == "figure8":
        dx = a * np.sin(w * t)
        dy = direction * 0.5 * a * np.sin(2.0 * w * t)
    elif motion == "squash":
        sx = np.exp(a * np.sin(w * t))
        sy = 1.0 / sx
    else:
        raise ValueError(f"unknown motion {motion!r}; known: {', '.join(MOTION_BY_NAME)}")
    rest = ~active
    dx, dy, angle = (np.where(rest, 0.0, v) for v in (dx, dy, angle))
    sx, sy, bright = (np.where(rest, 1.0, v) for v in (sx, sy, bright))
    return Pose(dx, dy, angle, sx, sy, bright)
