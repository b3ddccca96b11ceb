"""CO2-Net's proposal method on hand-made activations: runs above thresholds, outer-inner
contrast, class selection and Soft-NMS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tal.data.timing import FeatureTiming
from tal.methods.co2net.config import CO2NetConfig
from tal.methods.co2net.decode import (
    localize_weak,
    outer_inner_contrast,
    proposal_steps,
    runs_above,
    video_scores,
)
from tal.postprocess import to_seconds

# A hand case run through the official proposal method outside this repository:
# ``proposal_methods.multiple_threshold_hamnet`` of harlanhong/MM2021-CO2-Net (default
# options: thresholds linspace(0.1, 0.9, 10), class threshold 0.2, gamma 0.2, Soft-NMS sigma
# 0.3), called with cas = [C0, C1, 0] as [1, 16, 3] and attn = ATT as [1, 16, 1] (float64).
# Its rows (class, score, t_start, t_end), t in snippet units where snippet j is [j, j + 1].
ATT = [0.05, 0.05, 0.3, 0.5, 0.7, 0.95, 0.95, 0.8, 0.6, 0.3, 0.05, 0.05, 0.65, 0.75, 0.2, 0.05]
C0 = [-1.0, -1.0, 0.5, 1.0, 2.0, 3.0, 3.0, 2.5, 1.5, 0.5, -1.0, -1.0, 0.0, 0.5, -0.5, -1.0]
C1 = [0.0, 0.0, 0.0, -0.5, -0.5, -1.0, -1.0, -0.5, 0.0, 0.0, 0.5, 0.5, 2.0, 2.5, 1.0, 0.0]
OFFICIAL = [
    (0, 1.8727025823138121, 4, 9),
    (0, 0.6907370273996873, 5, 7),
    (0, 0.5143692589145863, 13, 14),
    (0, 0.2415982412782828, 2, 10),
    (0, 0.12213770989167469, 12, 15),
    (0, 0.023566686591318532, 5, 8),
    (0, 0.013136792147759736, 12, 14),
    (0, 0.004461596400108399, 2, 10),
    (0, 0.0018016179262494885, 5, 7),
    (0, 0.0006681890372545202, 12, 15),
    (0, 0.000273641355561067, 3, 9),
    (0, 7.186855317337704e-05, 12, 14),
    (0, 4.244097057815725e-05, 4, 8),
    (0, 5.229369544355548e-06, 2, 10),
    (0, 2.5638382877837075e-06, 12, 14),
    (0, 2.372463602315353e-07, 3, 9),
    (0, 9.146235002182695e-08, 12, 14),
    (0, 3.262827266202725e-09, 12, 14),
    (1, 1.6150689964499734, 12, 14),
    (1, 0.1767521816081784, 12, 15),
    (1, 0.06199408140102396, 13, 14),
    (1, 0.002740339946958705, 12, 15),
    (1, 0.0003079918806719985, 12, 14),
    (1, 1.0987300302100629e-05, 12, 14),
    (1, 3.91960877881402e-07, 12, 14),
    (1, 1.3982809749924344e-08, 12, 14),
    (1, -0.32243097654167185, 2, 10),
    (1, -0.011502400512095695, 2, 10),
    (1, -0.00041033655934593434, 2, 10),
    (1, -0.001016309955461835, 3, 9),
    (1, -3.6255834589891884e-05, 3, 9),
    (1, -3.45342073379311e-05, 4, 9),
    (1, -7.290569267120179e-05, 4, 8),
    (1, -0.00015418962310142468, 5, 8),
    (1, -0.001063220104170422, 5, 7),
    (1, -3.7929306922840633e-05, 5, 7),
]


def _hand_case() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([C0, C1, [0.0] * 16]).T.double(), torch.tensor(ATT).double()


def _rows(segments, scores, labels, shift: float) -> list[tuple[int, float, float, float]]:
    """(class, score, start + shift, end + shift), sorted by class and decreasing score."""
    rows = [
        (int(k), float(sc), s + shift, e + shift)
        for (s, e), sc, k in zip(segments.tolist(), scores.tolist(), labels.tolist(), strict=True)
    ]
    return sorted(rows, key=lambda r: (r[0], -r[1]))


def test_runs_above_a_threshold():
    values = np.array([0.0, 0.6, 0.7, 0.2, 0.9, 0.9, 0.9, 0.1, 0.8])
    assert runs_above(values, 0.5) == [(1, 2), (4, 6), (8, 8)]
    assert runs_above(values, 0.95) == []


def test_outer_inner_contrast_by_hand():
    element = np.zeros((12, 2))
    element[4:8, 0] = 1.0  # class 0 active on [4, 7]
    element[:, 1] = 0.5
    # inner [4, 7] (length 4), outer floor(0.5 * 4) = 2 points each side: [2, 3] and [8, 9]
    got = outer_inner_contrast(element, 4, 7, 0.5)
    assert got.tolist() == pytest.approx([1.0, 0.0])
    # at the start of the video only the points after it are outside
    assert outer_inner_contrast(element, 0, 1, 1.0).tolist() == pytest.approx([0.0, 0.0])


def test_video_scores_are_a_softmax_without_background():
    cas = torch.tensor([[4.0, 0.0, 0.0]] * 10)
    scores = video_scores(cas, torch.ones(10), 10)
    e4 = np.exp(4.0)
    assert scores.tolist() == pytest.approx([e4 / (e4 + 2), 1 / (e4 + 2)], rel=1e-6)


def test_localizes_the_attended_run_of_the_video_class():
    t = 40
    cas = torch.full((t, 3), -2.0)
    cas[10:20, 1] = 3.0  # class 1 on [10, 20)
    cas[:, 2] = 0.0  # background
    attention = torch.full((t,), 0.05)
    attention[10:20] = 0.95
    config = CO2NetConfig()
    segments, scores, labels = localize_weak(cas, attention, config)
    assert set(labels.tolist()) == {1}  # the only class above class_threshold
    best = scores.argmax()
    # features 10 .. 19 cover steps [9.5, 19.5] (feature i covers [i - 0.5, i + 0.5])
    assert segments[best].tolist() == [9.5, 19.5]
    # every threshold between 0.05 and 0.95 gives the same run: Soft-NMS decays the copies
    assert len(segments) == len(config.thresholds)
    assert (scores[torch.arange(len(scores)) != best] < scores[best]).all()


def test_no_attention_above_any_threshold_gives_no_detection():
    segments, scores, labels = localize_weak(torch.zeros(8, 3), torch.zeros(8), CO2NetConfig())
    assert segments.shape == (0, 2) and scores.shape == (0,) and labels.shape == (0,)


def test_matches_the_official_proposal_method_on_a_hand_case():
    """Every proposal, its score after Soft-NMS and its class equal the official rows; our
    steps are the official snippet units minus half a step (``edges``)."""
    cas, attention = _hand_case()
    ours = _rows(*localize_weak(cas, attention, CO2NetConfig()), shift=0.5)
    official = sorted(OFFICIAL, key=lambda r: (r[0], -r[1]))
    assert len(ours) == len(official)
    for got, want in zip(ours, official, strict=True):
        assert got[0] == want[0] and got[2:] == (want[2], want[3])
        assert got[1] == pytest.approx(want[1], rel=1e-6, abs=1e-9)


def test_former_options_differ_from_the_official_decoding():
    """``oic_rounding: floor`` and ``nms_overlap: exact`` change scores of the hand case;
    ``first_last_plus_one`` puts every proposal half a step later."""
    cas, attention = _hand_case()
    official = _rows(*localize_weak(cas, attention, CO2NetConfig()), shift=0.0)
    late = CO2NetConfig(proposal_bounds="first_last_plus_one")
    assert _rows(*localize_weak(cas, attention, late), shift=-0.5) == official
    for former in ({"oic_rounding": "floor"}, {"nms_overlap": "exact"}):
        rows = _rows(*localize_weak(cas, attention, CO2NetConfig(**former)), shift=0.0)
        assert [r[1] for r in rows] != pytest.approx([r[1] for r in official]), former


def test_outer_region_rounds_as_the_official_int_truncation():
    """A run of 3 points with oic_outer 0.25 reaches 0.75 points out: the official
    ``int(first - 0.75)`` .. ``first - 1`` is one point before, ``last + 1`` ..
    ``int(last + 0.75)`` none after."""
    element = np.zeros((10, 1))
    element[3, 0] = 4.0  # the one point before the run [4, 6]
    element[7, 0] = 8.0  # the first point after it
    official = outer_inner_contrast(element, 4, 6, 0.25)
    assert official.tolist() == pytest.approx([0.0 - 4.0])
    former = outer_inner_contrast(element, 4, 6, 0.25, rounding="floor")
    assert former.tolist() == pytest.approx([0.0])  # floor(0.75) = 0 on both sides


def test_proposal_seconds_cover_the_frames_of_its_features():
    """A run of features 10 .. 19 in seconds.

    THUMOS14 timing here (30 fps, stride 4, clip 16): feature i is centred on frame
    4 i + 8 and its cell is the 4 frames around it, so the run covers frames 46 .. 86, i.e.
    [46 / 30, 86 / 30] s. With the official timing (25 fps, stride = clip = 16) feature i
    covers frames [16 i, 16 i + 16): the official [10, 20] snippets, [6.4, 12.8] s."""
    assert proposal_steps(10, 19) == (9.5, 19.5)
    steps = torch.tensor([proposal_steps(10, 19)])
    one = (torch.ones(1), torch.zeros(1, dtype=torch.long))
    ours = to_seconds("v", steps, *one, FeatureTiming(30.0, 4, 16), None, ["a"])
    assert (ours.start[0], ours.end[0]) == pytest.approx((46 / 30, 86 / 30))
    official = to_seconds("v", steps, *one, FeatureTiming(25.0, 16, 16), None, ["a"])
    assert (official.start[0], official.end[0]) == pytest.approx((10 * 16 / 25, 20 * 16 / 25))
    # the former decoding: half a step (2 frames, 0.067 s here) late at both ends
    late = torch.tensor([proposal_steps(10, 19, "first_last_plus_one")])
    former = to_seconds("v", late, *one, FeatureTiming(30.0, 4, 16), None, ["a"])
    assert (former.start[0], former.end[0]) == pytest.approx((48 / 30, 88 / 30))
