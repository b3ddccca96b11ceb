"""Cross-video pairs: each training video gets partners that share an action class.

Inter-video attention (I2Net) looks at a second video of the same class; this module decides
which. The result is a Parquet table (DESIGN.md)::

    video_a: string, video_b: string, shared_labels: list<string>, subset: string

Sampling is balanced across classes and partners: a video with several classes takes its
partners round-robin over its classes (in a seeded order), and each pick goes to the
candidate used least often as a partner so far (ties broken by the seeded generator), so no
single video of a class becomes everyone's partner. The same annotations and seed give a
byte-identical table. Pairs never cross subsets.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from features.atomic import atomic_path
from features.errors import UserInputError
from tal.data.annotations import AnnotationSet, normalize_subset

PAIRS_SCHEMA = pa.schema(
    [
        pa.field("video_a", pa.string()),
        pa.field("video_b", pa.string()),
        pa.field("shared_labels", pa.list_(pa.string())),
        pa.field("subset", pa.string()),
    ]
)
"""The columns every pairs file has, in this order (extra columns are kept when read)."""

_SHOWN_IDS = 5  # ids listed in the one-line summary before "..."


class PairsError(UserInputError):
    """A pairs file that is missing or does not have the pairs schema; names file and columns."""


@dataclass
class PairsResult:
    """The pairs table and the videos that could not be paired."""

    table: pa.Table
    unpaired: list[str] = field(default_factory=list)
    """Videos without instances or without another video sharing one of their classes."""
    missing: list[str] = field(default_factory=list)
    """Videos left out because they are not in ``available`` (e.g. no complete features)."""
    classes: list[str] = field(default_factory=list)
    """Every class of the videos that took part (for per-class counts, zero included)."""

    def pairs_per_class(self) -> dict[str, int]:
        """Number of pairs whose shared labels include each class."""
        counts = dict.fromkeys(self.classes, 0)
        for labels in self.table.column("shared_labels").to_pylist():
            for name in labels:
                counts[name] = counts.get(name, 0) + 1
        return counts

    def summary(self) -> str:
        """One line: pairs, videos, the range of pairs per class, unpaired and missing ids."""
        videos = len(set(self.table.column("video_a").to_pylist()))
        counts = self.pairs_per_class()
        parts = [f"{self.table.num_rows} pairs for {videos} videos"]
        if counts:
            lo, hi = min(counts.values()), max(counts.values())
            parts.append(f"pairs per class {lo}-{hi} over {len(counts)} classes")
        parts.append(f"{len(self.unpaired)} unpaired{_ids(self.unpaired)}")
        if self.missing:
            parts.append(f"{len(self.missing)} not available{_ids(self.missing)}")
        return "; ".join(parts)


def _ids(ids: list[str]) -> str:
    if not ids:
        return ""
    more = ", ..." if len(ids) > _SHOWN_IDS else ""
    return ": " + ", ".join(ids[:_SHOWN_IDS]) + more


def _subsets(annotations: AnnotationSet, names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        subset = normalize_subset(name, f"{annotations.source}: requested subset")
        if subset not in out:
            out.append(subset)
    return out


def _pick(candidates: list[str], uses: dict[str, int], rng: np.random.Generator) -> str:
    """The candidate used least often as a partner so far; ties broken by ``rng``."""
    low = min(uses[c] for c in candidates)
    tied = [c for c in candidates if uses[c] == low]
    return tied[int(rng.integers(len(tied)))] if len(tied) > 1 else tied[0]


def _partners(
    labels: dict[str, list[str]], per_video: int, rng: np.random.Generator
) -> dict[str, list[str]]:
    """Partners of every video of one subset (``labels``: video id -> its sorted classes)."""
    members: dict[str, list[str]] = {}
    for vid in sorted(labels):
        for name in labels[vid]:
            members.setdefault(name, []).append(vid)
    uses = dict.fromkeys(labels, 0)
    chosen: dict[str, list[str]] = {vid: [] for vid in labels}
    ids = sorted(labels)
    # a seeded visiting order, so early videos do not always get the least-used partners
    for vid in (ids[i] for i in rng.permutation(len(ids))):
        own = labels[vid]
        active = [own[i] for i in rng.permutation(len(own))]
        picks = chosen[vid]
        turn = 0
        while len(picks) < per_video and active:
            k = turn % len(active)
            candidates = [c for c in members[active[k]] if c != vid and c not in picks]
            if not candidates:  # this class has no partner left: drop it from the cycle
                del active[k]
                turn = k
                continue
            partner = _pick(candidates, uses, rng)
            picks.append(partner)
            uses[partner] += 1
            turn = k + 1
    return chosen


def build_pairs(
    annotations: AnnotationSet,
    subsets: Iterable[str] = ("training",),
    per_video: int = 2,
    seed: int = 0,
    available: Collection[str] | None = None,
) -> PairsResult:
    """Pair every video of ``subsets`` with up to ``per_video`` partners sharing a class.

    Partners come from the same subset, are never the video itself and never repeat for one
    video (a video with fewer candidates gets fewer partners). With ``available``, videos not
    in it are left out and listed in ``missing``. Rows are ordered by subset, then video_a,
    then pick order; ``shared_labels`` is the sorted intersection of both videos' classes.
    """
    if per_video < 1:
        raise ValueError(f"per_video must be >= 1, got {per_video}")
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {name: [] for name in PAIRS_SCHEMA.names}
    unpaired: list[str] = []
    missing: list[str] = []
    classes: set[str] = set()
    for subset in _subsets(annotations, subsets):
        labels: dict[str, list[str]] = {}
        for video in sorted(annotations.subset(subset), key=lambda v: v.video_id):
            if available is not None and video.video_id not in available:
                missing.append(video.video_id)
                continue
            labels[video.video_id] = sorted({inst.label for inst in video.instances})
            classes.update(labels[video.video_id])
        chosen = _partners(labels, per_video, rng)
        for vid in sorted(labels):
            if not chosen[vid]:
                unpaired.append(vid)
            for partner in chosen[vid]:
                rows["video_a"].append(vid)
                rows["video_b"].append(partner)
                rows["shared_labels"].append(sorted(set(labels[vid]) & set(labels[partner])))
                rows["subset"].append(subset)
    table = pa.Table.from_pydict(rows, schema=PAIRS_SCHEMA)
    return PairsResult(
        table=table, unpaired=sorted(unpaired), missing=sorted(missing), classes=sorted(classes)
    )


def _schema_problems(schema: pa.Schema) -> list[str]:
    problems = []
    for want in PAIRS_SCHEMA:
        if want.name not in schema.names:
            problems.append(f"missing column '{want.name}' ({want.type})")
            continue
        got = schema.field(want.name).type
        if pa.types.is_list(want.type):
            ok = (pa.types.is_list(got) or pa.types.is_large_list(got)) and (
                pa.types.is_string(got.value_type) or pa.types.is_large_string(got.value_type)
            )
        else:
            ok = pa.types.is_string(got) or pa.types.is_large_string(got)
        if not ok:
            problems.append(f"column '{want.name}' is {got}, expected {want.type}")
    return problems


def _conform(table: pa.Table, source: str) -> pa.Table:
    """``table`` with the pairs columns first, in their canonical types; else PairsError."""
    problems = _schema_problems(table.schema)
    if not problems:
        problems = [
            f"column '{name}' has {table.column(name).null_count} null values"
            for name in PAIRS_SCHEMA.names
            if table.column(name).null_count
        ]
    if problems:
        raise PairsError(
            f"{source}: not a pairs table ({'; '.join(problems)}); expected columns "
            + ", ".join(f"{f.name} ({f.type})" for f in PAIRS_SCHEMA)
        )
    extra = [name for name in table.column_names if name not in PAIRS_SCHEMA.names]
    columns = [table.column(f.name).cast(f.type) for f in PAIRS_SCHEMA]
    out = pa.Table.from_arrays(columns, schema=PAIRS_SCHEMA)
    for name in extra:
        out = out.append_column(table.schema.field(name), table.column(name))
    return out


def write_pairs(result_or_table: PairsResult | pa.Table, path: str | os.PathLike[str]) -> Path:
    """Write the pairs Parquet file atomically (temp file, then rename); returns the path."""
    table = result_or_table.table if isinstance(result_or_table, PairsResult) else result_or_table
    path = Path(path)
    table = _conform(table, f"{path}: table to write")
    if path.is_dir():
        raise PairsError(f"{path}: is a folder; give a file name for the pairs, e.g. pairs.parquet")
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_pairs(path: str | os.PathLike[str]) -> pa.Table:
    """Read a pairs file and check its schema; problems raise PairsError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise PairsError(f"{path}: pairs file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise PairsError(f"{path}: not a readable Parquet file ({exc})") from None
    return _conform(table, str(path))
