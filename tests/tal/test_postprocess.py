"""Decoding, NMS, voting, external score fusion and the conversion to seconds on hand-made
inputs; the parity cases hold numbers printed by ActionFormer's own code."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from features.errors import UserInputError
from tal.config import InferenceConfig
from tal.data.predictions import Detections
from tal.data.timing import FeatureTiming
from tal.methods.base import PostprocessSettings
from tal.postprocess import (
    THUMOS14_CLASS_INDEX,
    ExternalScores,
    batched_nms,
    decode_video,
    fuse_external_scores,
    segment_voting,
    soft_nms,
    to_seconds,
)


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
    # pre_nms_topk per level: the best of each level
    top1 = decode_video(*_hand_made_output(), strides=[1, 2], pre_nms_topk=1)
    assert top1[0].tolist() == [[0.0, 3.0], [1.0, 4.0]]
    # the former rule: the best of the whole video
    top1 = decode_video(*_hand_made_output(), strides=[1, 2], pre_nms_topk=1, topk_per="video")
    assert top1[0].tolist() == [[0.0, 3.0]]
    high = decode_video(*_hand_made_output(), strides=[1, 2], score_threshold=0.9)
    assert high[0].shape == (0, 2)
    with pytest.raises(ValueError, match="topk_per"):
        decode_video(*_hand_made_output(), strides=[1, 2], topk_per="batch")  # type: ignore[arg-type]


def _official_case():
    """Two levels (strides 1, 2), two classes; level 0: [-0.5, 1.5] (p 0.953), [0, 3]
    (p 0.881), a segment 0.04 steps long (p 0.731) and a padded point; level 1: [1, 4]
    (p 0.5)."""
    logits = [torch.full((4, 2), -20.0), torch.full((2, 2), -20.0)]
    offsets = [torch.zeros(4, 2), torch.zeros(2, 2)]
    masks = [torch.tensor([True, True, True, False]), torch.tensor([True, True])]
    logits[0][0, 0] = 3.0
    offsets[0][0] = torch.tensor([0.5, 1.5])
    logits[0][1, 0] = 2.0
    offsets[0][1] = torch.tensor([1.0, 2.0])
    logits[0][2, 1] = 1.0
    offsets[0][2] = torch.tensor([0.02, 0.02])
    logits[0][3, 0] = 5.0
    offsets[0][3] = torch.tensor([1.0, 1.0])
    logits[1][1, 1] = 0.0
    offsets[1][1] = torch.tensor([0.5, 1.0])
    return logits, offsets, masks


# ActionFormer's own PtTransformer.inference_single_video (libs/modeling/meta_archs.py, run
# outside this repository on _official_case with pre_nms_thresh 0.001) printed these
# (segments, scores, labels) for (pre_nms_topk, duration_thresh):
OFFICIAL_DECODE = {
    (1, 0.05): ([[-0.5, 1.5], [1.0, 4.0]], [0.9525741338729858, 0.5], [0, 1]),
    (2000, 0.05): (
        [[-0.5, 1.5], [0.0, 3.0], [1.0, 4.0]],
        [0.9525741338729858, 0.8807970285415649, 0.5],
        [0, 0, 1],
    ),
    (2000, 0.0): (
        [[-0.5, 1.5], [0.0, 3.0], [1.98, 2.02], [1.0, 4.0]],
        [0.9525741338729858, 0.8807970285415649, 0.7310585975646973, 0.5],
        [0, 0, 1, 1],
    ),
}


@pytest.mark.parametrize(("topk", "duration"), list(OFFICIAL_DECODE))
def test_decode_matches_actionformer_per_level_topk_and_duration(topk: int, duration: float):
    segs, scores, labels = decode_video(
        *_official_case(), strides=[1, 2], pre_nms_topk=topk, duration_threshold=duration
    )
    want_segs, want_scores, want_labels = OFFICIAL_DECODE[(topk, duration)]
    assert segs.tolist() == [pytest.approx(row, abs=1e-6) for row in want_segs]
    assert scores.tolist() == pytest.approx(want_scores, rel=1e-6)
    assert labels.tolist() == want_labels


def test_per_level_topk_keeps_a_level_one_candidate_a_video_topk_drops():
    per_level = decode_video(*_official_case(), strides=[1, 2], pre_nms_topk=1)
    per_video = decode_video(*_official_case(), strides=[1, 2], pre_nms_topk=1, topk_per="video")
    assert [1.0, 4.0] in per_level[0].tolist()  # the level-1 segment, p 0.5
    assert per_video[0].tolist() == [[-0.5, 1.5]]


def test_duration_threshold_is_in_feature_steps():
    # the 0.04-step segment: dropped at 0.05 (ActionFormer), kept at 0.001 (its ActivityNet
    # setting) and at 0 (the former rule: only empty segments go)
    for duration, kept in ((0.05, False), (0.001, True), (0.0, True)):
        segs, _, _ = decode_video(*_official_case(), strides=[1, 2], duration_threshold=duration)
        assert any(abs(e - s - 0.04) < 1e-5 for s, e in segs.tolist()) is kept


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


def _nms_case():
    segments = torch.tensor([[0.0, 10.0], [1.0, 10.0], [1.0, 10.0], [20.0, 30.0], [2.0, 9.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = torch.tensor([0, 0, 1, 0, 1])
    return segments, scores, labels


# ActionFormer's own batched_nms (libs/utils/nms.py with its nms_cpu.cpp compiled, run
# outside this repository on _nms_case, min_score 0.001) printed these (segments, scores,
# labels) for the settings given (method, iou_threshold, sigma, max_seg_num, multiclass,
# voting_thresh):
OFFICIAL_NMS = {
    ("soft", 0.1, 0.5, 200, True, 0.7): (
        [[0.0, 10.0], [1.0, 10.0], [20.0, 30.0], [1.0, 10.0], [2.0, 9.0]],
        [0.9, 0.7, 0.6, 0.15831904113292694, 0.1491171270608902],
        [0, 1, 0, 0, 1],
    ),
    ("soft", 0.1, 0.5, 200, False, 0.7): (
        [
            [0.7884615, 9.8653841],
            [20.0, 30.0],
            [0.9433963, 9.7822933],
            [0.8439688, 9.8559084],
            [0.8439688, 9.8559084],
        ],
        [0.9, 0.6, 0.18765561282634735, 0.04721616208553314, 0.005591266322880983],
        [0, 0, 1, 0, 1],
    ),
    ("soft", 0.1, 0.75, 200, False, 0.0): (
        [[0.0, 10.0], [20.0, 30.0], [1.0, 10.0], [2.0, 9.0], [1.0, 10.0]],
        [0.9, 0.6, 0.27167651057243347, 0.11612775176763535, 0.027970878407359123],
        [0, 0, 0, 1, 1],
    ),
    ("hard", 0.5, 0.5, 200, True, 0.0): (
        [[0.0, 10.0], [1.0, 10.0], [20.0, 30.0]],
        [0.9, 0.7, 0.6],
        [0, 1, 0],
    ),
    ("soft", 0.1, 0.5, 2, False, 0.9): ([[0.6, 10.0], [20.0, 30.0]], [0.9, 0.6], [0, 0]),
}


@pytest.mark.parametrize("settings", list(OFFICIAL_NMS))
def test_batched_nms_matches_actionformer(settings: tuple):
    method, iou, sigma, cap, multiclass, voting = settings
    segs, scores, labels = batched_nms(
        *_nms_case(),
        method=method,
        iou_threshold=iou,
        sigma=sigma,
        min_score=0.001,
        max_detections=cap,
        multiclass=multiclass,
        voting_threshold=voting,
    )
    want_segs, want_scores, want_labels = OFFICIAL_NMS[settings]
    assert segs.tolist() == [pytest.approx(row, abs=1e-5) for row in want_segs]
    assert scores.tolist() == pytest.approx(want_scores, rel=1e-5)
    assert labels.tolist() == want_labels


def test_class_agnostic_nms_decays_across_classes():
    segments = torch.tensor([[0.0, 10.0], [1.0, 10.0]])
    scores, labels = torch.tensor([0.9, 0.8]), torch.tensor([0, 1])
    per_class = batched_nms(segments, scores, labels, voting_threshold=0.0)
    assert per_class[1].tolist() == pytest.approx([0.9, 0.8])  # other class: untouched
    agnostic = batched_nms(segments, scores, labels, multiclass=False, voting_threshold=0.0)
    # tIoU([0, 10], [1, 10]) = 0.9: Gaussian decay exp(-0.81 / 0.5)
    assert agnostic[1].tolist() == pytest.approx([0.9, 0.8 * math.exp(-0.81 / 0.5)])
    assert agnostic[2].tolist() == [0, 1]


def test_segment_voting_by_hand():
    # kept [0, 10]; candidates [0, 10] (0.9, tIoU 1) and [1, 10] (0.8, tIoU 0.9) vote with
    # weights 0.9 and 0.72; [20, 30] does not overlap: start (0.72 * 1) / 1.62, end 10
    kept = torch.tensor([[0.0, 10.0]])
    candidates = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0]])
    refined = segment_voting(kept, candidates, torch.tensor([0.9, 0.8, 0.6]), 0.7)
    assert refined.tolist() == [pytest.approx([0.72 / 1.62, 10.0])]
    # above the threshold only: at 0.95, [1, 10] (tIoU 0.9) does not vote
    alone = segment_voting(kept, candidates, torch.tensor([0.9, 0.8, 0.6]), 0.95)
    assert alone.tolist() == [[0.0, 10.0]]


def test_nms_method_none_and_bad_method():
    segs, scores, _ = batched_nms(*_nms_case(), method="none", max_detections=3)
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7]) and len(segs) == 3
    with pytest.raises(ValueError, match="method"):
        batched_nms(*_nms_case(), method="greedy")  # type: ignore[arg-type]


def _write_scores(path: Path, table: object) -> Path:
    path.write_text(json.dumps(table))
    return path


# ActionFormer's own postprocess_results (libs/utils/postprocessing.py, run outside this
# repository with topk 2 on these detections and {"results": {"v1": [0.1, 0.6, 0.3],
# "v2": [0.5, 0.2, 0.7]}}) printed, per video, (starts, labels, scores):
OFFICIAL_FUSION = {
    "v1": (
        [0.0, 20.0, 0.0, 20.0],
        [1, 1, 2, 2],
        [0.7348469228349535, 0.4898979485566356, 0.5196152422706632, 0.34641016151377546],
    ),
    "v2": (
        [5.0, 2.0, 1.0, 5.0, 2.0, 1.0],
        [2, 2, 2, 0, 0, 0],
        [
            0.7483314773547882,
            0.5916079783099616,
            0.458257569495584,
            0.6324555320336759,
            0.5,
            0.3872983346207417,
        ],
    ),
}
FUSION_INPUT = {
    "v1": ([[0.0, 10.0], [20.0, 30.0]], [0.9, 0.4], [0, 2]),
    "v2": ([[1.0, 4.0], [5.0, 9.0], [2.0, 3.0]], [0.3, 0.8, 0.5], [1, 1, 0]),
}


def test_external_score_fusion_matches_actionformer(tmp_path: Path):
    path = _write_scores(
        tmp_path / "cls.json", {"results": {"v1": [0.1, 0.6, 0.3], "v2": [0.5, 0.2, 0.7]}}
    )
    external = ExternalScores.load(path)
    for video, (segs, scores, labels) in FUSION_INPUT.items():
        del labels  # the classifier's classes replace the detections' own
        out_segs, out_scores, out_labels = fuse_external_scores(
            torch.tensor(segs),
            torch.tensor(scores, dtype=torch.float64),
            external.video(video, 3),
            topk=2,
        )
        starts, want_labels, want_scores = OFFICIAL_FUSION[video]
        assert out_segs[:, 0].tolist() == starts
        assert out_labels.tolist() == want_labels
        assert out_scores.tolist() == pytest.approx(want_scores, rel=1e-9)


def test_external_scores_layouts_and_errors(tmp_path: Path):
    bare = ExternalScores.load(_write_scores(tmp_path / "bare.json", {"v_abc": [0.2, 0.8]}))
    # ActivityNet ids: matched with or without the v_ prefix
    assert bare.video("abc", 2).tolist() == [0.2, 0.8]
    assert bare.video("v_abc", 2).tolist() == [0.2, 0.8]
    named = ExternalScores.load(
        _write_scores(
            tmp_path / "named.json", {"results": {"x": [0.1, 0.9, 0.5]}, "class": ["c", "a", "b"]}
        )
    ).for_labels(["a", "b", "c"])
    assert named.video("x", 3).tolist() == [0.9, 0.5, 0.1]  # columns put in label order
    with pytest.raises(UserInputError, match="missing.json does not exist"):
        ExternalScores.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UserInputError, match="broken.json is not JSON"):
        ExternalScores.load(tmp_path / "broken.json")
    with pytest.raises(UserInputError, match="bad.json: video 'v1'"):
        ExternalScores.load(_write_scores(tmp_path / "bad.json", {"results": {"v1": "high"}}))
    with pytest.raises(UserInputError, match="bare.json has no video 'v2'"):
        bare.video("v2", 2)
    with pytest.raises(UserInputError, match="2 class scores, the model 3"):
        bare.video("abc", 3)
    with pytest.raises(UserInputError, match=r"has no scores for \['d'\]"):
        ExternalScores.load(tmp_path / "named.json").for_labels(["a", "d"])


def test_untrimmednet_thumos_scores_read_with_their_class_columns(shared_data: Path):
    """The real THUMOS14 UntrimmedNet test scores: row i is video_test_{i+1}, column k the
    THUMOS class index k + 1. With the 20 classes' columns picked by name, the top class of
    a test video is one of its annotated classes for most videos (a wrong column map would
    give about 1 in 20)."""
    folder = shared_data / "thumos14_gtad"
    names = sorted(THUMOS14_CLASS_INDEX)
    scores = ExternalScores.load(folder / "uNet_test.npy").for_labels(names)
    annotated: dict[str, set[str]] = {}
    with open(folder / "test_Annotation.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["type"] != "Ambiguous":
                annotated.setdefault(row["video"], set()).add(row["type"])
                # the class index table agrees with the annotation file
                assert THUMOS14_CLASS_INDEX[row["type"]] == int(row["type_idx"])
    hits = sum(names[int(np.argmax(scores.video(v, 20)))] in c for v, c in annotated.items())
    assert hits / len(annotated) > 0.85


def test_untrimmednet_npy_of_the_wrong_shape(tmp_path: Path):
    np.save(tmp_path / "scores.npy", np.zeros((3, 20), dtype=np.float32))
    with pytest.raises(UserInputError, match=r"scores.npy: expected \[videos, 101\]"):
        ExternalScores.load(tmp_path / "scores.npy")
    with pytest.raises(UserInputError, match="gone.npy does not exist"):
        ExternalScores.load(tmp_path / "gone.npy")
    np.save(tmp_path / "small.npy", np.eye(101, dtype=np.float32)[:3])
    small = ExternalScores.load(tmp_path / "small.npy").for_labels(["BaseballPitch"])
    # row 2 is video_test_0000003; its 1 sits in column 2, not BaseballPitch's column 6
    assert small.video("video_test_0000003", 1).tolist() == [0.0]
    assert ExternalScores.load(tmp_path / "small.npy").video("video_test_0000003", 101)[2] == 1
    with pytest.raises(UserInputError, match="no video 'video_test_0000007'"):
        small.video("video_test_0000007", 1)


def test_postprocess_settings_from_config_reads_every_key(tmp_path: Path):
    path = _write_scores(tmp_path / "cls.json", {"results": {"v1": [0.1, 0.6]}})
    section = InferenceConfig(
        topk_per="video",
        duration_threshold=0.0,
        nms_method="hard",
        iou_threshold=0.4,
        multiclass_nms=False,
        voting_threshold=0.9,
        external_scores=str(path),
        external_topk=1,
        max_detections=100,
    )
    post = PostprocessSettings.from_config(section, ["a", "b"])
    assert (post.topk_per, post.duration_threshold, post.nms_method) == ("video", 0.0, "hard")
    assert (post.iou_threshold, post.multiclass_nms, post.voting_threshold) == (0.4, False, 0.9)
    assert post.external is not None and post.external.video("v1", 2).tolist() == [0.1, 0.6]
    assert (post.external_topk, post.max_detections) == (1, 100)
    # the defaults are ActionFormer's THUMOS14 test settings
    default = PostprocessSettings.from_config(InferenceConfig())
    assert default == PostprocessSettings()
    assert (default.topk_per, default.duration_threshold, default.iou_threshold) == (
        "level",
        0.05,
        0.1,
    )
    assert (default.nms_method, default.nms_sigma, default.multiclass_nms) == ("soft", 0.5, True)
    assert (default.min_score, default.max_detections, default.external) == (0.001, 200, None)
    with pytest.raises(UserInputError, match="nowhere.json"):
        PostprocessSettings.from_config(InferenceConfig(external_scores="nowhere.json"))


def test_to_seconds_converts_and_clips():
    timing = FeatureTiming(fps=10.0, stride=4, clip_length=16)  # seconds = (4 * step + 8) / 10
    segments = torch.tensor([[0.0, 10.0], [-5.0, 3.0], [20.0, 30.0], [30.0, 40.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([1, 0, 1, 0])
    found = to_seconds("v1", segments, scores, labels, timing, 10.0, ["run", "jump"])
    assert list(found.video_ids) == ["v1"] * 3 and list(found.labels) == ["jump", "run", "jump"]
    # [30, 40] -> [12.8, 16.8] is past the end: dropped
    assert found.start == pytest.approx([0.8, 0.0, 8.8]) and found.end == pytest.approx(
        [4.8, 2.0, 10.0]
    )
    assert found.score == pytest.approx([0.9, 0.8, 0.7])
    assert found.start.dtype == found.score.dtype == np.float64
    unclipped = to_seconds("v1", segments, scores, labels, timing, None, ["run", "jump"])
    assert (unclipped.start[-1], unclipped.end[-1]) == pytest.approx((12.8, 16.8))
    # the same numbers as rows of Python floats (the former path), and nothing left
    rows = list(
        zip(found.video_ids, found.labels, found.start, found.end, found.score, strict=True)
    )
    again = Detections.from_rows(
        [(v, lab, float(a), float(b), float(c)) for v, lab, a, b, c in rows]
    )
    assert np.array_equal(again.start, found.start) and np.array_equal(again.score, found.score)
    none = to_seconds("v1", segments[:0], scores[:0], labels[:0], timing, 10.0, ["run", "jump"])
    assert len(none) == 0 and len(Detections.concat([none, found, none])) == 3
    both = Detections.concat([found, unclipped])
    assert list(both.video_ids) == ["v1"] * 7 and both.end[-1] == pytest.approx(16.8)
    assert len(Detections.concat([])) == 0


def _reference_soft_nms(segs, scores, labels, sigma, thr, min_score, cap, method, agnostic):
    """One greedy loop per class (the former implementation, kept here as the reference)."""
    out = []
    groups = [np.arange(labels.size)] if agnostic else [
        np.flatnonzero(labels == c) for c in np.unique(labels)
    ]  # fmt: skip
    for members in groups:
        sc = scores[members].copy()
        alive = np.flatnonzero(sc >= min_score)
        kept = 0
        while alive.size and kept < cap:
            best = alive[np.argmax(sc[alive])]
            out.append((members[best], sc[best]))
            kept += 1
            alive = alive[alive != best]
            if not alive.size:
                break
            b, o = segs[members[best]], segs[members[alive]]
            inter = np.clip(np.minimum(b[1], o[:, 1]) - np.maximum(b[0], o[:, 0]), 0.0, None)
            iou = inter / np.maximum((b[1] - b[0]) + (o[:, 1] - o[:, 0]) - inter, 1e-12)
            if method == "gaussian":
                sc[alive] *= np.exp(-(iou**2) / sigma)
            elif method == "linear":
                sc[alive] *= np.where(iou >= thr, 1.0 - iou, 1.0)
            else:
                sc[alive] *= np.where(iou >= thr, 0.0, 1.0)
            alive = alive[sc[alive] >= min_score]
    idx = np.array([i for i, _ in out], dtype=np.int64)
    new = np.array([v for _, v in out], dtype=np.float64)
    order = np.argsort(-new, kind="stable")[:cap]
    return idx[order], new[order]


@pytest.mark.parametrize("method", ["gaussian", "linear", "hard"])
@pytest.mark.parametrize("agnostic", [False, True])
def test_soft_nms_of_all_classes_at_once_equals_one_loop_per_class(method, agnostic):
    rng = np.random.default_rng(7)
    for trial in range(20):
        n = int(rng.integers(0, 300))
        start = rng.uniform(0, 100, n)
        segs = np.stack([start, start + rng.uniform(0.1, 20, n)], 1)
        scores = rng.choice([0.2, 0.5, 0.9], n) if trial % 4 == 0 else rng.uniform(0, 1, n)
        labels = rng.integers(0, 12, n)
        cap = [200, 5, 1][trial % 3]
        got_segs, got_scores, got_labels = soft_nms(
            torch.from_numpy(segs), torch.from_numpy(scores), torch.from_numpy(labels),
            sigma=0.5, iou_threshold=0.3, min_score=0.01, max_detections=cap, method=method,
            class_agnostic=agnostic,
        )  # fmt: skip
        idx, ref_scores = _reference_soft_nms(
            segs, scores, labels, 0.5, 0.3, 0.01, cap, method, agnostic
        )
        assert got_scores.numpy().tolist() == ref_scores.tolist()  # bitwise equal
        assert got_segs.numpy().tolist() == segs[idx].tolist()
        assert got_labels.numpy().tolist() == labels[idx].tolist()
