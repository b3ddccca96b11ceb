"""The bootstrap of average mAP: a reweighted video is the same as copies of it, a class absent
from a resample is left out as the evaluation leaves it out, and the intervals behave (a method
against itself differs by exactly 0; one that is better on every video is better in its
interval)."""

from __future__ import annotations

import numpy as np
import pytest

from tal.data.annotations import AnnotationSet, Video
from tal.data.predictions import Detections
from tal.evaluation.bootstrap import bootstrap_intervals, resampled_average_map
from tal.evaluation.detection import evaluate_detection, match_detections
from tal.evaluation.random_case import random_case

TIOU = (0.3, 0.5, 0.7)


def _case(seed: int = 0, quantize: bool = False):
    return random_case(12, 4, 9.0, seed=seed, quantize=quantize)


def _copied(gt: AnnotationSet, det: Detections, copies: dict[str, int]):
    """The case with ``copies[v]`` copies of video v (0: removed), copies renamed."""
    videos: dict[str, Video] = {}
    rows = []
    for vid, video in gt.videos.items():
        k = copies.get(vid, 1) if video.subset == "validation" else 1
        for i in range(k):
            name = vid if i == 0 else f"{vid}#{i}"
            videos[name] = Video(name, video.subset, video.duration, video.fps, video.instances)
            for j in np.flatnonzero(det.video_ids == vid):
                rows.append((name, det.labels[j], det.start[j], det.end[j], det.score[j]))
    return AnnotationSet(videos=videos, source="copied"), Detections.from_rows(rows)


@pytest.mark.parametrize("quantize", [False, True])
def test_unit_weights_give_the_evaluation_and_weights_give_copies(quantize):
    gt, det = _case(1, quantize)
    matched = match_detections(gt, det, "validation", TIOU)
    ones = np.ones((1, len(matched.video_ids)))
    expected = evaluate_detection(gt, det, "validation", TIOU).average_mAP
    assert resampled_average_map(matched, ones)[0] == pytest.approx(expected, abs=1e-12)
    if quantize:
        # score ties across videos: copies written into a file interleave with the other
        # videos' tied predictions in file order, which the weights cannot follow; AP depends
        # on the order inside a tie, so only the unit weights are exact there
        return
    rng = np.random.default_rng(5)
    for _ in range(3):
        draw = rng.multinomial(len(matched.video_ids), ones[0] / ones.sum())
        copies = dict(zip(matched.video_ids, draw.tolist(), strict=True))
        gt_k, det_k = _copied(gt, det, copies)
        if not any(v.instances for v in gt_k.videos.values() if v.subset == "validation"):
            continue
        want = evaluate_detection(gt_k, det_k, "validation", TIOU).average_mAP
        got = resampled_average_map(matched, draw[None, :])[0]
        assert got == pytest.approx(want, abs=1e-9)


def test_a_class_missing_from_the_drawn_videos_is_left_out():
    gt, det = _case(2)
    matched = match_detections(gt, det, "validation", TIOU)
    label = next(iter(matched.class_index))
    without = {
        vid: 0
        for vid, video in gt.videos.items()
        if video.subset == "validation" and any(i.label == label for i in video.instances)
    }
    assert 0 < len(without) < len(matched.video_ids)
    gt_k, det_k = _copied(gt, det, without)
    want = evaluate_detection(gt_k, det_k, "validation", TIOU)
    assert label not in want.per_class_ap
    weights = np.array([[0.0 if v in without else 1.0 for v in matched.video_ids]])
    assert resampled_average_map(matched, weights)[0] == pytest.approx(want.average_mAP, abs=1e-12)


def test_intervals_hold_the_estimate_and_a_method_against_itself_differs_by_zero():
    runs = {}
    for name, seeds in (("base", (0, 1, 2)), ("same", (0, 1, 2))):
        runs[name] = [match_detections(*_case(s), "validation", TIOU) for s in seeds]
    out = {r.name: r for r in bootstrap_intervals(runs, baseline="base", resamples=200)}
    base, same = out["base"], out["same"]
    assert base.difference is None and base.seeds == 3
    assert base.average_mAP.low < base.average_mAP.estimate < base.average_mAP.high
    assert same.average_mAP == base.average_mAP
    assert same.difference is not None
    assert (same.difference.low, same.difference.estimate, same.difference.high) == (0, 0, 0)


def test_the_interval_is_the_plain_percentiles_moved_by_the_resamples_offset():
    runs = {"m": [match_detections(*_case(s), "validation", TIOU) for s in (0, 1)]}
    shifted = bootstrap_intervals(runs, resamples=300)[0].average_mAP
    plain = bootstrap_intervals(runs, resamples=300, shift=False)[0].average_mAP
    assert shifted.estimate == plain.estimate
    assert shifted.half_width == pytest.approx(plain.half_width)  # the same spread
    offset = plain.low - shifted.low
    assert plain.high - shifted.high == pytest.approx(offset)
    # the resamples' mean, recomputed with the same draws, is what was taken off
    rng = np.random.default_rng(0)
    n = len(runs["m"][0].video_ids)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=300)
    draws = rng.integers(0, 2, size=(300, 2))
    per_seed = np.stack([resampled_average_map(r, weights) for r in runs["m"]])
    stat = per_seed[draws, np.arange(300)[:, None]].mean(axis=1)
    assert offset == pytest.approx(stat.mean() - plain.estimate)
    assert offset != 0
    assert shifted.low < shifted.estimate < shifted.high


def test_a_method_better_on_every_video_has_a_positive_paired_difference():
    gt, det = _case(3)
    # "better": the same detections plus an exact copy of every ground-truth instance on top
    rows = [
        (vid, inst.label, inst.start, inst.end, 2.0)
        for vid, video in gt.videos.items()
        if video.subset == "validation"
        for inst in video.instances
    ]
    rows += list(zip(det.video_ids, det.labels, det.start, det.end, det.score, strict=True))
    better = Detections.from_rows(rows)
    runs = {
        "base": [match_detections(gt, det, "validation", TIOU)],
        "better": [match_detections(gt, better, "validation", TIOU)],
    }
    out = {r.name: r for r in bootstrap_intervals(runs, baseline="base", resamples=200)}
    diff = out["better"].difference
    assert diff is not None and diff.low > 0
    assert out["better"].average_mAP.estimate == pytest.approx(1.0)


def test_bad_inputs_are_named():
    matched = match_detections(*_case(0), "validation", TIOU)
    with pytest.raises(ValueError, match="baseline"):
        bootstrap_intervals({"a": [matched]}, baseline="b")
    with pytest.raises(ValueError, match="same number of seeds"):
        bootstrap_intervals({"a": [matched], "b": [matched, matched]}, baseline="a")
    with pytest.raises(ValueError, match="weights"):
        resampled_average_map(matched, np.ones((1, 3)))
    other = match_detections(*_case(4), "validation", TIOU)
    other.video_ids.reverse()
    with pytest.raises(ValueError, match="same subset"):
        bootstrap_intervals({"a": [matched], "b": [other]})
