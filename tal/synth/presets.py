"""Presets of `tal synth`: benchmarks in which one method's mechanism should matter.

A preset is a name, default sizes (videos, classes, durations, frame size and rate) and the
scenario knobs the planner (``tal.synth.scenario``) reads: how actions are scheduled, which
class set is used, and whether there are cues, styles, key-frame bursts or a moving camera.
Each carries a paragraph saying what it stresses and why (``tal synth --list-presets`` and
the data guide print it). Sizes are kept to roughly 1,500-1,700 s of 128 px video per
preset, about the size of ``configs/bench72.yaml``, so that I3D (RGB + flow) extraction of
one costs about what that benchmark's does.

This module is pure data (standard library only): the CLI and the config schema import it
without loading numpy or the video encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

PresetName = Literal["standard", "context", "variation", "keyframes", "weak", "camera"]
ClassSet = Literal["plain", "context", "variation", "weak"]

SIZE_FIELDS = ("videos", "classes", "size", "fps", "min_duration", "max_duration")
"""The settings a preset gives defaults for (explicit values always win)."""
PLAIN_DEFAULTS: dict[str, Any] = {
    "videos": 24,
    "classes": 6,
    "size": 128,
    "fps": 15.0,
    "min_duration": 20.0,
    "max_duration": 40.0,
}
"""Sizes without a preset (what `tal synth` has always used)."""


@dataclass(frozen=True)
class Schedule:
    """When actions happen: durations (seconds) and the gaps between one and the next.

    Each of ``tracks`` timelines is a sequence of actors (fade in, idle, act, idle, fade
    out); the next action starts after the previous one of its timeline, overlapping it with
    probability ``overlap_p``, after a short gap with ``short_gap_p``, else after a long one.
    Several timelines run at once, with their actors placed apart.
    """

    action_s: tuple[float, float] = (1.5, 6.0)
    """Wanted action length, drawn log-uniformly."""
    min_action_s: float = 1.0
    """Shortest action (one cut short by the video's end is dropped below it)."""
    idle_s: tuple[float, float] = (0.5, 1.5)
    """Idle lead-in and lead-out of an actor around its action."""
    first_s: tuple[float, float] = (0.0, 1.5)
    """Delay of a timeline's first actor."""
    overlap_p: float = 0.1
    short_gap_p: float = 0.3
    short_gap_s: tuple[float, float] = (0.2, 1.0)
    long_gap_s: tuple[float, float] = (1.0, 4.5)
    tracks: int = 1


@dataclass(frozen=True)
class CueSpec:
    """A marker shown before each action that names its class within a pair (``context``).

    The cue appears at least ``after_s`` after the previous action of the timeline starts
    (so it may show while that action runs, but never before it: the cue an action reads is
    the last one to end before it starts), stays ``duration_s`` and is gone ``lead_s``
    before its own action starts.
    """

    duration_s: tuple[float, float] = (0.5, 0.8)
    lead_s: tuple[float, float] = (2.0, 4.0)
    after_s: tuple[float, float] = (0.2, 0.5)
    radius: tuple[float, float] = (0.09, 0.11)
    """Cue radius as a fraction of the frame size (actors: 0.055-0.085)."""


@dataclass(frozen=True)
class BurstSpec:
    """The class's own pattern only in short bursts of an action (``keyframes``).

    The whole action shows a generic sway (the same for every class, so the extent is
    visible); the class pattern runs in ``count`` bursts of ``duration_s`` each (two only
    in actions of at least ``two_from_s``), together at most ``max_fraction`` of the action.
    """

    count: tuple[int, int] = (1, 2)
    duration_s: tuple[float, float] = (0.4, 1.0)
    max_fraction: float = 0.4
    two_from_s: float = 4.0
    sway_angle: float = 0.35
    """Peak rocking angle of the generic sway, radians."""
    sway_scale: float = 0.08
    """Peak scale pulse of the generic sway."""
    sway_period_s: tuple[float, float] = (0.8, 1.2)


@dataclass(frozen=True)
class CameraSpec:
    """A camera that pans and zooms over the whole scene (``camera``).

    Per axis the view's centre moves by up to ``pan`` x frame size (two sines, periods in
    ``pan_period_s``); the zoom goes between 1 and a per-video maximum drawn from ``zoom``
    with a period in ``zoom_period_s``. Background and every object move with it.
    """

    pan: tuple[float, float] = (0.10, 0.15)
    pan_period_s: tuple[float, float] = (4.0, 8.0)
    zoom: tuple[float, float] = (1.15, 1.3)
    zoom_period_s: tuple[float, float] = (5.0, 10.0)


@dataclass(frozen=True)
class Scenario:
    """The knobs the planner reads; each preset sets the ones its benchmark needs."""

    class_set: ClassSet = "plain"
    schedule: Schedule = field(default_factory=Schedule)
    one_class_per_video: bool = False
    """Every instance of a video has the same class (video-level labels say it all)."""
    dominant_style_p: float = 0.7
    """With styled classes: a video performs a class in one style this often, else another."""
    cue: CueSpec | None = None
    bursts: BurstSpec | None = None
    camera: CameraSpec | None = None

    def __post_init__(self) -> None:
        if self.cue is not None and self.schedule.tracks != 1:
            raise ValueError("a scenario with cues needs one timeline (tracks=1)")
        if self.cue is not None and self.schedule.overlap_p > 0:
            raise ValueError("a scenario with cues needs overlap_p=0 (a cue sits between actions)")

    @property
    def min_action_s(self) -> float:
        if self.bursts is None:
            return self.schedule.min_action_s
        # the shortest burst must fit the fraction of the shortest action
        shortest = self.bursts.duration_s[0] / self.bursts.max_fraction
        return max(self.schedule.min_action_s, shortest)

    @property
    def min_video_s(self) -> float:
        """Shortest video in which one instance always fits (with 1 s for frame rounding)."""
        fade, idle = 0.25, self.schedule.idle_s[0]  # shortest fade (plan.FADE_S) and idle
        before = fade + idle
        if self.cue is not None:
            before = max(before, self.cue.duration_s[0] + self.cue.lead_s[0])
        return max(3.5, before + self.min_action_s + idle + fade + 1.0)


@dataclass(frozen=True)
class Preset:
    """A named benchmark: default sizes, scenario knobs and what it stresses."""

    name: PresetName
    videos: int
    classes: int
    min_duration: float
    max_duration: float
    scenario: Scenario
    summary: str
    """One line: what the benchmark is."""
    stresses: str
    """One paragraph: what it stresses and why (which method's mechanism should matter)."""
    size: int = 128
    fps: float = 15.0
    split: tuple[float, float] = (0.2, 0.2)
    """Shares of validation and test videos (training has the rest)."""

    def sizes(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SIZE_FIELDS}


_DENSE = Schedule(
    action_s=(1.0, 3.0),
    idle_s=(0.3, 0.6),
    first_s=(0.0, 0.5),
    overlap_p=0.15,
    short_gap_p=0.6,
    short_gap_s=(0.2, 0.8),
    long_gap_s=(0.8, 1.5),
    tracks=3,
)
"""Many more actions per second than the plain generator: three timelines at once, short
actions, idles and gaps. Instances per second of video are what buys a benchmark its power;
seconds of video are what extraction costs."""

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="standard",
            videos=200,
            classes=12,
            min_duration=5.0,
            max_duration=7.0,
            scenario=Scenario(schedule=replace(_DENSE, action_s=(0.8, 2.5), min_action_s=0.8)),
            split=(0.15, 0.4),
            summary="many short videos, 12 classes, three overlapping timelines of dense actions",
            stresses=(
                "A general localisation benchmark with enough instances to rank methods: "
                "12 motion x shape classes (every shape in two classes or more, so appearance "
                "alone never names one), three timelines of short actions running at once so "
                "that instances overlap and follow each other closely, at least 150 instances in "
                "validation and 40% of the videos (over 500 instances) in test, so that one "
                "run's mAP is not decided by a handful of segments and a method's interval "
                "is narrow. No single mechanism is favoured; it is the "
                "reference the other presets are read against."
            ),
        ),
        Preset(
            name="context",
            videos=60,
            classes=8,
            min_duration=10.0,
            max_duration=14.0,
            scenario=Scenario(
                class_set="context",
                schedule=Schedule(
                    action_s=(1.2, 3.0),
                    idle_s=(0.3, 0.6),
                    first_s=(0.0, 0.5),
                    overlap_p=0.0,
                    long_gap_s=(0.5, 1.0),
                ),
                cue=CueSpec(),
            ),
            summary="classes in pairs that act alike; a cue seconds before names the class",
            stresses=(
                "Long-range relations inside a video (I2Net's intra-video attention). "
                "Classes come in pairs whose actions look and move exactly alike; which "
                "member of the pair an action is, is shown only by a cue (a star or a "
                "crescent marker, in a fixed colour) that appears 2-4 s before the action "
                "and is gone before it starts. The cue is not annotated. A model that sees "
                "only a few seconds around an action can localise it and name its pair, but "
                "must guess the member; one that relates the action to the most recent cue "
                "earlier in the video can classify it."
            ),
        ),
        Preset(
            name="variation",
            videos=90,
            classes=6,
            min_duration=5.0,
            max_duration=8.0,
            scenario=Scenario(class_set="variation", schedule=_DENSE, dominant_style_p=0.7),
            summary="a class is a motion performed in 3 styles (shape, tempo, amplitude)",
            stresses=(
                "One class performed in several ways (I2Net's inter-video attention between "
                "paired videos of a class). A class is a motion; each has 3 styles, each "
                "with its own shape, tempo and amplitude, and shapes are shared between "
                "classes. A video performs a class mostly in one style (70%), so two "
                "training videos paired by class often show it in different styles: "
                "attending from one to the other helps only if the model matches the motion "
                "across appearances rather than the look of one style."
            ),
        ),
        Preset(
            name="keyframes",
            videos=90,
            classes=6,
            min_duration=6.0,
            max_duration=9.0,
            scenario=Scenario(
                schedule=Schedule(
                    action_s=(2.5, 6.0),
                    min_action_s=2.0,
                    idle_s=(0.3, 0.6),
                    first_s=(0.0, 0.5),
                    short_gap_p=0.6,
                    long_gap_s=(0.8, 1.5),
                    tracks=3,
                ),
                bursts=BurstSpec(),
            ),
            summary="the class shows only in 1-2 short bursts inside each action",
            stresses=(
                "Frames of unequal importance inside an action (ASL's action-sensitivity "
                "weighting). During the whole annotated action the actor sways in a way "
                "common to every class, so the extent is visible, but its class's own "
                "pattern runs only in 1-2 bursts of 0.4-1.0 s that together cover at most "
                "40% of the action. Classification must rely on those few frames while "
                "localisation uses all of them; treating every frame of the action alike "
                "dilutes the class evidence."
            ),
        ),
        Preset(
            name="weak",
            videos=300,
            classes=8,
            min_duration=3.5,
            max_duration=4.5,
            scenario=Scenario(
                class_set="weak",
                schedule=Schedule(
                    action_s=(1.2, 3.0),
                    idle_s=(0.3, 0.8),
                    first_s=(0.0, 0.5),
                    short_gap_p=0.5,
                    long_gap_s=(1.0, 2.0),
                ),
                one_class_per_video=True,
            ),
            summary="300 short videos, one class each, classes = motion x shape pairs",
            stresses=(
                "Learning from many videos with video-level labels only (CO2-Net). Each "
                "short video holds 1-3 actions (mostly one) of a single class, so its label "
                "says what happens but not when. Classes pair 4 motions with 4 shapes in a "
                "cycle (each motion and each shape in two classes), and distractors of the "
                "same shapes wander about: the RGB stream sees the right shape in many "
                "places, the flow stream sees motion in distractors too, and only the two "
                "together name the class and find the segment."
            ),
        ),
        Preset(
            name="camera",
            videos=90,
            classes=6,
            min_duration=5.0,
            max_duration=8.0,
            scenario=Scenario(schedule=_DENSE, camera=CameraSpec()),
            summary="the whole scene pans and zooms, so everything moves between frames",
            stresses=(
                "Motion between frames that is not action (ATA's alignment of patches "
                "across frames). A camera pans by up to 15% of the frame per axis and zooms "
                "in by up to 30%, back and forth over a few seconds, moving the background, "
                "distractors and actors alike: the view moves about ten times as fast as the "
                "slow background drift of the other presets. Frame differences and optical "
                "flow are large everywhere; a model must follow content as it moves to see "
                "which object performs a pattern."
            ),
        ),
    )
}
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a one-line ValueError lists the known ones."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESET_NAMES)}, got {name!r}")
    return PRESETS[name]


def resolve_sizes(preset: str | None, given: dict[str, Any]) -> dict[str, Any]:
    """``SIZE_FIELDS`` values: those in ``given`` that are not None, the rest from the preset
    (or the plain defaults without one)."""
    defaults = PLAIN_DEFAULTS if preset is None else get_preset(preset).sizes()
    return {k: defaults[k] if given.get(k) is None else given[k] for k in SIZE_FIELDS}
