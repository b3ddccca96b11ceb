"""Importers from the annotation formats people have to the project's AnnotationSet.

Formats: ActivityNet / ActionFormer JSON (``anet``), the BSN/BMN ActivityNet 1.3 files
(``bmn``), THUMOS14's G-TAD CSVs (``thumos-csv``) and THUMOS14's official per-class txt
files (``thumos-txt``). Public files hold segments that end after the video or before they
start; importers clip or drop those (the ``repair`` policy) and record every change, and every
skipped row (THUMOS "Ambiguous"), in ``AnnotationSet.repairs``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from tal.data.annotations import (
    AnnotationError,
    AnnotationSet,
    Video,
    check_video_id,
    load_annotations,
    normalize_subset,
    parse_annotations,
    read_json,
)

FORMATS = ("auto", "anet", "bmn", "thumos-csv", "thumos-txt")
AMBIGUOUS = "Ambiguous"

# thumos14_test_groundtruth.csv numbers the 20 detection classes 0..19 in alphabetical order
# (checked against test_Annotation.csv: the same instances carry these names).
THUMOS14_CLASSES = (
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving",
    "CricketBowling", "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow",
    "HighJump", "JavelinThrow", "LongJump", "PoleVault", "Shotput", "SoccerPenalty",
    "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
)  # fmt: skip


def _paths(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    paths = [Path(p) for p in inputs]
    if not paths:
        raise AnnotationError("no annotation input given")
    for p in paths:
        if not p.exists():
            raise AnnotationError(f"{p}: annotation input not found")
    return paths


def _thumos_subset(video_id: str, where: str) -> str:
    if video_id.startswith("video_validation_"):
        return "validation"
    if video_id.startswith("video_test_"):
        return "test"
    raise AnnotationError(
        f"{where}: video {video_id!r}: cannot tell the THUMOS14 subset "
        "(expected a name starting with video_validation_ or video_test_)"
    )


def _float(text: str, where: str, field: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise AnnotationError(
            f"{where}: field '{field}': expected a number, got {text!r}"
        ) from None


class _Builder:
    """Collects rows of flat formats into videos, then validates them like a JSON file."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.database: dict[str, dict] = {}
        self.notes: list[str] = []

    def video(self, video_id: str, subset: str, where: str, **extra: float | None) -> dict:
        check_video_id(video_id, where)
        entry = self.database.setdefault(video_id, {"subset": subset, "annotations": []})
        if entry["subset"] != subset:
            raise AnnotationError(
                f"{where}: video {video_id!r} is in subset {entry['subset']!r} and {subset!r}"
            )
        for key, value in extra.items():
            if value is not None:
                entry.setdefault(key, value)
        return entry

    def add(self, entry: dict, label: str, start: float, end: float) -> None:
        entry["annotations"].append({"label": label, "segment": [start, end]})

    def build(self) -> AnnotationSet:
        result = parse_annotations({"database": self.database}, self.source, segments="repair")
        result.repairs[:0] = self.notes
        return result


def import_thumos14_csv(path: str | os.PathLike[str]) -> AnnotationSet:
    """G-TAD's ``val_Annotation.csv`` / ``test_Annotation.csv`` or ``thumos14_test_groundtruth.csv``."""
    path = Path(path)
    builder = _Builder(str(path))
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = set(reader.fieldnames or [])
        if {"video", "type", "start", "end"} <= header:
            layout = "annotation"
        elif {"video-name", "t-init", "t-end", "label-idx"} <= header:
            layout = "groundtruth"
        else:
            raise AnnotationError(
                f"{path}: unknown THUMOS14 CSV header {sorted(header)}; expected columns "
                "video,type,start,end (G-TAD *_Annotation.csv) or "
                "video-name,t-init,t-end,label-idx (thumos14_test_groundtruth.csv)"
            )
        ambiguous = 0
        for row_no, row in enumerate(reader, start=2):
            where = f"{path}: row {row_no}"
            if layout == "annotation":
                vid, label = row["video"], row["type"]
                duration = fps = None
                start, end = row["start"], row["end"]
            else:
                vid = row["video-name"]
                idx = int(_float(row["label-idx"], where, "label-idx"))
                if idx != -1 and not 0 <= idx < len(THUMOS14_CLASSES):
                    raise AnnotationError(
                        f"{where}: field 'label-idx': expected -1 or 0..19, got {row['label-idx']!r}"
                    )
                label = AMBIGUOUS if idx == -1 else THUMOS14_CLASSES[idx]
                duration = _float(row["video-duration"], where, "video-duration")
                fps = _float(row["frame-rate"], where, "frame-rate")
                start, end = row["t-init"], row["t-end"]
            entry = builder.video(
                vid, _thumos_subset(vid, where), where, duration=duration, fps=fps
            )
            if label == AMBIGUOUS:
                ambiguous += 1
                continue
            builder.add(entry, label, _float(start, where, "start"), _float(end, where, "end"))
    if ambiguous:
        builder.notes.append(f"{path}: skipped {ambiguous} Ambiguous rows")
    return builder.build()


