"""The I3D network: pytorch-i3d layout, SAME padding shapes, features at any input size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from features.i3d import FEATURE_DIM, InceptionI3d


@pytest.fixture(scope="module")
def rgb():
    torch.manual_seed(0)
    return InceptionI3d(3).eval()


def test_state_dict_matches_pytorch_i3d_layout(rgb):
    sd = rgb.state_dict()
    assert len(sd) == 344
    assert sum(p.numel() for p in rgb.parameters()) == 12_697_264
    assert sd["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert sd["Mixed_5c.b1b.conv3d.weight"].shape == (384, 192, 3, 3, 3)
    assert sd["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1)
    assert "logits.conv3d.bias" in sd and "Mixed_3b.b3b.bn.running_var" in sd
    assert InceptionI3d(2).state_dict()["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 2, 7, 7, 7)


def test_same_padding_shapes_and_reference_pool(rgb):
    x = torch.rand(1, 3, 16, 224, 224) * 2 - 1
    with torch.no_grad():
        trunk = rgb.trunk(x)
        assert trunk.shape == (1, FEATURE_DIM, 2, 7, 7)
        reference = F.avg_pool3d(trunk, (2, 7, 7), stride=1).flatten(1)
        torch.testing.assert_close(rgb.features(x), reference)


def test_small_inputs_pool_adaptively(rgb):
    with torch.no_grad():
        feats = rgb.features(torch.zeros(2, 3, 16, 112, 112))
        logits = rgb(torch.zeros(1, 3, 8, 64, 64))
    assert feats.shape == (2, FEATURE_DIM) and logits.shape == (1, 400)


def test_wrong_input_is_a_clear_error(rgb):
    with pytest.raises(
        ValueError, match=r"expected input B x 3 x T x H x W, got \(1, 2, 16, 64, 64\)"
    ):
        rgb.features(torch.zeros(1, 2, 16, 64, 64))
    with pytest.raises(ValueError, match="in_channels"):
        InceptionI3d(4)
