"""I2Net: the training-length attention context and the class-aware inference partner.

Expected values are derived by hand (no official I2Net code is public); each case says how.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import Tensor

from tal.data.dataset import VideoItem
from tal.data.timing import FeatureTiming
from tal.methods import build_method
from tal.methods.i2net import (
    I2Net,
    I2NetConfig,
    I2NetLocalizer,
    PartnerBank,
    context_window_mask,
    top_class,
)
from tal.models.localizer import LocalizerOutput

IN_DIM, NUM_CLASSES = 6, 3


def test_context_window_mask_by_hand():
    # 4 queries over 8 keys, window 4: query i sits at c = floor((i + 0.5) * 8 / 4) = 2i + 1,
    # its window starts at clamp(c - 2, 0, 8 - 4) = 0, 1, 3, 4
    q, k = torch.ones(1, 4, dtype=torch.bool), torch.ones(1, 8, dtype=torch.bool)
    rows = context_window_mask(q, k, 4)[0, 0].int().tolist()
    assert rows == [
        [1, 1, 1, 1, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 1, 1, 1, 1],
    ]
    # a context no longer than the window is seen whole; padded keys never
    short = torch.tensor([[True] * 3 + [False] * 5])
    assert context_window_mask(q, short, 4)[0, 0].int().tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]] * 4
    with pytest.raises(ValueError, match="window"):
        context_window_mask(q, k, 0)


def _network(context: str, seed: int = 0) -> I2NetLocalizer:
    config = I2NetConfig(
        embed_dim=16,
        num_heads=2,
        num_levels=2,
        attention_window=3,
        max_seq_len=16,
        attention_context=context,
    )
    torch.manual_seed(seed)
    network = build_method(config).build_network(IN_DIM, NUM_CLASSES).eval()
    assert isinstance(network, I2NetLocalizer)
    return network


def _record_keys(network: I2NetLocalizer) -> list[tuple[str, int, int]]:
    """(which attention, its level, most keys any real query attends to), per call."""
    seen: list[tuple[str, int, int]] = []
    assert network.intra is not None and network.inter is not None
    for name, blocks, shift in (("intra", network.intra, 1), ("inter", network.inter, 0)):
        for level, block in enumerate(blocks):
            attn = block.attn

            def record(
                q: Tensor, c: Tensor, allowed: Tensor, *, _a=attn, _n=name, _l=level + shift
            ):
                seen.append((_n, _l, int(allowed.sum(-1).max())))
                return type(_a).forward(_a, q, c, allowed)

            attn.forward = record  # type: ignore[method-assign]
    return seen


def test_attention_sees_at_most_the_training_length():
    # max_seq_len 16, 2 levels: a training crop has 16 points at level 0 and 8 at level 1,
    # so intra (level 1 over level 0) sees at most 16 keys and inter at level l 16 / 2**l
    feats = torch.randn(1, IN_DIM, 64, generator=torch.Generator().manual_seed(1))
    masks = torch.ones(1, 64, dtype=torch.bool)
    windowed = _network("training_window")
    seen = _record_keys(windowed)
    windowed(feats, masks, feats, masks)
    limit = {("intra", 1): 16, ("inter", 0): 16, ("inter", 1): 8}
    assert {(n, lv) for n, lv, _ in seen} == set(limit)
    assert all(keys == limit[(n, lv)] for n, lv, keys in seen)
    # the former global context: every query sees the whole 64-step video (32 at level 1)
    whole = _network("global")
    seen = _record_keys(whole)
    whole(feats, masks, feats, masks)
    full = {("intra", 1): 64, ("inter", 0): 64, ("inter", 1): 32}
    assert all(keys == full[(n, lv)] for n, lv, keys in seen)


def test_training_window_is_global_up_to_the_training_length():
    # a video of max_seq_len steps (a training crop): both contexts give the same outputs
    feats = torch.randn(2, IN_DIM, 16, generator=torch.Generator().manual_seed(2))
    masks = torch.tensor([[True] * 16, [True] * 13 + [False] * 3])
    a = _network("training_window")(feats, masks, feats.flip(0), masks.flip(0))
    b = _network("global")(feats, masks, feats.flip(0), masks.flip(0))
    for x, y in zip(a.cls_logits + a.offsets, b.cls_logits + b.offsets, strict=True):
        assert torch.equal(x, y)
    # longer: the outputs differ (the windows cut the context)
    long = torch.randn(1, IN_DIM, 64, generator=torch.Generator().manual_seed(3))
    ones = torch.ones(1, 64, dtype=torch.bool)
    a = _network("training_window")(long, ones)
    b = _network("global")(long, ones)
    assert not torch.allclose(a.cls_logits[0], b.cls_logits[0])


def _bank() -> PartnerBank:
    # three entries over two classes; keys are unit vectors along axes 0, 1, 2 of C = 3
    feats = [torch.full((3, 4), float(v), dtype=torch.float16) for v in (1, 2, 3)]
    return PartnerBank(feats, torch.eye(3), ["b0", "b1", "b2"], [0, 1, 1])


def test_bank_nearest_is_class_aware():
    bank = _bank()
    query = torch.tensor([[1.0], [0.2], [0.5]]).expand(3, 10)  # closest to b0 (class 0)
    assert bank.nearest(query) == 0
    assert bank.nearest(query, label=1) == 2  # among class 1 (b1, b2): b2 is closer
    assert bank.nearest(query, exclude="b2", label=1) == 1
    assert bank.nearest(query, exclude="b1", label=0) == 0  # exclude a video not in class 0
    assert bank.nearest(query, label=2) == 0  # no entry of class 2: all entries
    old = PartnerBank.from_state({"feats": bank.feats, "keys": bank.keys, "video_ids": ["x"] * 3})
    assert old.labels == [-1, -1, -1] and old.nearest(query, label=1) == 0


def test_top_class_over_levels_and_real_points():
    logits = [torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 9.0]]]), torch.tensor([[[3.0, 0.0, 0.0]]])]
    masks = [torch.tensor([[True, False]]), torch.tensor([[True]])]
    out = LocalizerOutput(
        logits, [torch.zeros(1, 2, 2), torch.zeros(1, 1, 2)], masks, [1, 2], torch.zeros(1, 2, 4)
    )
    assert top_class(out) == 0  # 9.0 sits on a padded point; 3.0 at level 1 wins


@dataclass
class _Call:
    partner: Tensor


class _FakeNetwork(torch.nn.Module):
    """Records each call's partner; every output's top class is ``label``."""

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label, self.calls = label, []

    def forward(self, feats: Tensor, masks: Tensor, partner: Tensor, partner_masks: Tensor):
        self.calls.append(_Call(partner))
        logits = torch.zeros(1, feats.shape[-1], NUM_CLASSES)
        logits[..., self.label] = 1.0
        return LocalizerOutput([logits], [torch.zeros(1, feats.shape[-1], 2)], [masks], [1], logits)


@pytest.mark.parametrize(
    ("policy", "passes", "partner"),
    # bank: the nearest overall (b1); bank_class: the nearest of class 1 (b2), after a pass
    [("bank_class", 2, 3.0), ("bank", 1, 2.0), ("self", 1, None)],
)
def test_forward_video_partner_policies(policy, passes, partner):
    method = I2Net(I2NetConfig(num_levels=1, max_seq_len=16, inference_partner=policy))
    assert I2NetConfig().inference_partner == "self"  # the default, chosen on validation
    network = _FakeNetwork(label=1)  # the first pass predicts class 1
    video = torch.tensor([[0.2], [1.0], [0.1]]).expand(3, 5)  # nearest overall: b1 (class 1)
    # b0, b1 of class 0, b2 of class 1; their partner features are filled with 1, 2, 3
    feats = [torch.full((3, 4), v, dtype=torch.float16) for v in (1.0, 2.0, 3.0)]
    bank = PartnerBank(feats, torch.eye(3), ["b0", "b1", "b2"], [0, 0, 1])
    method.forward_video(network, "query", video, torch.device("cpu"), bank)
    assert len(network.calls) == passes
    last = network.calls[-1].partner
    if partner is None:
        assert torch.equal(last[0, :, :5], video)
    else:
        assert float(last[0, 0, 0]) == partner


class _Videos:
    """A stand-in for an uncropped FeatureDataset: what PartnerBank.build reads."""

    def __init__(self, videos: dict[str, tuple[Tensor, list[tuple[float, float, int]]]]):
        self.items = []
        for vid, (feats, instances) in videos.items():
            segs = torch.tensor([[s, e] for s, e, _ in instances], dtype=torch.float32).reshape(
                -1, 2
            )
            labels = torch.tensor([lab for *_, lab in instances], dtype=torch.int64)
            timing = FeatureTiming(30.0, 4, 16)
            self.items.append(VideoItem(vid, feats, segs, labels, timing, 1.0, feats.shape[1]))
        self.video_ids = list(videos)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> VideoItem:
        return self.items[i]

    def labels(self, i: int) -> np.ndarray:
        return self.items[i].labels.numpy()


def test_bank_keeps_windows_around_the_class_and_whole_video_keys():
    steps = torch.arange(40, dtype=torch.float32)
    feats = torch.stack([steps, torch.ones(40), torch.zeros(40)])  # channel 0 = step index
    videos = _Videos({"v": (feats, [(30.0, 35.0, 1), (2.0, 4.0, 0)])})
    bank = PartnerBank.build(videos, per_class=1, max_len=8)  # type: ignore[arg-type]
    assert bank.video_ids == ["v", "v"] and bank.labels == [0, 1]
    # class 0 [2, 4]: the earliest window covering it whole starts at 0 (features 0..7);
    # class 1 [30, 35]: at 28 (covers [27.5, 35.5], the first start with all 5 steps)
    assert bank.feats[0][0].tolist() == list(range(8))
    assert bank.feats[1][0].tolist() == list(range(28, 36))
    assert bank.feats[0].dtype == torch.float16
    key = torch.nn.functional.normalize(feats.mean(1), dim=0)  # the whole video's mean
    torch.testing.assert_close(bank.keys[0], key)
