"""Detections in the ActivityNet results format, held as columns for fast evaluation.

On disk (DESIGN.md)::

    {"results": {VIDEO_ID: [{"label": NAME, "score": float, "segment": [start_s, end_s]}]}}
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.atomic import atomic_write_text
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


def parse_predictions(data: Any, source: str = "<memory>") -> Detections:
    """Validate a decoded results document; errors name the file, video and entry."""
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise AnnotationError(
            f"{source}: expected a JSON object with a 'results' object mapping video ids to "
            "lists of {label, score, segment}"
        )
    rows: list[tuple[str, str, float, float, float]] = []
    for vid, entries in data["results"].items():
        where = f"{source}: video {vid!r}"
        if not isinstance(entries, list):
            raise AnnotationError(
                f"{where}: expected a list of detections, got {type(entries).__name__}"
            )
        for i, det in enumerate(entries):
            at = f"{where}: field 'results[{i}]"
            if not isinstance(det, dict):
                raise AnnotationError(f"{at}': expected an object, got {type(det).__name__}")
            label = det.get("label")
            if not isinstance(label, str) or not label:
                raise AnnotationError(f"{at}.label': expected a class name, got {label!r}")
            score = _finite(det.get("score"), f"{at}.score'", "a finite number")
            seg = det.get("segment")
            if not isinstance(seg, (list, tuple)) or len(seg) != 2:
                raise AnnotationError(
                    f"{at}.segment': expected [start, end] in seconds, got {seg!r}"
                )
            start = _finite(seg[0], f"{at}.segment'", "[start, end] as finite numbers")
            end = _finite(seg[1], f"{at}.segment'", "[start, end] as finite numbers")
            rows.append((vid, label, start, end, score))
    return Detections.from_rows(rows)


def load_predictions(path: str | os.PathLike[str]) -> Detections:
    """Load an ActivityNet results JSON file."""
    return parse_predictions(read_json(path, "predictions file"), source=str(path))


def write_predictions(detections: Detections, path: str | os.PathLike[str]) -> Path:
    """Write detections as ActivityNet results JSON (atomically)."""
    return atomic_write_text(path, json.dumps(detections.to_json()) + "\n")
