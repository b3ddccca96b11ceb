"""Loading, validating and writing ActivityNet-style annotations."""

from __future__ import annotations

import copy
import json

import pytest

from tal.data.annotations import (
    AnnotationError,
    LabelMap,
    check_video_id,
    load_annotations,
    parse_annotations,
    write_annotations,
)

DOC = {
    "database": {
        "v1": {
            "subset": "training",
            "duration": 20.0,
            "fps": 25.0,
            "annotations": [
                {"segment": [1.0, 4.5], "label": "jump", "label_id": 1},
                {"segment": ["6", "9.5"], "label": "run", "label_id": 0},
            ],
        },
        "v2": {"subset": "Validation", "duration": 10.0, "annotations": []},
    }
}


def doc_with(**changes):
    doc = copy.deepcopy(DOC)
    doc["database"]["v1"].update(changes)
    return doc


def test_parse_normalises_and_keeps_order():
    ann = parse_annotations(DOC, "mem")
    assert list(ann.videos) == ["v1", "v2"]
    assert ann.videos["v2"].subset == "validation"
    inst = ann.videos["v1"].instances[1]
    assert (inst.start, inst.end, inst.label) == (6.0, 9.5, "run")  # numeric strings accepted
    assert ann.label_map().names == ["run", "jump"]  # ids from the file
    assert [v.video_id for v in ann.subset("train")] == ["v1"]


def test_round_trip_same_content_same_bytes(tmp_path):
    ann = parse_annotations(DOC, "mem")
    first = write_annotations(ann, tmp_path / "a.json")
    again = load_annotations(first)
    assert again.videos == ann.videos
    second = write_annotations(again, tmp_path / "b.json")
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize(
    ("doc", "pattern"),
    [
        ({"videos": {}}, "expected a JSON object with a 'database' key"),
        ({"database": {}}, "field 'database' is empty"),
        ({"database": []}, "field 'database': expected an object"),
        ({"database": {"v1": {"annotations": []}}}, "video 'v1': field 'subset' is missing"),
        (doc_with(subset="dev"), "video 'v1': field 'subset': expected one of training"),
        (doc_with(annotations={"a": 1}), "video 'v1': field 'annotations': expected a list"),
        (doc_with(duration=-3), "video 'v1': field 'duration': expected seconds > 0"),
        (
            doc_with(annotations=[{"segment": ["a", 2], "label": "x"}]),
            r"'annotations\[0\].segment': expected \[start, end\] as numbers",
        ),
        (
            doc_with(annotations=[{"segment": [1, 2, 3], "label": "x"}]),
            r"'annotations\[0\].segment': expected \[start, end\]",
        ),
        (
            doc_with(annotations=[{"segment": [5, 3], "label": "x"}]),
            r"video 'v1': field 'annotations\[0\].segment': expected 0 <= start < end <= duration \(20.0\), got \[5.0, 3.0\]",
        ),
        (
            doc_with(annotations=[{"segment": [1, 3], "label": ""}]),
            r"'annotations\[0\].label': expected a non-empty class name",
        ),
        (
            doc_with(
                annotations=[
                    {"segment": [1, 3], "label": "run", "label_id": 0},
                    {"segment": [4, 5], "label": "run", "label_id": 5},
                ]
            ),
            "label 'run' has id 5 here but 0",
        ),
    ],
)
def test_errors_name_file_video_and_field(doc, pattern):
    with pytest.raises(AnnotationError, match=pattern) as err:
        parse_annotations(doc, "gt.json")
    assert str(err.value).startswith("gt.json")


@pytest.mark.parametrize(
    "bad", ["a/b", "..", "x..y", "", "  ", ".", "x\ny", "x\\ny", "tab\there", "a\\b", "del\x7f"]
)
def test_unsafe_video_ids_rejected(bad):
    with pytest.raises(AnnotationError, match="not usable as a store key"):
        check_video_id(bad)
    doc = {"database": {bad: {"subset": "test", "annotations": []}}}
    with pytest.raises(AnnotationError, match="not usable as a store key"):
        parse_annotations(doc, "gt.json")


def test_segment_policies():
    doc = doc_with(
        annotations=[
            {"segment": [-1, 3], "label": "a"},
            {"segment": [18, 25], "label": "a"},
            {"segment": [30, 40], "label": "a"},
            {"segment": [5, 4], "label": "a"},
        ]
    )
    with pytest.raises(AnnotationError, match="start < 0"):
        parse_annotations(doc, "gt.json")
    repaired = parse_annotations(doc, "gt.json", segments="repair")
    assert [(i.start, i.end) for i in repaired.videos["v1"].instances] == [(0.0, 3.0), (18.0, 20.0)]
    assert len(repaired.repairs) == 4 and "dropped [30.0, 40.0]" in " ".join(repaired.repairs)
    kept = parse_annotations(doc, "gt.json", segments="keep")
    assert len(kept.videos["v1"].instances) == 4


def test_label_map_sorted_when_ids_missing_and_stable():
    doc = copy.deepcopy(DOC)
    for ann in doc["database"]["v1"]["annotations"]:
        del ann["label_id"]
    lm = parse_annotations(doc, "m").label_map()
    assert lm.names == ["jump", "run"] and lm.index("run") == 1 and "jump" in lm
    with pytest.raises(KeyError, match="not in the label map"):
        lm.index("swim")
    with pytest.raises(AnnotationError, match="duplicate"):
        LabelMap(["a", "a"])


def test_file_errors(tmp_path):
    with pytest.raises(AnnotationError, match="annotation file not found"):
        load_annotations(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"database": {')
    with pytest.raises(AnnotationError, match=r"bad.json: not valid JSON \(line 1"):
        load_annotations(bad)


def test_real_files(shared_data):
    oracle = load_annotations(
        shared_data / "eval_oracle_thumos14" / "thumos14_test_gt_anetformat.json"
    )
    assert (len(oracle), oracle.num_instances(), len(oracle.label_map())) == (210, 3311, 20)
    gtad = load_annotations(shared_data / "thumos14_gtad" / "thumos_gt.json")  # string segments
    assert (len(gtad), gtad.num_instances()) == (410, 6318)
    assert [v.subset for v in gtad].count("training") == 200


def test_real_multithumos_policies(shared_data):
    multi = shared_data / "multithumos_tridetplus" / "multithumos.json"
    pattern = (
        r"multithumos.json: video 'video_validation_0000054': field 'annotations\[16\].segment': "
        r"expected 0 <= start < end <= duration \(135.1\), got \[96.0, 817.0\]"
    )
    with pytest.raises(AnnotationError, match=pattern):
        load_annotations(multi)
    repaired = load_annotations(multi, segments="repair")
    assert (len(repaired), repaired.num_instances(), len(repaired.label_map())) == (412, 38601, 65)
    assert len(repaired.repairs) == 72
    assert sum("dropped" in r for r in repaired.repairs) == 67
    kept = load_annotations(multi, segments="keep")
    assert kept.num_instances() == 38668  # the file's count, as the official evaluator sees it
    assert kept.label_map().names == repaired.label_map().names
    assert json.loads(json.dumps(repaired.to_json()))["database"]
