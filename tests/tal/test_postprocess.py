"""Decoding, Soft-NMS and the conversion to seconds on hand-made inputs."""

from __future__ import annotations

import math

import pytest
import torch

from tal.data.predictions import Detections
from tal.data.timing import FeatureTiming
from tal.postprocess import decode_video, soft_nms, to_seconds_rows


def _hand_made_output():
    """Level 0 (stride 1, 4 points, last padded) and level 1 (stride 2, 2 points), 2 classes."""
    logits = [torch.full((4, 2), -20.0), torch.full((2, 2), -20.0)]
    offsets = [torch.zeros(4, 2), torch.zeros(2, 2)]
    masks = [torch.tensor([True, True, True, False]), torch.tensor([True, True])]
    logits[0][1, 0] = 2.0  # point at step 1 -> [1 - 1, 1 + 2] = [0, 3]
    offsets[0][1] = torch.tensor([1.0, 2.0])
    logits[1][1, 1] = 0.0  # point at step 2 -> [2 - 0.5*2, 2 + 1*2] = [1, 4]
    offsets[1][1] = torch.tensor([0.5, 1.0])
    logits[0][2, 1] = 1.0  # zero-length segment: dropped
    logits[0][3, 0] = 5.0  # padded point: ignored
    offsets[0][3] = torch.tensor([1.0, 1.0])
    return logits, offsets, masks


def test_decode_video():
    segs, scores, labels = decode_video(*_hand_made_output(), strides=[1, 2])
    assert segs.tolist() == [[0.0, 3.0], [1.0, 4.0]]
    assert scores.tolist() == pytest.approx([1 / (1 + math.exp(-2.0)), 0.5])
    assert labels.tolist() == [0, 1]
    top1 = decode_video(*_hand_made_output(), strides=[1, 2], pre_nms_topk=1)
    assert top1[0].tolist() == [[0.0, 3.0]]
    high = decode_video(*_hand_made_output(), strides=[1, 2], score_threshold=0.9)
    assert high[0].shape == (0, 2)


def _candidates():
    segments = torch.tensor([[0.0, 10.0], [1.0, 10.0], [1.0, 10.0], [20.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 0])
    return segments, scores, labels


def test_soft_nms_decays_only_overlapping_same_class():
    segs, scores, labels = soft_nms(*_candidates())
    decayed = 0.8 * math.exp(-(0.9**2) / 0.5)  # tIoU([0,10], [1,10]) = 0.9
    assert segs.tolist() == [[0.0, 10.0], [1.0, 10.0], [20.0, 30.0], [1.0, 10.0]]
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.6, decayed])
    assert labels.tolist() == [0, 1, 0, 0]


def test_soft_nms_min_score_and_cap():
    _, scores, _ = soft_nms(*_candidates(), min_score=0.2)
    assert scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    segs, scores, labels = soft_nms(*_candidates(), max_detections=2)
    assert scores.tolist() == pytest.approx([0.9, 0.7]) and labels.tolist() == [0, 1]
    assert segs.tolist() == [[0.0, 10.0], [1.0, 10.0]]
    hard = soft_nms(*_candidates(), method="hard", iou_threshold=0.5)
    assert hard[1].tolist() == pytest.approx([0.9, 0.7, 0.6])
    empty = soft_nms(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert empty[0].shape == (0, 2)


def test_to_seconds_rows_converts_and_clips():
    timing = FeatureTiming(fps=10.0, stride=4, clip_length=16)  # seconds = (4 * step + 8) / 10
    segments = torch.tensor([[0.0, 10.0], [-5.0, 3.0], [20.0, 30.0], [30.0, 40.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([1, 0, 1, 0])
    rows = to_seconds_rows("v1", segments, scores, labels, timing, 10.0, ["run", "jump"])
    assert [r[:2] for r in rows] == [("v1", "jump"), ("v1", "run"), ("v1", "jump")]
    assert [r[2:] for r in rows] == [
        pytest.approx((0.8, 4.8, 0.9)),
        pytest.approx((0.0, 2.0, 0.8)),
        pytest.approx((8.8, 10.0, 0.7)),  # [30, 40] -> [12.8, 16.8] is past the end: dropped
    ]
    unclipped = to_seconds_rows("v1", segments, scores, labels, timing, None, ["run", "jump"])
    assert unclipped[-1][2:4] == pytest.approx((12.8, 16.8))
    assert len(Detections.from_rows(rows)) == 3
