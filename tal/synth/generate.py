"""Generate the synthetic benchmark: H.264 videos, ActivityNet-style annotations, metadata.

Each video is planned from ``np.random.default_rng([seed, video_index])`` and rendered and
encoded deterministically, so the dataset depends on the parameters only, never on
``workers`` (videos are rendered in a process pool and written back in order).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.atomic import atomic_write_text
from tal.data.annotations import AnnotationSet, Instance, Video, write_annotations
from tal.synth.classes import MAX_CLASSES, ClassSpec
from tal.synth.encode import X264_OPTIONS, write_h264
from tal.synth.plan import MIN_VIDEO_S, VideoPlan, plan_video
from tal.synth.presets import Scenario, get_preset, resolve_sizes
from tal.synth.render import render_frames
from tal.synth.scenario import plan_scenario_video, preset_class_specs

MIN_SIZE, MAX_SIZE = 32, 1024
MIN_FPS, MAX_FPS = 5.0, 120.0
"""Below 5 fps the fast patterns (shake, blink) alias into noise."""
SPLIT = {"training": 0.6, "validation": 0.2, "test": 0.2}


@dataclass(frozen=True)
class SynthSummary:
    """What ``generate_dataset`` wrote."""

    out_dir: Path
    annotations: Path
    videos: int
    instances: int
    frames: dict[str, int]
    """Frame count of every video, by video id."""
    class_names: list[str]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _validate(
    videos: Any,
    classes: Any,
    seed: Any,
    size: Any,
    fps: Any,
    min_duration: Any,
    max_duration: Any,
    workers: Any,
) -> None:
    """Raise ValueError naming the argument and its allowed range."""
    if not _is_int(videos) or videos < 3:
        raise ValueError(
            f"videos must be an integer >= 3 (training, validation and test each need one), "
            f"got {videos!r}"
        )
    if not _is_int(classes) or not 2 <= classes <= MAX_CLASSES:
        raise ValueError(
            f"classes must be an integer in [2, {MAX_CLASSES}] (the number of distinct "
            f"motion x shape classes available), got {classes!r}"
        )
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not _is_int(size) or not MIN_SIZE <= size <= MAX_SIZE or size % 2:
        raise ValueError(
            f"size must be an even integer in [{MIN_SIZE}, {MAX_SIZE}] "
            f"(H.264 with yuv420p needs even frame sizes), got {size!r}"
        )
    if not _is_number(fps) or not MIN_FPS <= fps <= MAX_FPS:
        raise ValueError(f"fps must be a number in [{MIN_FPS:g}, {MAX_FPS:g}], got {fps!r}")
    if not _is_number(min_duration) or min_duration < MIN_VIDEO_S:
        raise ValueError(
            f"min_duration must be a number of seconds >= {MIN_VIDEO_S:g}: shorter videos "
            f"cannot hold one action (fade-in, idle lead-in, a 1 s action, idle lead-out, "
            f"fade-out), got {min_duration!r}"
        )
    if not _is_number(max_duration) or max_duration < min_duration:
        raise ValueError(
            f"max_duration must be a number of seconds >= min_duration ({min_duration!r}), "
            f"got {max_duration!r}"
        )
    if not _is_int(workers) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")


def assign_subsets(
    videos: int,
    seed: int,
    validation: float = SPLIT["validation"],
    test: float = SPLIT["test"],
) -> list[str]:
    """Deterministic split, ~60/20/20 unless given (a preset may test on a larger share);
    every subset gets at least one video when videos >= 3."""
    n_val = max(1, round(videos * validation))
    n_test = max(1, round(videos * test))
    names = ["training"] * (videos - n_val - n_test) + ["validation"] * n_val + ["test"] * n_test
    order = np.random.default_rng([seed, videos, 0x5EED5]).permutation(videos)
    return [names[int(k)] for k in order]


def _plan(job: _Job) -> VideoPlan:
    st = job.settings
    args = (st.seed, job.index, list(st.specs), st.size, st.fps, st.min_duration, st.max_duration)
    if st.scenario is None:
        return plan_video(*args)
    return plan_scenario_video(*args, st.scenario)


def _render_video(job: _Job) -> dict[str, Any]:
    """Plan, render and encode one video (runs in a worker process)."""
    st = job.settings
    plan = _plan(job)
    frames = render_frames(
        plan.background, plan.sprites, plan.frames, st.size, [st.seed, job.index, 1]
    )
    written = write_h264(job.path, frames, st.fps)
    if written != plan.frames:
        raise RuntimeError(f"{job.path}: wrote {written} frames, planned {plan.frames}")
    return {
        "index": job.index,
        "frames": plan.frames,
        "instances": [inst.to_json() for inst in plan.instances],
    }


def _video_id(index: int, videos: int) -> str:
    return f"synth_{index:0{max(4, len(str(videos - 1)))}d}"


_GENERATED = re.compile(r"synth_\d+\.mp4(\.part)?|\.synth_\d+\.mp4\.[0-9a-f]+\.tmp")


def _remove_stale(video_dir: Path, keep: set[str]) -> None:
    """Delete videos of an earlier, larger generation (only names this generator makes),
    and temporary files that a killed run left (``features.atomic`` names them
    ``.NAME.RANDOM.tmp``; older versions wrote ``NAME.part``)."""
    for path in video_dir.glob("*synth_*.mp4*"):
        if _GENERATED.fullmatch(path.name) and path.name not in keep:
            path.unlink()


@dataclass(frozen=True)
class _Settings:
    """Validated, resolved arguments of one dataset."""

    videos: int
    classes: int
    seed: int
    size: int
    fps: float
    min_duration: float
    max_duration: float
    preset: str | None
    specs: tuple[ClassSpec, ...]
    scenario: Scenario | None
    split: tuple[float, float] = (SPLIT["validation"], SPLIT["test"])
    """Shares of validation and test videos (a preset's own, else ~20/20)."""

    def params(self) -> dict[str, Any]:
        """What ``synth.json`` records as ``params`` (``preset`` only when there is one)."""
        out: dict[str, Any] = {
            "videos": self.videos,
            "classes": self.classes,
            "seed": self.seed,
            "size": self.size,
            "fps": self.fps,
            "min_duration": self.min_duration,
            "max_duration": self.max_duration,
        }
        if self.preset is not None:
            out["preset"] = self.preset
        return out


@dataclass(frozen=True)
class _Job:
    """One video to plan, render and write to ``path`` (sent to a worker process)."""

    index: int
    path: str
    settings: _Settings


def _settings(
    videos: Any,
    classes: Any,
    seed: Any,
    size: Any,
    fps: Any,
    min_duration: Any,
    max_duration: Any,
    workers: Any,
    preset: Any,
) -> _Settings:
    """Resolve the preset's sizes for arguments left None, then validate everything."""
    scenario = None if preset is None else get_preset(preset).scenario
    given = {
        "videos": videos,
        "classes": classes,
        "size": size,
        "fps": fps,
        "min_duration": min_duration,
        "max_duration": max_duration,
    }
    r = resolve_sizes(preset, given)
    _validate(
        r["videos"],
        r["classes"],
        seed,
        r["size"],
        r["fps"],
        r["min_duration"],
        r["max_duration"],
        workers,
    )
    specs = preset_class_specs(preset, int(r["classes"]), float(r["min_duration"]))
    return _Settings(
        int(r["videos"]),
        int(r["classes"]),
        int(seed),
        int(r["size"]),
        float(r["fps"]),
        float(r["min_duration"]),
        float(r["max_duration"]),
        preset,
        tuple(specs),
        scenario,
        (SPLIT["validation"], SPLIT["test"]) if preset is None else get_preset(preset).split,
    )


def iter_plans(
    *,
    videos: int | None = None,
    classes: int | None = None,
    seed: int = 0,
    size: int | None = None,
    fps: float | None = None,
    min_duration: float | None = None,
    max_duration: float | None = None,
    preset: str | None = None,
) -> Iterator[tuple[str, VideoPlan]]:
    """``(subset, plan)`` of every video ``generate_dataset`` would write with these
    arguments, one at a time and without rendering (cheap: for sizes and counts)."""
    st = _settings(videos, classes, seed, size, fps, min_duration, max_duration, 1, preset)
    subsets = assign_subsets(st.videos, st.seed, *st.split)
    for i in range(st.videos):
        yield subsets[i], _plan(_Job(i, "", st))


def generate_dataset(
    out_dir: str | Path,
    *,
    videos: int | None = None,
    classes: int | None = None,
    seed: int = 0,
    size: int | None = None,
    fps: float | None = None,
    min_duration: float | None = None,
    max_duration: float | None = None,
    workers: int = 1,
    preset: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> SynthSummary:
    """Write ``videos`` synthetic H.264 videos with annotated actions of ``classes`` classes.

    Sizes left None come from ``preset`` (``tal.synth.presets``), or without one are 24
    videos, 6 classes, 128 px, 15 fps, 20-40 s. Writes ``OUT_DIR/videos/<id>.mp4``,
    ``OUT_DIR/annotations.json`` and, last (it marks a complete dataset),
    ``OUT_DIR/synth.json``: ``params`` (the resolved arguments but ``workers``; ``preset``
    only when set), ``encoder``, ``classes`` (id, name, motion, shape; a preset's cue or
    styles) and per video its file, subset, ``frames``, ``width``, ``height``, ``fps`` and
    instances (action and visible frame ranges, cycles, amplitude, the pixel box the action
    covers; a preset's style, burst frames or cue frames). ``progress(done, total,
    video_id)`` is called as each video finishes. The same arguments give the same files for
    any ``workers``. Earlier ``synth_*.mp4`` files beyond ``videos`` are removed.
    """
    st = _settings(videos, classes, seed, size, fps, min_duration, max_duration, workers, preset)
    videos, fps, size, specs = st.videos, st.fps, st.size, st.specs
    out = Path(out_dir)
    video_dir = out / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    (out / "synth.json").unlink(missing_ok=True)
    ids = [_video_id(i, videos) for i in range(videos)]
    _remove_stale(video_dir, {f"{v}.mp4" for v in ids})
    jobs = [_Job(i, str(video_dir / f"{vid}.mp4"), st) for i, vid in enumerate(ids)]
    results: dict[int, dict[str, Any]] = {}

    def finished(result: dict[str, Any]) -> None:
        results[result["index"]] = result
        if progress is not None:
            progress(len(results), videos, ids[result["index"]])

    if workers == 1:
        for job in jobs:
            finished(_render_video(job))
    else:
        # spawn: safe even when the caller already runs threads (torch, Ray, Prefect).
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, videos), mp_context=context) as pool:
            for future in as_completed([pool.submit(_render_video, job) for job in jobs]):
                finished(future.result())

    subsets = assign_subsets(videos, st.seed, *st.split)
    database: dict[str, Video] = {}
    for i, video_id in enumerate(ids):
        n = results[i]["frames"]
        instances = [
            Instance(
                d["label"], d["action_frames"][0] / fps, d["action_frames"][1] / fps, d["label_id"]
            )
            for d in results[i]["instances"]
        ]
        database[video_id] = Video(video_id, subsets[i], n / fps, fps, instances)
    ann_path = write_annotations(AnnotationSet(database), out / "annotations.json")
    meta = {
        "generator": "tal.synth",
        "format": 1,
        "params": st.params(),
        "encoder": {"codec": "libx264", "pix_fmt": "yuv420p", **X264_OPTIONS},
        "classes": [s.to_json() for s in specs],
        "videos": {
            video_id: {
                "file": f"videos/{video_id}.mp4",
                "subset": subsets[i],
                "frames": results[i]["frames"],
                "width": size,
                "height": size,
                "fps": fps,
                "instances": results[i]["instances"],
            }
            for i, video_id in enumerate(ids)
        },
    }
    atomic_write_text(out / "synth.json", json.dumps(meta, indent=1) + "\n")
    return SynthSummary(
        out_dir=out,
        annotations=ann_path,
        videos=videos,
        instances=sum(len(v.instances) for v in database.values()),
        frames={video_id: results[i]["frames"] for i, video_id in enumerate(ids)},
        class_names=[s.name for s in specs],
    )
