"""ActivityNet-style temporal annotations: the data model, strict loading and writing.

The on-disk contract (DESIGN.md) is::

    {"database": {VIDEO_ID: {"subset": "training|validation|test", "duration": s,
                             "fps": f (optional),
                             "annotations": [{"segment": [s, e], "label": NAME,
                                              "label_id": i (optional)}]}}}

Every problem is reported with the file, the video id and the field, so a user can fix
the file without reading this code.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from features.atomic import atomic_write_text
from features.errors import UserInputError
from features.video_ids import VideoIdError
from features.video_ids import check_video_id as _check_video_id

SUBSETS = ("training", "validation", "test")
_SUBSET_ALIASES = {
    "training": "training",
    "train": "training",
    "validation": "validation",
    "val": "validation",
    "test": "test",
    "testing": "test",
}

SegmentPolicy = Literal["strict", "repair", "keep"]
"""What to do with a segment that is out of order or outside the video.

``strict`` rejects it, ``repair`` clips it to ``[0, duration]`` and drops it if it becomes
empty (importers of public files use this: ActivityNet 1.3 and MultiTHUMOS both contain such
segments), ``keep`` takes it as written (the evaluator, which must count ground truth exactly
as the official code does).
"""


class AnnotationError(UserInputError):
    """A malformed annotation file; the message names the file, video and field."""


def check_video_id(video_id: Any, source: str = "") -> str:
    """``video_id`` if the feature store can hold it, else AnnotationError naming ``source``.

    The rule is ``features.video_ids.check_video_id`` (the store's); this only turns its
    error into the annotation loader's.
    """
    try:
        return _check_video_id(video_id, source)
    except VideoIdError as exc:
        raise AnnotationError(str(exc)) from None


def normalize_subset(value: Any, where: str) -> str:
    """Map subset spellings used by public files (``train``, ``Validation``, ``testing``)."""
    if isinstance(value, str) and value.strip().lower() in _SUBSET_ALIASES:
        return _SUBSET_ALIASES[value.strip().lower()]
    raise AnnotationError(
        f"{where}: field 'subset': expected one of {', '.join(SUBSETS)} "
        f"(or train/val/testing), got {value!r}"
    )


@dataclass(frozen=True)
class Instance:
    """One annotated action: a label and a segment in seconds."""

    label: str
    start: float
    end: float
    label_id: int | None = None

    @property
    def length(self) -> float:
        return self.end - self.start


@dataclass
class Video:
    """One video of a dataset and its action instances."""

    video_id: str
    subset: str
    duration: float | None = None
    fps: float | None = None
    instances: list[Instance] = field(default_factory=list)


@dataclass
class LabelMap:
    """A stable mapping between class names and contiguous indices ``0..K-1``.

    Order: the ids a file gives (when every instance has one and they agree), otherwise
    names sorted alphabetically, so that the same labels always get the same indices.
    """

    names: list[str]

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise AnnotationError(f"label map has duplicate names: {self.names}")
        self._index = {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"label {name!r} is not in the label map ({len(self)} labels)") from None

    def to_json(self) -> dict[str, int]:
        return dict(self._index)

    @classmethod
    def from_videos(cls, videos: Iterable[Video]) -> LabelMap:
        ids: dict[str, int | None] = {}
        for video in videos:
            for inst in video.instances:
                ids.setdefault(inst.label, inst.label_id)
        names = list(ids)
        if (
            names
            and all(i is not None for i in ids.values())
            and len(set(ids.values())) == len(ids)
        ):
            return cls(sorted(names, key=lambda n: ids[n]))  # type: ignore[arg-type,return-value]
        return cls(sorted(names))


@dataclass
class AnnotationSet:
    """All videos of a dataset, keyed by video id, in file order."""

    videos: dict[str, Video]
    source: str = "<memory>"
    repairs: list[str] = field(default_factory=list)
    """Human-readable notes on segments changed or dropped under the ``repair`` policy."""

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self) -> Iterator[Video]:
        return iter(self.videos.values())

    def subset(self, *names: str) -> list[Video]:
        """Videos whose subset is one of ``names`` (aliases such as ``train`` accepted)."""
        wanted = {normalize_subset(n, f"{self.source}: requested subset") for n in names}
        return [v for v in self.videos.values() if v.subset in wanted]

    def label_map(self) -> LabelMap:
        return LabelMap.from_videos(self.videos.values())

    def num_instances(self) -> int:
        return sum(len(v.instances) for v in self.videos.values())

    def to_json(self) -> dict[str, Any]:
        database: dict[str, Any] = {}
        for v in self.videos.values():
            entry: dict[str, Any] = {"subset": v.subset}
            if v.duration is not None:
                entry["duration"] = v.duration
            if v.fps is not None:
                entry["fps"] = v.fps
            anns = []
            for inst in v.instances:
                ann: dict[str, Any] = {"segment": [inst.start, inst.end], "label": inst.label}
                if inst.label_id is not None:
                    ann["label_id"] = inst.label_id
                anns.append(ann)
            entry["annotations"] = anns
            database[v.video_id] = entry
        return {"version": "tal-pipeline-1", "database": database}

    def summary(self) -> dict[str, Any]:
        per_subset: dict[str, dict[str, int]] = {}
        for v in self.videos.values():
            s = per_subset.setdefault(v.subset, {"videos": 0, "instances": 0})
            s["videos"] += 1
            s["instances"] += len(v.instances)
        return {
            "videos": len(self),
            "instances": self.num_instances(),
            "labels": len(self.label_map()),
            "subsets": per_subset,
            "repairs": len(self.repairs),
        }


def write_annotations(annotations: AnnotationSet, path: str | os.PathLike[str]) -> Path:
    """Write the ActivityNet-style JSON atomically (same content, same bytes)."""
    return atomic_write_text(path, json.dumps(annotations.to_json(), indent=1) + "\n")


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Read a JSON file; a missing or malformed file raises AnnotationError naming it."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AnnotationError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 text ({exc.reason})") from None


def load_annotations(
    path: str | os.PathLike[str], segments: SegmentPolicy = "strict"
) -> AnnotationSet:
    """Load and validate an ActivityNet-style annotation file (see module docstring)."""
    data = read_json(path, "annotation file")
    return parse_annotations(data, source=str(path), segments=segments)


def _number(value: Any, where: str, what: str) -> float:
    # Public files sometimes store numbers as strings ("18.6"): accept those, like the
    # official evaluator's float() does, but nothing else.
    if isinstance(value, bool):
        raise AnnotationError(f"{where}: expected {what}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: expected {what}, got {value!r}") from None
    if not math.isfinite(number):
        raise AnnotationError(f"{where}: expected {what}, got {value!r}")
    return number


def parse_annotations(
    data: Any, source: str = "<memory>", segments: SegmentPolicy = "strict"
) -> AnnotationSet:
    """Validate a decoded annotation document into an AnnotationSet."""
    if not isinstance(data, dict) or "database" not in data:
        raise AnnotationError(
            f"{source}: expected a JSON object with a 'database' key mapping video ids to "
            f"entries, got {type(data).__name__}"
            + (f" with keys {sorted(data)[:5]}" if isinstance(data, dict) else "")
        )
    database = data["database"]
    if not isinstance(database, dict):
        raise AnnotationError(
            f"{source}: field 'database': expected an object of videos, got {type(database).__name__}"
        )
    if not database:
        raise AnnotationError(f"{source}: field 'database' is empty: no videos to use")
    videos: dict[str, Video] = {}
    repairs: list[str] = []
    label_ids: dict[str, tuple[int, str]] = {}
    for video_id, entry in database.items():
        check_video_id(video_id, source)
        where = f"{source}: video {video_id!r}"
        video = _parse_video(video_id, entry, where, segments, repairs)
        for i, inst in enumerate(video.instances):
            if inst.label_id is None:
                continue
            seen = label_ids.setdefault(inst.label, (inst.label_id, video_id))
            if seen[0] != inst.label_id:
                raise AnnotationError(
                    f"{where}: field 'annotations[{i}].label_id': label {inst.label!r} has id "
                    f"{inst.label_id} here but {seen[0]} in video {seen[1]!r}"
                )
        videos[video_id] = video
    return AnnotationSet(videos=videos, source=source, repairs=repairs)


def _parse_video(
    video_id: str, entry: Any, where: str, segments: SegmentPolicy, repairs: list[str]
) -> Video:
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where}: expected an object, got {type(entry).__name__}")
    if "subset" not in entry:
        raise AnnotationError(f"{where}: field 'subset' is missing")
    subset = normalize_subset(entry["subset"], where)
    duration = None
    if entry.get("duration") is not None:
        duration = _number(entry["duration"], f"{where}: field 'duration'", "seconds > 0")
        if duration <= 0:
            raise AnnotationError(
                f"{where}: field 'duration': expected seconds > 0, got {duration}"
            )
    fps = None
    if entry.get("fps") is not None:
        fps = _number(entry["fps"], f"{where}: field 'fps'", "frames per second > 0")
        if fps <= 0:
            raise AnnotationError(
                f"{where}: field 'fps': expected frames per second > 0, got {fps}"
            )
    anns = entry.get("annotations")
    if anns is None:
        raise AnnotationError(f"{where}: field 'annotations' is missing (use [] for none)")
    if not isinstance(anns, list):
        raise AnnotationError(
            f"{where}: field 'annotations': expected a list, got {type(anns).__name__}"
        )
    instances: list[Instance] = []
    for i, ann in enumerate(anns):
        inst = _parse_instance(
            ann, f"{where}: field 'annotations[{i}]", duration, segments, repairs
        )
        if inst is not None:
            instances.append(inst)
    return Video(video_id=video_id, subset=subset, duration=duration, fps=fps, instances=instances)


def _parse_instance(
    ann: Any, where: str, duration: float | None, segments: SegmentPolicy, repairs: list[str]
) -> Instance | None:
    if not isinstance(ann, dict):
        raise AnnotationError(f"{where}': expected an object, got {type(ann).__name__}")
    label = ann.get("label")
    if not isinstance(label, str) or not label.strip():
        raise AnnotationError(f"{where}.label': expected a non-empty class name, got {label!r}")
    label_id = ann.get("label_id")
    if label_id is not None and (
        isinstance(label_id, bool) or not isinstance(label_id, int) or label_id < 0
    ):
        raise AnnotationError(f"{where}.label_id': expected an integer >= 0, got {label_id!r}")
    seg = ann.get("segment")
    if not isinstance(seg, (list, tuple)) or len(seg) != 2:
        raise AnnotationError(f"{where}.segment': expected [start, end] in seconds, got {seg!r}")
    start = _number(seg[0], f"{where}.segment'", "[start, end] as numbers")
    end = _number(seg[1], f"{where}.segment'", "[start, end] as numbers")
    if segments == "keep":
        return Instance(label, start, end, label_id)
    problems = []
    if start < 0:
        problems.append("start < 0")
    if duration is not None and end > duration:
        problems.append(f"end > duration {duration}")
    if end <= start:
        problems.append("end <= start")
    if not problems:
        return Instance(label, start, end, label_id)
    if segments == "strict":
        raise AnnotationError(
            f"{where}.segment': expected 0 <= start < end"
            + (f" <= duration ({duration})" if duration is not None else "")
            + f", got [{start}, {end}] ({'; '.join(problems)})"
        )
    fixed_start = max(start, 0.0)
    fixed_end = min(end, duration) if duration is not None else end
    if fixed_end <= fixed_start:
        repairs.append(f"{where}.segment': dropped [{start}, {end}] ({'; '.join(problems)})")
        return None
    repairs.append(f"{where}.segment': clipped [{start}, {end}] to [{fixed_start}, {fixed_end}]")
    return Instance(label, fixed_start, fixed_end, label_id)
