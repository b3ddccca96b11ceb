"""Cross-video pairs: shared classes, balance, determinism, filters and the Parquet file."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tal.data.annotations import AnnotationSet, parse_annotations
from tal.pairs import PAIRS_SCHEMA, PairsError, build_pairs, read_pairs, write_pairs


def _ann(videos: dict[str, list[str] | tuple[str, list[str]]]) -> AnnotationSet:
    """Videos by id: their labels (training), or (subset, labels)."""
    database = {}
    for vid, spec in videos.items():
        subset, labels = spec if isinstance(spec, tuple) else ("training", spec)
        database[vid] = {
            "subset": subset,
            "duration": 30.0,
            "annotations": [
                {"segment": [i + 1.0, i + 2.0], "label": name} for i, name in enumerate(labels)
            ],
        }
    return parse_annotations({"database": database}, source="ann.json")


def _rows(result) -> list[tuple[str, str, list[str], str]]:
    return [
        (r["video_a"], r["video_b"], r["shared_labels"], r["subset"])
        for r in result.table.to_pylist()
    ]


MIXED = {
    "v1": ["A", "A"],
    "v2": ["A", "B"],
    "v3": ["B"],
    "v4": ["B", "C"],
    "v5": ["C"],
    "v6": ["A", "C"],
    "v7": ["B"],
}


def test_two_videos_of_one_class_pair_with_each_other():
    result = build_pairs(_ann({"a": ["A"], "b": ["A"]}), per_video=2)
    assert result.table.schema == PAIRS_SCHEMA
    # only one candidate each: fewer partners than per_video, never a repeat or itself
    assert _rows(result) == [("a", "b", ["A"], "training"), ("b", "a", ["A"], "training")]
    assert result.unpaired == [] and result.missing == []


def test_every_partner_shares_a_label_and_labels_are_the_intersection():
    ann = _ann(MIXED)
    labels = {v.video_id: {i.label for i in v.instances} for v in ann}
    result = build_pairs(ann, per_video=2, seed=5)
    rows = _rows(result)
    assert len(rows) == 2 * len(MIXED)  # every video has at least two candidates
    for a, b, shared, subset in rows:
        assert a != b
        assert shared == sorted(labels[a] & labels[b]) and shared
        assert subset == "training"
    assert len({(a, b) for a, b, _, _ in rows}) == len(rows)  # no duplicate partner
    assert sorted({a for a, *_ in rows}) == sorted(MIXED)
    # rows are ordered by video_a
    assert [a for a, *_ in rows] == sorted(a for a, *_ in rows)


def test_same_seed_gives_identical_table_and_bytes(tmp_path):
    ann = _ann(MIXED)
    first = build_pairs(ann, per_video=2, seed=11)
    again = build_pairs(ann, per_video=2, seed=11)
    assert first.table.equals(again.table)
    p1 = write_pairs(first, tmp_path / "a.parquet")
    p2 = write_pairs(again, tmp_path / "b.parquet")
    assert p1.read_bytes() == p2.read_bytes()
    others = [build_pairs(ann, per_video=2, seed=s).table for s in range(12, 20)]
    assert any(not t.equals(first.table) for t in others)


def test_a_video_with_two_classes_gets_one_partner_of_each():
    ann = _ann({"x": ["A", "B"], "a1": ["A"], "a2": ["A"], "b1": ["B"], "b2": ["B"]})
    for seed in range(10):
        result = build_pairs(ann, per_video=2, seed=seed)
        partners = [b for a, b, *_ in _rows(result) if a == "x"]
        assert len(partners) == 2
        assert sum(p.startswith("a") for p in partners) == 1, (seed, partners)
        assert sum(p.startswith("b") for p in partners) == 1, (seed, partners)


def test_partners_are_spread_over_the_videos_of_a_class():
    ann = _ann({f"v{i}": ["A"] for i in range(8)})
    for seed in range(10):
        rows = _rows(build_pairs(ann, per_video=2, seed=seed))
        uses = Counter(b for _, b, *_ in rows)
        assert sum(uses.values()) == 16
        # least-used first: nobody is everyone's partner (uniform choice reaches 4+ in most draws)
        assert max(uses.values()) <= 3 and min(uses.values()) >= 1, (seed, uses)


def test_fewer_candidates_than_per_video_gives_fewer_partners():
    result = build_pairs(_ann({"a": ["A"], "b": ["A"], "c": ["A"]}), per_video=5, seed=1)
    for vid in "abc":
        assert sorted(b for a, b, *_ in _rows(result) if a == vid) == sorted(set("abc") - {vid})


def test_unpaired_videos_are_listed_and_not_in_the_table():
    ann = _ann({"a": ["A"], "b": ["A"], "lonely": ["Z"], "empty": []})
    result = build_pairs(ann, per_video=1)
    rows = _rows(result)
    assert result.unpaired == ["empty", "lonely"]
    assert {a for a, *_ in rows} == {"a", "b"}
    assert {b for _, b, *_ in rows} == {"a", "b"}
    line = result.summary()
    assert "\n" not in line
    assert line.startswith("2 pairs for 2 videos")
    assert "2 unpaired: empty, lonely" in line
    assert "pairs per class 0-2 over 2 classes" in line  # class Z has no pair


def test_available_filter_lists_missing_videos():
    ann = _ann({"a": ["A"], "b": ["A"], "c": ["A", "B"], "d": ["B"]})
    result = build_pairs(ann, per_video=2, available={"a", "b", "c"})
    rows = _rows(result)
    assert result.missing == ["d"]
    assert all("d" not in (a, b) for a, b, *_ in rows)
    assert {a for a, *_ in rows} == {"a", "b", "c"}
    assert sorted(b for a, b, *_ in rows if a == "c") == ["a", "b"]  # its B-partner is gone
    assert "1 not available: d" in result.summary()
    # ids in `available` that are not annotated are ignored; a video left alone is unpaired
    alone = build_pairs(ann, per_video=2, available={"c", "d", "x"})
    assert _rows(alone) == [("c", "d", ["B"], "training"), ("d", "c", ["B"], "training")]
    assert build_pairs(ann, available={"c"}).unpaired == ["c"]


def test_only_the_requested_subsets_and_never_across_them():
    ann = _ann(
        {
            "t1": ["A"],
            "t2": ["A"],
            "v1": ("validation", ["A"]),
            "v2": ("validation", ["A"]),
            "s1": ("test", ["A"]),
        }
    )
    default = _rows(build_pairs(ann))
    assert {(a, b) for a, b, *_ in default} == {("t1", "t2"), ("t2", "t1")}
    both = _rows(build_pairs(ann, subsets=("train", "val")))  # aliases accepted
    assert {(a, b, s) for a, b, _, s in both} == {
        ("t1", "t2", "training"),
        ("t2", "t1", "training"),
        ("v1", "v2", "validation"),
        ("v2", "v1", "validation"),
    }


def test_per_video_must_be_positive():
    with pytest.raises(ValueError, match="per_video"):
        build_pairs(_ann({"a": ["A"], "b": ["A"]}), per_video=0)


def test_no_pairs_gives_an_empty_table_with_the_schema(tmp_path):
    result = build_pairs(_ann({"a": ["A"], "b": ["B"]}))
    assert result.table.num_rows == 0 and result.table.schema == PAIRS_SCHEMA
    assert read_pairs(write_pairs(result, tmp_path / "p.parquet")).num_rows == 0


def test_round_trip_is_atomic_and_creates_the_folder(tmp_path):
    result = build_pairs(_ann(MIXED), seed=2)
    path = write_pairs(result, tmp_path / "deep" / "dir" / "pairs.parquet")
    assert path == tmp_path / "deep" / "dir" / "pairs.parquet"
    assert [p.name for p in path.parent.iterdir()] == ["pairs.parquet"]  # no temp file left
    table = read_pairs(path)
    assert table.equals(result.table)
    assert write_pairs(table, path) == path  # a plain table is accepted too
    assert read_pairs(path).equals(result.table)


def test_read_names_missing_and_wrong_columns(tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"video_a": ["a"], "video_b": [3]}), bad)
    with pytest.raises(PairsError) as info:
        read_pairs(bad)
    msg = str(info.value)
    assert str(bad) in msg
    assert "missing column 'shared_labels'" in msg and "missing column 'subset'" in msg
    assert "column 'video_b' is int64, expected string" in msg
    problems = msg.split("expected columns")[0]
    assert "'video_a'" not in problems  # a correct column is not reported


def test_read_missing_or_broken_file(tmp_path):
    with pytest.raises(PairsError, match="nope.parquet: pairs file not found"):
        read_pairs(tmp_path / "nope.parquet")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(PairsError, match="junk.parquet: not a readable Parquet file"):
        read_pairs(junk)


def test_write_rejects_a_wrong_table(tmp_path):
    with pytest.raises(PairsError, match="missing column 'subset'"):
        write_pairs(pa.table({"video_a": ["a"], "video_b": ["b"]}), tmp_path / "p.parquet")
    assert not (tmp_path / "p.parquet").exists()
