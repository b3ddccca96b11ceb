"""Predictions files: validated as columns, each malformed entry still named by video and
index; reversed or negative segments refused (or dropped and counted on request)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.cli import exit_status as run
from tal.data.annotations import AnnotationError
from tal.data.predictions import Detections, load_predictions, parse_predictions


def _doc(*entries_by_video):
    return {"results": {f"v{i}": list(e) for i, e in enumerate(entries_by_video)}}


def _det(label="a", score=0.5, segment=(1.0, 2.0)):
    return {"label": label, "score": score, "segment": list(segment)}


def test_columns_keep_file_order_and_values():
    doc = _doc([_det("a", 0.9, (0, 1)), _det("b", 1, (2.5, 4))], [], [_det("c", 0.1, (3, 3))])
    d = parse_predictions(doc)
    assert d.video_ids.tolist() == ["v0", "v0", "v2"]
    assert d.labels.tolist() == ["a", "b", "c"]
    assert d.start.tolist() == [0.0, 2.5, 3.0] and d.end.tolist() == [1.0, 4.0, 3.0]
    assert d.score.dtype == np.float64 and d.score.tolist() == [0.9, 1.0, 0.1]
    rows = list(zip(d.video_ids, d.labels, d.start, d.end, d.score, strict=True))
    again = Detections.from_rows(rows)
    assert again.labels.tolist() == d.labels.tolist()
    assert len(parse_predictions({"results": {}})) == 0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("x", r"'results\[1\]': expected an object, got str"),
        (_det(label=""), r"'results\[1\].label': expected a class name"),
        (_det(label=3), r"'results\[1\].label': expected a class name, got 3"),
        (_det(score="high"), r"'results\[1\].score': expected a finite number, got 'high'"),
        (_det(score=True), r"'results\[1\].score': expected a finite number, got True"),
        (_det(score=float("nan")), r"'results\[1\].score': expected a finite number, got nan"),
        (_det(segment=(1,)), r"'results\[1\].segment': expected \[start, end\] in seconds"),
        (_det(segment=(1, "2")), r"'results\[1\].segment': expected \[start, end\] as finite"),
        ({"label": "a", "score": 1}, r"'results\[1\].segment': expected \[start, end\]"),
    ],
)
def test_a_malformed_entry_is_named_by_video_and_index(entry, message):
    doc = _doc([_det()], [_det(), entry, _det()])
    with pytest.raises(AnnotationError, match=rf"^f\.json: video 'v1': field {message}"):
        parse_predictions(json.loads(json.dumps(doc)), "f.json")


def test_reversed_and_negative_segments_are_errors_or_dropped_and_counted():
    doc = _doc([_det(), _det(segment=(5, 3))], [_det(segment=(-1, 2)), _det()])
    with pytest.raises(
        AnnotationError,
        match=r"^f.json: video 'v0': field 'results\[1\].segment': end 3.0 is before start "
        r"5.0 \(2 such detections; drop them with --drop-invalid\)",
    ):
        parse_predictions(doc, "f.json")
    with pytest.raises(AnnotationError, match=r"video 'v1': field 'results\[0\].segment': start"):
        parse_predictions(_doc([_det()], [_det(segment=(-1, 2))]), "f.json")
    lines: list[str] = []
    kept = parse_predictions(doc, "f.json", invalid="drop", log=lines.append)
    assert kept.video_ids.tolist() == ["v0", "v1"] and kept.start.tolist() == [1.0, 1.0]
    assert lines == [
        "f.json: dropped 2 detections whose segment is reversed (1) or starts before 0 (1)"
    ]


def test_reversed_ground_truth_copy_no_longer_scores(tmp_path, capsys):
    """The case of the issue: a reversed copy of the ground truth used to score 100% mAP."""
    gt = {
        "database": {
            "v": {
                "subset": "test",
                "duration": 30.0,
                "annotations": [{"label": "a", "segment": [2.0, 6.0]}],
            }
        }
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"results": {"v": [_det("a", 0.9, (6.0, 2.0))]}}))
    argv = ["eval", "--ground-truth", str(tmp_path / "gt.json"), "--predictions", str(pred)]
    assert run([*argv, "--subset", "test"]) == 2
    assert "end 2.0 is before start 6.0" in capsys.readouterr().err
    assert run([*argv, "--subset", "test", "--drop-invalid"]) == 0
    captured = capsys.readouterr()
    assert "dropped 1 detections" in captured.err and "mAP %" in captured.out


def test_files_with_nan_literals_still_get_the_usual_message(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"results": {"v": [{"label": "a", "score": NaN, "segment": [1, 2]}]}}')
    with pytest.raises(AnnotationError, match=r"'results\[0\].score': expected a finite number"):
        load_predictions(path)
    path.write_text('{"results": ')
    with pytest.raises(AnnotationError, match=r"p.json: not valid JSON"):
        load_predictions(path)
