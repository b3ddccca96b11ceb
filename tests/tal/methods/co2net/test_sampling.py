"""CO2-Net's fixed-length training sampling (the official ``random_perturb``) and how the
training step uses it and the batch's pairs."""

from __future__ import annotations

import pytest
import torch

from tal.data.dataset import Batch, pad_features
from tal.methods.co2net import CO2NetMethod
from tal.methods.co2net.config import CO2NetConfig
from tal.methods.co2net.sampling import perturbed_indices, resample_batch

# The values each output point can take, from running the official
# ``SampleDataset.random_perturb`` (wsad_dataset.py of harlanhong/MM2021-CO2-Net) 3,000 times
# per case outside this repository (np.random.seed(0)) and collecting them per point.
OFFICIAL_SUPPORT = {
    (3, 7): [[0], [0], [0, 1], [1], [1, 2], [2], [2]],  # shorter: stretched, never padded
    (10, 4): [[0, 1, 2], [2, 3, 4, 5], [5, 6, 7], [7, 8, 9]],  # longer: one per bin
    (5, 5): [[0], [1], [2], [3], [4]],  # equal: the video as it is
}


@pytest.mark.parametrize(("length", "target"), sorted(OFFICIAL_SUPPORT))
def test_draws_cover_the_official_values_per_point(length, target):
    generator = torch.Generator().manual_seed(0)
    seen: list[set[int]] = [set() for _ in range(target)]
    for _ in range(500):
        picks = perturbed_indices(length, target, generator)
        assert picks.shape == (target,) and bool((picks[1:] >= picks[:-1]).all())
        for i, v in enumerate(picks.tolist()):
            seen[i].add(v)
    assert [sorted(s) for s in seen] == OFFICIAL_SUPPORT[(length, target)]


def test_resampled_batch_is_every_video_at_the_target_length():
    feats = [torch.arange(3.0)[None].repeat(2, 1), torch.arange(10.0)[None].repeat(2, 1)]
    padded, masks = pad_features(feats, 32)
    batch = Batch(padded, masks, [torch.zeros(0, 2)] * 2, [torch.tensor([0])] * 2, ["a", "b"], [])
    out = resample_batch(batch, 7, divisible_by=32)
    assert out.feats.shape == (2, 2, 32) and out.masks.sum(1).tolist() == [7, 7]
    # each point is one of the video's own features (its index, here), none of the padding
    assert set(out.feats[0, 0, :7].tolist()) <= {0.0, 1.0, 2.0}
    assert set(out.feats[1, 0, :7].tolist()) <= set(range(10))
    assert out.feats[:, :, 7:].abs().sum() == 0 and out.video_ids == ["a", "b"]


class _Recorder(torch.nn.Module):
    """Stands in for the network (two arguments) and the loss (three): records what the
    training step gives them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, object] = {}

    def forward(self, *args):
        if len(args) == 2:  # network(feats, masks)
            feats, masks = args
            self.seen["lengths"] = masks.sum(1).tolist()
            self.seen["padded"] = feats.shape[2]
            return "outputs"
        self.seen["pairs"] = list(args[2])  # loss(outputs, labels, pairs)
        return {"loss": torch.zeros(())}


def _pairs_batch(ids_a: list[str], ids_b: list[str], lengths: list[int]) -> tuple[Batch, Batch]:
    def side(ids: list[str]) -> Batch:
        feats = [torch.randn(4, n) for n in lengths]
        padded, masks = pad_features(feats, 64)
        return Batch(
            padded, masks, [torch.zeros(0, 2)] * len(ids), [torch.tensor([0])] * len(ids), ids, []
        )

    return side(ids_a), side(ids_b)


def test_training_step_resamples_and_takes_the_first_three_pairs():
    """The official batch: every video at max_seq_len points, co-activity over 3 pairs;
    the self-paired row (a video without partner) is skipped, not counted."""
    first, second = _pairs_batch(
        ["a", "b", "c", "d", "e"], ["a2", "b", "c2", "d2", "e2"], [5, 9, 12, 3, 7]
    )
    rec = _Recorder()
    method = CO2NetMethod(CO2NetConfig(max_seq_len=20))
    method.loss_terms(rec, rec, first, second, 1, torch.device("cpu"))
    assert rec.seen["lengths"] == [20] * 10 and rec.seen["padded"] == 32
    assert rec.seen["pairs"] == [(0, 5), (2, 7), (3, 8)]


def test_former_recipe_pads_and_uses_every_pair():
    first, second = _pairs_batch(
        ["a", "b", "c", "d", "e"], ["a2", "b", "c2", "d2", "e2"], [5, 9, 12, 3, 7]
    )
    rec = _Recorder()
    former = CO2NetConfig(max_seq_len=20, train_sampling="pad", coactivity_pairs=None)
    CO2NetMethod(former).loss_terms(rec, rec, first, second, 1, torch.device("cpu"))
    assert rec.seen["lengths"] == [5, 9, 12, 3, 7] * 2 and rec.seen["padded"] == 64
    assert rec.seen["pairs"] == [(0, 5), (2, 7), (3, 8), (4, 9)]


def test_resampled_step_runs_the_real_network_and_loss():
    first, second = _pairs_batch(["a", "b"], ["a2", "b2"], [6, 40])
    method = CO2NetMethod(CO2NetConfig(max_seq_len=24, attention_dim=8, fusion_dim=8))
    network, loss = method.build_network(4, 2), method.build_loss(2, None)  # type: ignore[arg-type]
    terms = method.loss_terms(network, loss, first, second, 2, torch.device("cpu"))
    assert torch.isfinite(terms["loss"]) and terms["coactivity"] >= 0
    terms["loss"].backward()  # the resampled batch is a plain input: gradients reach weights
    assert all(p.grad is not None for p in network.classifier.parameters())
