"""Detections in the ActivityNet results format, held as columns for fast evaluation.

On disk (DESIGN.md)::

    {"results": {VIDEO_ID: [{"label": NAME, "score": float, "segment": [start_s, end_s]}]}}
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from features.atomic import atomic_write_bytes
from tal.data.annotations import AnnotationError, read_json

# one detection: (video_id, label, start seconds, end seconds, score)
DetectionRow = tuple[str, str, float, float, float]


@dataclass
class Detections:
    """Scored segments of many videos, one row per detection, in file order."""

    video_ids: np.ndarray  # object array of str
    labels: np.ndarray  # object array of str
    start: np.ndarray  # float64 seconds
    end: np.ndarray  # float64 seconds
    score: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.score)

    @classmethod
    def from_rows(cls, rows: list[DetectionRow]) -> Detections:
        """Build from ``(video_id, label, start, end, score)`` tuples."""
        if not rows:
            return cls.empty()
        vids, labels, starts, ends, scores = zip(*rows, strict=True)
        return cls(
            video_ids=np.array(vids, dtype=object),
            labels=np.array(labels, dtype=object),
            start=np.asarray(starts, dtype=np.float64),
            end=np.asarray(ends, dtype=np.float64),
            score=np.asarray(scores, dtype=np.float64),
        )

    @classmethod
    def concat(cls, parts: Sequence[Detections]) -> Detections:
        """The rows of ``parts`` in order (each video's detections, kept as arrays)."""
        if not parts:
            return cls.empty()
        return cls(
            video_ids=np.concatenate([p.video_ids for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            start=np.concatenate([p.start for p in parts]),
            end=np.concatenate([p.end for p in parts]),
            score=np.concatenate([p.score for p in parts]),
        )

    @classmethod
    def empty(cls) -> Detections:
        obj = np.array([], dtype=object)
        flt = np.array([], dtype=np.float64)
        return cls(obj, obj.copy(), flt, flt.copy(), flt.copy())

    def to_json(self) -> dict[str, Any]:
        results: dict[str, list[dict[str, Any]]] = {}
        for vid, label, s, e, sc in zip(
            self.video_ids, self.labels, self.start, self.end, self.score, strict=True
        ):
            results.setdefault(vid, []).append(
                {"label": label, "score": float(sc), "segment": [float(s), float(e)]}
            )
        return {"version": "tal-pipeline-1", "results": results}


def _finite(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnnotationError(f"{where}: expected {what}, got {value!r}")
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: expected {what}, got {value!r}")
    return float(value)


InvalidPolicy = Literal["error", "drop"]
_NUMBER = {int, float}


def _entry_error(source: str, vid: str, i: int, det: Any) -> None:
    """Raise the error of entry ``i`` of video ``vid`` if it is malformed."""
    at = f"{source}: video {vid!r}: field 'results[{i}]"
    if not isinstance(det, dict):
        raise AnnotationError(f"{at}': expected an object, got {type(det).__name__}")
    label = det.get("label")
    if not isinstance(label, str) or not label:
        raise AnnotationError(f"{at}.label': expected a class name, got {label!r}")
    _finite(det.get("score"), f"{at}.score'", "a finite number")
    seg = det.get("segment")
    if not isinstance(seg, (list, tuple)) or len(seg) != 2:
        raise AnnotationError(f"{at}.segment': expected [start, end] in seconds, got {seg!r}")
    for value in seg:
        _finite(value, f"{at}.segment'", "[start, end] as finite numbers")


def _first_malformed(results: dict[str, Any], source: str) -> None:
    """Walk every entry and raise the first one's error (the slow path, run only when the
    columns do not validate)."""
    for vid, entries in results.items():
        if not isinstance(entries, list):
            raise AnnotationError(
                f"{source}: video {vid!r}: expected a list of detections, "
                f"got {type(entries).__name__}"
            )
        for i, det in enumerate(entries):
            _entry_error(source, vid, i, det)


def _columns(results: dict[str, Any]) -> tuple[list, list, list, list, list] | None:
    """``(video ids, counts, labels, scores, segments)`` gathered per video with
    comprehensions, or None when an entry is malformed (then the slow path names it)."""
    vids, counts, labels, scores, segments = [], [], [], [], []
    try:
        for vid, entries in results.items():
            if type(entries) is not list:
                return None
            labels += [d["label"] for d in entries]
            scores += [d["score"] for d in entries]
            segments += [d["segment"] for d in entries]
            vids.append(vid)
            counts.append(len(entries))
        # validation on whole columns: types by set, not per entry in Python code
        if labels and (set(map(type, labels)) != {str} or "" in set(labels)):
            return None
        if scores and not set(map(type, scores)) <= _NUMBER:
            return None
        if segments and (set(map(type, segments)) != {list} or set(map(len, segments)) != {2}):
            return None
        flat = [x for seg in segments for x in seg]
        if flat and not set(map(type, flat)) <= _NUMBER:
            return None
    except (TypeError, KeyError, AttributeError):
        return None
    return vids, counts, labels, scores, flat


def parse_predictions(
    data: Any,
    source: str = "<memory>",
    invalid: InvalidPolicy = "error",
    log: Callable[[str], None] | None = None,
) -> Detections:
    """Validate a decoded results document; errors name the file, video and entry.

    Validated as columns (numpy), so a million detections parse in about a second; a
    malformed entry is then located and named by a walk over the entries. A segment whose end
    is before its start, or whose start is negative, is an error, or with ``invalid="drop"``
    is dropped and counted (``log`` gets one line)."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise AnnotationError(
            f"{source}: expected a JSON object with a 'results' object mapping video ids to "
            "lists of {label, score, segment}"
        )
    results = data["results"]
    cols = _columns(results)
    if cols is None:
        _first_malformed(results, source)
        raise AnnotationError(f"{source}: malformed results")  # the walk names it first
    vids, counts, labels, scores, flat = cols
    score = np.asarray(scores, dtype=np.float64)
    seg = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
    bad_number = ~np.isfinite(score) | ~np.isfinite(seg).all(axis=1)
    if bad_number.any():
        _first_malformed(results, source)
        raise AnnotationError(f"{source}: a score or segment is not a finite number")
    video_ids = np.repeat(np.array(vids, dtype=object), counts)
    reversed_ = seg[:, 1] < seg[:, 0]
    negative = seg[:, 0] < 0
    bad = reversed_ | negative
    keep: slice | np.ndarray = slice(None)
    if bad.any():
        i = int(np.argmax(bad))
        offsets = np.cumsum([0, *counts])
        v = int(np.searchsorted(offsets, i, side="right")) - 1
        what = (
            f"end {seg[i, 1]} is before start {seg[i, 0]}"
            if reversed_[i]
            else f"start {seg[i, 0]} is negative"
        )
        if invalid == "error":
            raise AnnotationError(
                f"{source}: video {vids[v]!r}: field 'results[{i - offsets[v]}].segment': {what} "
                f"({int(bad.sum())} such detections; drop them with --drop-invalid)"
            )
        if log is not None:
            log(
                f"{source}: dropped {int(bad.sum())} detections whose segment is reversed "
                f"({int(reversed_.sum())}) or starts before 0 ({int((negative & ~reversed_).sum())})"
            )
        keep = ~bad
    return Detections(
        video_ids=video_ids[keep],
        labels=np.array(labels, dtype=object)[keep],
        start=seg[keep, 0].copy(),
        end=seg[keep, 1].copy(),
        score=score[keep],
    )


def load_predictions(
    path: str | os.PathLike[str],
    invalid: InvalidPolicy = "error",
    log: Callable[[str], None] | None = None,
) -> Detections:
    """Load an ActivityNet results JSON file (``invalid``: see ``parse_predictions``).

    Decoded with orjson (several times faster than ``json`` on large files); a file orjson
    refuses (e.g. ``NaN`` literals) is read again with ``json`` for its usual messages."""
    import orjson

    try:
        data = orjson.loads(Path(path).read_bytes())
    except (orjson.JSONDecodeError, OSError):
        data = read_json(path, "predictions file")
    return parse_predictions(data, str(path), invalid, log)


def write_predictions(detections: Detections, path: str | os.PathLike[str]) -> Path:
    """Write detections as ActivityNet results JSON (atomically)."""
    import orjson

    return atomic_write_bytes(path, orjson.dumps(detections.to_json()) + b"\n")