def import_thumos14_txt(
    paths: Iterable[str | os.PathLike[str]],
    durations: dict[str, float] | None = None,
) -> AnnotationSet:
    """THUMOS14's official per-class files ``<Class>_val.txt`` / ``<Class>_test.txt``.

    Each line is ``video_name start end`` in seconds. ``paths`` may be files or folders.
    """
    files: list[Path] = []
    for p in _paths(paths):
        files += sorted(p.glob("*.txt")) if p.is_dir() else [p]
    if not files:
        raise AnnotationError(f"{', '.join(map(str, paths))}: no .txt annotation files found")
    builder = _Builder(str(files[0].parent if len(files) > 1 else files[0]))
    skipped = 0
    for file in files:
        stem, sep, split = file.stem.rpartition("_")
        if not sep or split not in ("val", "test", "validation"):
            raise AnnotationError(
                f"{file}: expected a THUMOS14 file name <Class>_val.txt or <Class>_test.txt"
            )
        subset = normalize_subset(split, str(file))
        for line_no, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{file}: line {line_no}"
            parts = line.split()
            if len(parts) != 3:
                raise AnnotationError(f"{where}: expected 'video_name start end', got {line!r}")
            if stem == AMBIGUOUS:
                skipped += 1
                continue
            vid = parts[0]
            duration = (durations or {}).get(vid)
            entry = builder.video(vid, subset, where, duration=duration)
            builder.add(
                entry, stem, _float(parts[1], where, "start"), _float(parts[2], where, "end")
            )
    if skipped:
        builder.notes.append(f"skipped {skipped} Ambiguous lines")
    return builder.build()


def import_bmn_activitynet(
    anno_json: str | os.PathLike[str], video_info_csv: str | os.PathLike[str] | None = None
) -> AnnotationSet:
    """BSN/BMN ActivityNet 1.3 files: ``anet_anno_action.json`` + ``video_info_new.csv``.

    Ids lose their ``v_`` prefix (official ActivityNet ids have none); subsets and fps come
    from the CSV (looked for beside the JSON when not given).
    """
    anno_json = Path(anno_json)
    data = read_json(anno_json, "BMN annotation file")
    if not isinstance(data, dict) or not data:
        raise AnnotationError(f"{anno_json}: expected an object of videos keyed by 'v_<id>'")
    csv_path = Path(video_info_csv) if video_info_csv else anno_json.parent / "video_info_new.csv"
    if not csv_path.is_file():
        raise AnnotationError(
            f"{anno_json}: the BMN format keeps subsets in video_info_new.csv, not found at "
            f"{csv_path} (pass --video-info)"
        )
    info: dict[str, dict[str, str]] = {}
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"video", "subset"} - set(reader.fieldnames or [])
        if missing:
            raise AnnotationError(f"{csv_path}: missing column(s) {sorted(missing)}")
        for row in reader:
            info[row["video"]] = row
    builder = _Builder(str(anno_json))
    for key, entry in data.items():
        where = f"{anno_json}: video {key!r}"
        if not isinstance(entry, dict) or "annotations" not in entry:
            raise AnnotationError(f"{where}: expected an object with 'annotations'")
        row = info.get(key)
        if row is None:
            raise AnnotationError(f"{where}: not listed in {csv_path}, so its subset is unknown")
        vid = key[2:] if key.startswith("v_") else key
        subset = normalize_subset(row["subset"], f"{csv_path}: video {key!r}")
        duration = entry.get("duration_second")
        fps = _float(row["fps"], f"{csv_path}: video {key!r}", "fps") if row.get("fps") else None
        video = builder.video(vid, subset, where, duration=duration, fps=fps)
        video["annotations"] = entry["annotations"]
    return builder.build()


def detect_format(paths: list[Path]) -> str:
    """Guess the format of ``paths`` from their content."""
    first = paths[0]
    if first.is_dir() or first.suffix == ".txt":
        return "thumos-txt"
    if first.suffix == ".csv":
        return "thumos-csv"
    if first.suffix == ".json":
        data = read_json(first, "annotation file")
        if isinstance(data, dict) and "database" in data:
            return "anet"
        if isinstance(data, dict) and data:
            sample = next(iter(data.values()))
            if isinstance(sample, dict) and "duration_second" in sample:
                return "bmn"
    raise AnnotationError(
        f"{first}: cannot tell the annotation format; pass --format, one of {', '.join(FORMATS[1:])}"
    )


def merge(sets: list[AnnotationSet], source: str) -> AnnotationSet:
    """Union of several imports; a video in two of them is an error."""
    videos: dict[str, Video] = {}
    repairs: list[str] = []
    for part in sets:
        for vid, video in part.videos.items():
            if vid in videos:
                raise AnnotationError(f"{part.source}: video {vid!r} is also in another input")
            videos[vid] = video
        repairs += part.repairs
    return AnnotationSet(videos=videos, source=source, repairs=repairs)


def import_annotations(
    inputs: Iterable[str | os.PathLike[str]], fmt: str = "auto", **options: object
) -> AnnotationSet:
    """Import one or more files of one format (``auto`` detects it from the first)."""
    paths = _paths(inputs)
    if fmt not in FORMATS:
        raise AnnotationError(
            f"unknown annotation format {fmt!r}; expected one of {', '.join(FORMATS)}"
        )
    if fmt == "auto":
        fmt = detect_format(paths)
    source = ", ".join(map(str, paths))
    if fmt == "thumos-txt":
        return import_thumos14_txt(paths, **options)  # type: ignore[arg-type]
    if fmt == "thumos-csv":
        parts = [import_thumos14_csv(p) for p in paths]
    elif fmt == "bmn":
        parts = [import_bmn_activitynet(p, **options) for p in paths]  # type: ignore[arg-type]
    else:
        parts = [load_annotations(p, segments="repair") for p in paths]
    return parts[0] if len(parts) == 1 else merge(parts, source)
