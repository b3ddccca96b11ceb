"""Evaluation figures: the precision-recall figure with and without predictions of the ground
truth's classes (an untrained model predicts none, and its run still gets its figures)."""

from __future__ import annotations

import pytest

from tal.data.annotations import AnnotationSet, Instance, Video
from tal.data.predictions import Detections
from tal.evaluation.detection import evaluate_detection
from tal.evaluation.plots import precision_recall_figure

GT = AnnotationSet(
    {"v1": Video("v1", "validation", 100.0, None, [Instance("A", 0, 10), Instance("B", 20, 30)])}
)


def test_curves_are_computed_only_when_asked_for():
    pred = Detections.from_rows([("v1", "A", 0, 10, 0.9), ("v1", "A", 40, 50, 0.5)])
    assert evaluate_detection(GT, pred, "validation", [0.5]).curves is None
    curves = evaluate_detection(GT, pred, "validation", [0.5], curves=True).curves
    assert set(curves) == {"A"}  # B has no prediction: no curve
    precision, recall = curves["A"]
    assert precision.tolist() == [[1.0, 0.5]] and recall.tolist() == [[1.0, 1.0]]


def test_figure_of_curves(tmp_path):
    pred = Detections.from_rows([("v1", "A", 0, 10, 0.9), ("v1", "B", 20, 29, 0.5)])
    result = evaluate_detection(GT, pred, "validation", [0.5], curves=True)
    path = precision_recall_figure(result, tmp_path / "pr.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_no_prediction_of_a_ground_truth_class_gives_an_empty_figure(tmp_path):
    pred = Detections.from_rows([("v1", "Z", 0, 10, 0.9)])  # only a label the subset lacks
    result = evaluate_detection(GT, pred, "validation", [0.5], curves=True)
    assert result.curves == {} and result.average_mAP == 0.0
    path = precision_recall_figure(result, tmp_path / "pr.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_result_without_curves_is_refused(tmp_path):
    result = evaluate_detection(GT, Detections.from_rows([]), "validation", [0.5])
    with pytest.raises(ValueError, match="curves=True"):
        precision_recall_figure(result, tmp_path / "pr.png")
    assert not (tmp_path / "pr.png").exists()


def test_timeline_takes_scores_outside_zero_one(tmp_path):
    from tal.evaluation.plots import timeline_figure

    pred = Detections.from_rows([("v1", "A", 0, 10, 1.7), ("v1", "B", 20, 30, 0.5)])
    path = timeline_figure(pred, ["v1"], ["A", "B"], tmp_path / "t.png", ground_truth=GT.videos)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_training_curves_draw_each_present_key(tmp_path):
    from PIL import Image

    from tal.evaluation.plots import training_curves_figure

    history = [
        {"epoch": 1, "loss": 2.0, "positive_weight": 0.9},
        {"epoch": 2, "loss": 1.5, "positive_weight": 0.8, "val_average_mAP": 0.1},
        {"epoch": 3, "loss": 1.2, "positive_weight": 0.85},
    ]
    path = training_curves_figure(
        history, ["loss", "positive_weight", "val_average_mAP", "absent"], tmp_path / "c.png"
    )
    with Image.open(path) as image:
        width, _ = image.size
    one = training_curves_figure(history, ["loss"], tmp_path / "one.png")
    with Image.open(one) as image:
        single_width, _ = image.size
    assert width > 2 * single_width  # three panels side by side, "absent" left out
    with pytest.raises(ValueError, match="none of"):
        training_curves_figure(history, ["absent"], tmp_path / "none.png")
