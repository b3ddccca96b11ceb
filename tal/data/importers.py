"""Importers from the annotation formats people have to the project's AnnotationSet.

Formats: ActivityNet / ActionFormer JSON (``anet``), the BSN/BMN ActivityNet 1.3 files
(``bmn``), THUMOS14's G-TAD CSVs (``thumos-csv``) and THUMOS14's official per-class txt
files (``thumos-txt``). Public files hold segments that end after the video or before they
start; importers clip or drop those (the ``repair`` policy). Every change, and every skipped
row (THUMOS "Ambiguous"), becomes one human-readable note in ``AnnotationSet.repairs``.

THUMOS labels carry no ``label_id``: the CSVs' ``type_idx`` is the 101-class UCF index
(Ambiguous is 0), not a detection class index. The 20 detection classes sorted by name are
in the same order as ``type_idx`` and as ``thumos14_test_groundtruth.csv``'s ``label-idx``,
so the label map (sorted names) is the same whichever THUMOS file a dataset came from.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

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

PathLike = str | os.PathLike[str]
FORMATS = ("anet", "bmn", "thumos-csv", "thumos-txt")
AMBIGUOUS = "Ambiguous"

# thumos14_test_groundtruth.csv numbers the 20 detection classes 0..19 in alphabetical order
# (checked against test_Annotation.csv: the same (video, start, end) rows carry these names).
THUMOS14_CLASSES = (
    "BaseballPitch",
    "BasketballDunk",
    "Billiards",
    "CleanAndJerk",
    "CliffDiving",
    "CricketBowling",
    "CricketShot",
    "Diving",
    "FrisbeeCatch",
    "GolfSwing",
    "HammerThrow",
    "HighJump",
    "JavelinThrow",
    "LongJump",
    "PoleVault",
    "Shotput",
    "SoccerPenalty",
    "TennisSwing",
    "ThrowDiscus",
    "VolleyballSpiking",
)

# The two THUMOS14 CSV layouts, told apart by their video column.
_GTAD_COLUMNS = ("video", "type", "start", "end")
_GROUNDTRUTH_COLUMNS = (
    "video-name",
    "t-init",
    "t-end",
    "video-duration",
    "frame-rate",
    "label-idx",
)
_BMN_INFO_COLUMNS = ("video", "subset")
# Options each format's importer takes (import_annotations checks them).
_OPTIONS = {
    "anet": (),
    "bmn": ("video_info_csv",),
    "thumos-csv": (),
    "thumos-txt": ("durations", "fps"),
}


def _as_paths(inputs: PathLike | Iterable[PathLike]) -> list[Path]:
    """One path or several, each of which must exist."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not items:
        raise AnnotationError("no annotation input given")
    paths = [Path(p) for p in items]
    for p in paths:
        if not p.exists():
            raise AnnotationError(f"{p}: annotation input not found")
    return paths


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise AnnotationError(f"{path}: {what} not found")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 text ({exc.reason})") from None


