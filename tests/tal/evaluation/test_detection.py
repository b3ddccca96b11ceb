"""The vectorised evaluator against hand-computed cases, the reference and the official oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tal.data.annotations import AnnotationSet, Instance, Video, load_annotations
from tal.data.predictions import Detections, load_predictions
from tal.evaluation.detection import (
    ACTIVITYNET_TIOU,
    THUMOS14_TIOU,
    evaluate_detection,
    interpolated_ap,
)
from tal.evaluation.random_case import random_case
from tal.evaluation.reference import reference_evaluate


def gt_of(*videos: tuple[str, list[tuple[str, float, float]]], subset: str = "validation"):
    return AnnotationSet(
        {
            vid: Video(vid, subset, 100.0, None, [Instance(lbl, s, e) for lbl, s, e in insts])
            for vid, insts in videos
        }
    )


def dets(*rows: tuple[str, str, float, float, float]) -> Detections:
    return Detections.from_rows(list(rows))


def test_duplicate_detection_is_a_false_positive_after_the_first_match():
    gt = gt_of(("v1", [("A", 0, 10)]))
    pred = dets(("v1", "A", 0, 10, 0.9), ("v1", "A", 0, 10, 0.8))
    res = evaluate_detection(gt, pred, "validation", [0.5])
    # precision [1, 0.5], recall [1, 1]: the envelope keeps precision 1 up to recall 1
    assert res.mAP == [1.0]


def test_interleaved_false_positive_hand_computed():
    gt = gt_of(("v1", [("A", 0, 10), ("A", 20, 30)]))
    pred = dets(("v1", "A", 0, 10, 0.9), ("v1", "A", 100, 110, 0.8), ("v1", "A", 20, 30, 0.7))
    res = evaluate_detection(gt, pred, "validation", [0.5])
    # precision [1, 1/2, 2/3], recall [1/2, 1/2, 1] -> 0.5 * 1 + 0.5 * 2/3
    assert res.mAP[0] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)


def test_threshold_decides_match():
    gt = gt_of(("v1", [("A", 0, 10)]))
    res = evaluate_detection(gt, dets(("v1", "A", 0, 6, 0.5)), "validation", [0.5, 0.6, 0.7])
    assert res.mAP == [1.0, 1.0, 0.0]  # tIoU is exactly 0.6: "at or above" matches


def test_tiou_tie_goes_to_the_later_ground_truth():
    # The first prediction has tIoU 9/11 with both GTs; the official code (stable
    # argsort()[::-1]) takes the later one, so the second prediction (tIoU 1 with g1,
    # 2/3 with g0) finds g1 locked and only g0 left, which fails at 0.7.
    gt = gt_of(("v1", [("A", 0, 10), ("A", 2, 12)]))
    pred = dets(("v1", "A", 1, 11, 0.9), ("v1", "A", 2, 12, 0.8))
    res = evaluate_detection(gt, pred, "validation", [0.5, 0.7])
    assert res.mAP == pytest.approx([1.0, 0.5], abs=1e-12)


def test_score_tie_puts_the_later_prediction_first():
    gt = gt_of(("v1", [("A", 0, 10)]))
    pred = dets(("v1", "A", 0, 10, 0.5), ("v1", "A", 50, 60, 0.5))
    res = evaluate_detection(gt, pred, "validation", [0.5])
    # order: the false positive (later in the file) first -> precision [0, 1/2], recall [0, 1]
    assert res.mAP == [0.5]


def test_empty_predictions_give_zero():
    gt = gt_of(("v1", [("A", 0, 10)]), ("v2", [("B", 5, 9)]))
    res = evaluate_detection(gt, Detections.empty(), "validation", THUMOS14_TIOU)
    assert res.mAP == [0.0] * 5 and res.average_mAP == 0.0
    assert res.per_class_ap == {"A": [0.0] * 5, "B": [0.0] * 5}


def test_class_without_predictions_counts_as_zero_in_the_mean():
    gt = gt_of(("v1", [("A", 0, 10)]), ("v2", [("B", 5, 9)]))
    res = evaluate_detection(gt, dets(("v1", "A", 0, 10, 0.9)), "validation", [0.5])
    assert res.per_class_ap == {"A": [1.0], "B": [0.0]}
    assert res.mAP == [0.5]


def test_prediction_on_video_outside_subset_is_a_false_positive():
    gt = AnnotationSet(
        {
            "v1": Video("v1", "validation", 100.0, None, [Instance("A", 0, 10)]),
            "t1": Video("t1", "test", 100.0, None, [Instance("A", 0, 10)]),
        }
    )
    pred = dets(("t1", "A", 0, 10, 0.9), ("v1", "A", 0, 10, 0.8), ("zz", "A", 0, 10, 0.85))
    res = evaluate_detection(gt, pred, "validation", [0.5])
    # order t1 (FP), zz (FP), v1 (TP): precision [0, 0, 1/3], recall [0, 0, 1]
    assert res.mAP[0] == pytest.approx(1 / 3, abs=1e-12)


def test_unknown_labels_are_ignored_and_reported(caplog):
    gt = gt_of(("v1", [("A", 0, 10)]))
    pred = dets(("v1", "Z", 0, 10, 0.99), ("v1", "A", 0, 10, 0.5), ("v1", "Z", 1, 2, 0.3))
    with caplog.at_level("WARNING"):
        res = evaluate_detection(gt, pred, "validation", [0.5])
    assert res.mAP == [1.0]
    assert res.ignored_labels == {"Z": 2}
    assert "Z (2)" in caplog.text
    assert res.num_predictions == 1


def test_subset_without_instances_is_an_error():
    gt = gt_of(("v1", [("A", 0, 10)]))
    with pytest.raises(ValueError, match="subset 'test' has no annotated instances"):
        evaluate_detection(gt, Detections.empty(), "test", [0.5])


def test_interpolated_ap_matches_voc_definition():
    prec = np.array([[1.0, 0.5, 2 / 3]])
    rec = np.array([[0.5, 0.5, 1.0]])
    assert interpolated_ap(prec, rec)[0] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-15)


@pytest.mark.parametrize("quantize", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_reference_on_random_cases(seed, quantize):
    gt, pred = random_case(2000, 25, 8.0, seed=seed, quantize=quantize)
    res = evaluate_detection(gt, pred, "validation", ACTIVITYNET_TIOU)
    ref = reference_evaluate(gt, pred, "validation", ACTIVITYNET_TIOU)
    assert set(res.per_class_ap) == set(ref)
    for label, aps in ref.items():
        np.testing.assert_allclose(res.per_class_ap[label], aps, rtol=0, atol=1e-9)
    ref_map = np.mean(np.array(list(ref.values())), axis=0)
    np.testing.assert_allclose(res.mAP, ref_map, rtol=0, atol=1e-9)
    assert 0.0 < res.average_mAP < 1.0  # a non-degenerate case


def test_reproduces_official_evaluator_on_thumos14(shared_data):
    folder = shared_data / "eval_oracle_thumos14"
    official = json.loads((folder / "official_eval_result.json").read_text())
    gt = load_annotations(folder / "thumos14_test_gt_anetformat.json", segments="keep")
    pred = load_predictions(folder / "thumos14_test_synthetic_pred.json")
    res = evaluate_detection(gt, pred, official["subset"], official["tiou_thresholds"])
    np.testing.assert_allclose(res.mAP, official["mAP"], rtol=0, atol=1e-9)
    assert res.average_mAP == pytest.approx(official["average_mAP"], abs=1e-9)
    assert set(res.per_class_ap) == set(official["ap_per_class"])
    for label, aps in official["ap_per_class"].items():
        np.testing.assert_allclose(res.per_class_ap[label], aps, rtol=0, atol=1e-9)