def _read_csv(path: Path, what: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header (stripped) and (line number, row) pairs; a row of the wrong width is an error."""
    reader = csv.reader(_read_text(path, what).splitlines())
    header = [name.strip() for name in next(reader, [])]
    if not any(header):
        raise AnnotationError(f"{path}: {what} is empty (expected a header line)")
    rows = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise AnnotationError(
                f"{path}: row {reader.line_num}: expected {len(header)} fields "
                f"({','.join(header)}), got {len(row)}"
            )
        cells = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
        rows.append((reader.line_num, cells))
    return header, rows


def _require_columns(path: Path, header: list[str], columns: Iterable[str], layout: str) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise AnnotationError(
            f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} for {layout} "
            f"(header: {','.join(header)})"
        )


def _float(text: Any, where: str, field: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: field '{field}': expected a number, got {text!r}")
    return value


def _thumos_subset(video_id: str, where: str) -> str:
    if video_id.startswith("video_validation_"):
        return "validation"
    if video_id.startswith("video_test_"):
        return "test"
    raise AnnotationError(
        f"{where}: video {video_id!r}: field 'subset': cannot tell the THUMOS14 subset "
        "(expected a name starting with video_validation_ or video_test_)"
    )


class _Builder:
    """Collects rows of flat formats into a database, then validates it like a JSON file."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.database: dict[str, dict[str, Any]] = {}
        self.notes: list[str] = []
        self.ambiguous: dict[str, int] = {}

    def video(self, video_id: str, subset: str, where: str, **extra: Any) -> dict[str, Any]:
        check_video_id(video_id, where)
        entry = self.database.setdefault(video_id, {"subset": subset, "annotations": []})
        if entry["subset"] != subset:
            raise AnnotationError(
                f"{where}: video {video_id!r}: field 'subset': {subset!r} here but "
                f"{entry['subset']!r} earlier"
            )
        for key, value in extra.items():
            if value is not None:
                entry.setdefault(key, value)
        return entry

    def add(self, entry: dict[str, Any], label: str, start: float, end: float) -> None:
        entry["annotations"].append({"label": label, "segment": [start, end]})

    def skip_ambiguous(self, video_id: str) -> None:
        self.ambiguous[video_id] = self.ambiguous.get(video_id, 0) + 1

    def build(self) -> AnnotationSet:
        if not self.database:
            raise AnnotationError(f"{self.source}: no annotation rows found")
        notes = list(self.notes)
        if self.ambiguous:
            notes.append(
                f"{self.source}: skipped {sum(self.ambiguous.values())} Ambiguous rows in "
                f"{len(self.ambiguous)} videos (THUMOS marks them as not to be evaluated)"
            )
        for vid, count in self.ambiguous.items():
            if not self.database[vid]["annotations"]:
                notes.append(
                    f"{self.source}: video {vid!r}: all {count} rows are Ambiguous; "
                    "kept as a video with no instances"
                )
        result = parse_annotations({"database": self.database}, self.source, segments="repair")
        result.repairs[:0] = notes
        return result


def import_thumos14_csv(path: PathLike) -> AnnotationSet:
    """THUMOS14 CSVs: G-TAD's ``val/test_Annotation.csv`` or ``thumos14_test_groundtruth.csv``.

    The layout is told from the header. The subset comes from the video name; the ground
    truth CSV also gives each video's duration and fps, which are kept.
    """
    path = Path(path)
    header, rows = _read_csv(path, "THUMOS14 CSV")
    if "video-name" in header:
        layout = "groundtruth"
        _require_columns(path, header, _GROUNDTRUTH_COLUMNS, "thumos14_test_groundtruth.csv")
    elif "video" in header:
        layout = "annotation"
        _require_columns(path, header, _GTAD_COLUMNS, "G-TAD *_Annotation.csv")
    else:
        raise AnnotationError(
            f"{path}: unknown THUMOS14 CSV header ({','.join(header)}); expected columns "
            f"{','.join(_GTAD_COLUMNS)} (G-TAD *_Annotation.csv) or "
            f"{','.join(_GROUNDTRUTH_COLUMNS)} (thumos14_test_groundtruth.csv)"
        )
    builder = _Builder(str(path))
    for row_no, row in rows:
        where = f"{path}: row {row_no}"
        vid = check_video_id(row["video" if layout == "annotation" else "video-name"], where)
        subset = _thumos_subset(vid, where)
        at = f"{where}: video {vid!r}"
        if layout == "annotation":
            label, start, end = row["type"], row["start"], row["end"]
            extra: dict[str, float] = {}
        else:
            label, start, end = (
                _groundtruth_label(row["label-idx"], at),
                row["t-init"],
                row["t-end"],
            )
            extra = {
                "duration": _float(row["video-duration"], at, "video-duration"),
                "fps": _float(row["frame-rate"], at, "frame-rate"),
            }
        entry = builder.video(vid, subset, where, **extra)
        if label == AMBIGUOUS:
            builder.skip_ambiguous(vid)
            continue
        if not label:
            raise AnnotationError(f"{at}: field 'type': expected a class name, got ''")
        builder.add(entry, label, _float(start, at, "start"), _float(end, at, "end"))
    return builder.build()


def _groundtruth_label(text: str, where: str) -> str:
    try:
        idx = int(text)
    except ValueError:
        idx = None
    if idx is None or not -1 <= idx < len(THUMOS14_CLASSES):
        raise AnnotationError(
            f"{where}: field 'label-idx': expected -1 (Ambiguous) or 0..19, got {text!r}"
        )
    return AMBIGUOUS if idx == -1 else THUMOS14_CLASSES[idx]


def import_thumos14_txt(
    paths: PathLike | Iterable[PathLike],
    durations: dict[str, float] | None = None,
    fps: float | dict[str, float] | None = None,
) -> AnnotationSet:
    """THUMOS14's official per-class files ``<Class>_val.txt`` / ``<Class>_test.txt``.

    ``paths`` is a folder, a file, or a list of them. Each line is ``video start end`` in
    seconds; the class and subset come from the file name. ``Ambiguous_*`` files are skipped
    (and counted). The files hold no duration or fps: give them per video if known
    (``fps`` may be one number for all videos).
    """
    files: list[Path] = []
    inputs = _as_paths(paths)
    for p in inputs:
        files += sorted(p.glob("*.txt")) if p.is_dir() else [p]
    if not files:
        raise AnnotationError(f"{', '.join(map(str, inputs))}: no .txt annotation files found")
    builder = _Builder(str(inputs[0]) if len(inputs) == 1 else ", ".join(map(str, inputs)))
    for file in files:
        label, sep, split = file.stem.rpartition("_")
        if not sep or not label or split not in ("val", "test"):
            raise AnnotationError(
                f"{file}: expected a THUMOS14 file name <ClassName>_val.txt or "
                "<ClassName>_test.txt (the name gives the class and the subset)"
            )
        subset = normalize_subset(split, str(file))
        for line_no, line in enumerate(_read_text(file, "THUMOS14 txt file").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{file}: line {line_no}"
            parts = line.split()
            if len(parts) != 3:
                raise AnnotationError(f"{where}: expected 'video_name start end', got {line!r}")
            vid = check_video_id(parts[0], where)
            video_fps = fps.get(vid) if isinstance(fps, dict) else fps
            duration = (durations or {}).get(vid)
            entry = builder.video(vid, subset, where, duration=duration, fps=video_fps)
            at = f"{where}: video {vid!r}"
            start, end = _float(parts[1], at, "start"), _float(parts[2], at, "end")
            if label == AMBIGUOUS:
                builder.skip_ambiguous(vid)
            else:
                builder.add(entry, label, start, end)
    return builder.build()


def import_bmn_activitynet(
    anno_json: PathLike, video_info_csv: PathLike | None = None
) -> AnnotationSet:
    """BSN/BMN ActivityNet 1.3 files: ``anet_anno_action.json`` + ``video_info_new.csv``.

    Ids lose their ``v_`` prefix (official ActivityNet ids have none); the duration is
    ``duration_second``; subset and fps come from the CSV, looked for beside the JSON when
    not given (the JSON alone does not say which videos are training, validation or test).
    """
    anno_json = Path(anno_json)
    data = read_json(anno_json, "BMN annotation file")
    if not isinstance(data, dict) or not data:
        raise AnnotationError(
            f"{anno_json}: expected a non-empty JSON object of videos keyed by 'v_<id>'"
        )
    csv_path = Path(video_info_csv) if video_info_csv else anno_json.parent / "video_info_new.csv"
    if not csv_path.is_file():
        raise AnnotationError(
            f"{anno_json}: field 'subset': the BMN format keeps subsets in video_info_new.csv, "
            f"not found at {csv_path} (give its path as video_info_csv / --video-info)"
        )
    header, rows = _read_csv(csv_path, "BMN video info CSV")
    _require_columns(csv_path, header, _BMN_INFO_COLUMNS, "BMN video_info_new.csv")
    info = {row["video"]: (row_no, row) for row_no, row in rows}
    builder = _Builder(str(anno_json))
    for key, entry in data.items():
        where = f"{anno_json}: video {key!r}"
        if not isinstance(entry, dict) or "annotations" not in entry:
            raise AnnotationError(f"{where}: expected an object with 'annotations'")
        if key not in info:
            raise AnnotationError(
                f"{where}: field 'subset': the video is not listed in {csv_path}, so its "
                "subset is unknown"
            )
        row_no, row = info[key]
        row_where = f"{csv_path}: row {row_no}: video {key!r}"
        subset = normalize_subset(row["subset"], row_where)
        video_fps = _float(row["fps"], row_where, "fps") if row.get("fps") else None
        vid = key.removeprefix("v_")
        if vid in builder.database:
            raise AnnotationError(f"{where}: id {vid!r} appears twice (with and without 'v_')")
        video = builder.video(vid, subset, where, fps=video_fps)
        if entry.get("duration_second") is not None:
            video["duration"] = entry["duration_second"]
        video["annotations"] = entry["annotations"]
    return builder.build()


def detect_format(path: PathLike) -> str:
    """The format of one input, told from its content (a folder means thumos-txt files).

    A BMN ``video_info_new.csv`` counts as ``bmn``: it is half of that format.
    """
    path = Path(path)
    if path.is_dir():
        if any(path.glob("*.txt")):
            return "thumos-txt"
        return _undetectable(path, "a folder without .txt files")
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the chunk
            return _undetectable(path, "binary data, not UTF-8 text")
        text = head[: exc.start].decode("utf-8-sig")
    if "\x00" in text:
        return _undetectable(path, "binary data, not UTF-8 text")
    if text.lstrip()[:1] == "{":
        data = read_json(path, "annotation file")
        if not isinstance(data, dict):
            return _undetectable(path, f"JSON {type(data).__name__}, not an object")
        if "database" in data:
            return "anet"
        key, entry = next(iter(data.items()), ("", None))
        if key.startswith("v_") and isinstance(entry, dict) and "duration_second" in entry:
            return "bmn"
        return _undetectable(path, f"a JSON object with keys {sorted(data)[:5]}")
    first_line = text.lstrip().split("\n", 1)[0]
    header = {name.strip() for name in first_line.split(",")}
    if {"video", "type"} <= header or {"video-name", "label-idx"} <= header:
        return "thumos-csv"
    if set(_BMN_INFO_COLUMNS) <= header:
        return "bmn"
    if path.suffix == ".txt":
        return "thumos-txt"
    return _undetectable(path, f"first line {first_line[:80]!r}")


def _undetectable(path: Path, what: str) -> NoReturn:
    raise AnnotationError(
        f"{path}: cannot tell the annotation format ({what}); give it explicitly "
        f"(--format), one of {', '.join(FORMATS)}"
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
    inputs: PathLike | Iterable[PathLike], fmt: str = "auto", **options: Any
) -> AnnotationSet:
    """Import one or more inputs of one format into a single AnnotationSet.

    ``fmt`` is ``auto`` (told from each input's content) or one of FORMATS. For ``bmn`` a
    CSV among the inputs is the video info file. ``options`` go to the format's importer
    (``video_info_csv`` for bmn; ``durations``, ``fps`` for thumos-txt); None values are
    ignored.
    """
    paths = _as_paths(inputs)
    source = ", ".join(map(str, paths))
    if fmt == "auto":
        found = {p: detect_format(p) for p in paths}
        kinds = set(found.values())
        if len(kinds) > 1:
            listing = "; ".join(f"{p}: {k}" for p, k in found.items())
            raise AnnotationError(
                f"{source}: inputs are in different formats ({listing}); import them separately"
            )
        fmt = kinds.pop()
    elif fmt not in FORMATS:
        raise AnnotationError(
            f"{source}: unknown annotation format {fmt!r}; expected auto or one of "
            f"{', '.join(FORMATS)}"
        )
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(options) - set(_OPTIONS[fmt]))
    if unknown:
        allowed = ", ".join(_OPTIONS[fmt]) or "none"
        raise AnnotationError(
            f"{source}: option(s) {', '.join(unknown)} do not apply to format {fmt!r} "
            f"(its options: {allowed})"
        )
    if fmt == "thumos-txt":
        return import_thumos14_txt(paths, **options)
    if fmt == "thumos-csv":
        parts = [import_thumos14_csv(p) for p in paths]
    elif fmt == "bmn":
        parts = _import_bmn_inputs(paths, options.get("video_info_csv"))
    else:
        parts = [load_annotations(p, segments="repair") for p in paths]
    return parts[0] if len(parts) == 1 else merge(parts, source)


def _import_bmn_inputs(paths: list[Path], video_info_csv: PathLike | None) -> list[AnnotationSet]:
    csvs = [p for p in paths if p.suffix.lower() == ".csv"]
    jsons = [p for p in paths if p not in csvs]
    if len(csvs) > 1 or (csvs and video_info_csv is not None):
        raise AnnotationError(
            f"{', '.join(map(str, paths))}: give one BMN video info CSV, not several"
        )
    if not jsons:
        raise AnnotationError(
            f"{', '.join(map(str, paths))}: no BMN annotation JSON among the inputs"
        )
    info = csvs[0] if csvs else video_info_csv
    return [import_bmn_activitynet(p, info) for p in jsons]
