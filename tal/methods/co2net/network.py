"""CO2-Net (Hong et al., ACM MM 2021): weakly supervised localization from RGB and flow
features with two cross-modal consensus modules.

Features ``[B, 2C, T]`` hold RGB in the first ``C`` channels and flow in the last ``C``. A
cross-modal consensus module (``ConsensusModule``) re-calibrates its *main* modality with a
channel-and-time gate computed from the main modality's global context (its temporal mean,
through a conv) times the *other* modality's local context (a k=3 conv over time), then
predicts a foreground attention ``[B, T]`` in (0, 1) from the gated features. One module has
RGB as main, the other flow; their gated features are concatenated, fused by a 1x1 conv and
classified per point into ``num_classes + 1`` (the last is background): the class
activation sequence (CAS). The fused attention is the mean of the two modules'. Layer sizes
and activations follow the authors' released code (``BWA_fusion_dropout_feat_v2``, ``CO2``);
widths are configurable so that small experiments run on a CPU. Every temporal operation
respects the padding mask: the global context is the mean over real points, and padded
outputs are zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tal.methods.co2net.config import CO2NetConfig
from tal.models.blocks import MaskedConv1d, zero_padded


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over the real points of ``x [B, C, T]``: ``[B, C, 1]``."""
    keep = mask[:, None, :].to(x.dtype)
    return (x * keep).sum(-1, keepdim=True) / keep.sum(-1, keepdim=True).clamp(min=1)


class ConsensusModule(nn.Module):
    """``(main [B, C, T], other [B, C, T], mask [B, T]) -> (attention [B, T], gated [B, C, T])``."""

    def __init__(self, dim: int, attention_dim: int, dropout: float) -> None:
        super().__init__()
        self.global_conv = MaskedConv1d(dim, dim, 3)
        self.local_conv = MaskedConv1d(dim, dim, 3)
        self.act = nn.LeakyReLU(0.2)
        self.drop = nn.Dropout(dropout)
        self.att1 = MaskedConv1d(dim, attention_dim, 3)
        self.att2 = MaskedConv1d(attention_dim, attention_dim, 3)
        self.att3 = MaskedConv1d(attention_dim, 1, 1)

    def forward(self, main: Tensor, other: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        one = mask[:, :1]  # the global context is a length-1 sequence
        context = self.drop(self.act(self.global_conv(masked_mean(main, mask), one)))
        local = self.drop(self.act(self.local_conv(other, mask)))
        gated = zero_padded(torch.sigmoid(local * context) * main, mask, channels_first=True)
        a = self.drop(self.act(self.att1(gated, mask)))
        a = self.act(self.att2(a, mask))
        attention = torch.sigmoid(self.drop(self.att3(a, mask)))[:, 0]
        return attention * mask.to(attention.dtype), gated


@dataclass
class CO2NetOutput:
    """``cas`` ``[B, T, K+1]`` (last column background), the fused ``attention`` ``[B, T]``
    and each module's (``attention_rgb``, ``attention_flow``), the fused ``features``
    ``[B, T, F]`` and ``masks`` ``[B, T]``; padded points of every tensor are zero."""

    cas: Tensor
    attention: Tensor
    attention_rgb: Tensor
    attention_flow: Tensor
    features: Tensor
    masks: Tensor


class CO2Net(nn.Module):
    """See the module docstring. ``forward(feats [B, 2C, T], masks [B, T]) -> CO2NetOutput``."""

    def __init__(self, config: CO2NetConfig, in_dim: int, num_classes: int) -> None:
        super().__init__()
        if in_dim < 2 or in_dim % 2 or num_classes < 1:
            raise ValueError(
                f"CO2-Net needs RGB and flow halves of equal width (an even in_dim) and >= 1 "
                f"class, got in_dim {in_dim} and {num_classes} classes"
            )
        c = config
        self.in_dim, self.num_classes = in_dim, num_classes
        half, fused = in_dim // 2, c.fusion_dim or in_dim
        self.rgb = ConsensusModule(half, c.attention_dim, c.consensus_dropout)
        self.flow = ConsensusModule(half, c.attention_dim, c.consensus_dropout)
        self.fusion = MaskedConv1d(in_dim, fused, 1)
        self.hidden = MaskedConv1d(fused, fused, 3)
        self.classifier = MaskedConv1d(fused, num_classes + 1, 1)
        self.act = nn.LeakyReLU(0.2)
        self.drop = nn.Dropout(c.dropout)
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, feats: Tensor, masks: Tensor) -> CO2NetOutput:
        if feats.dim() != 3 or feats.shape[1] != self.in_dim:
            raise ValueError(f"feats: expected [B, {self.in_dim}, T], got {tuple(feats.shape)}")
        if masks.shape != (feats.shape[0], feats.shape[2]):
            raise ValueError(f"masks must be [B, T] = {(feats.shape[0], feats.shape[2])}")
        masks = masks.bool()
        if not bool(masks.any(dim=1).all()):
            raise ValueError("every video needs at least one real (unmasked) point")
        feats = zero_padded(feats, masks, channels_first=True)
        half = self.in_dim // 2
        rgb, flow = feats[:, :half], feats[:, half:]
        att_rgb, gated_rgb = self.rgb(rgb, flow, masks)
        att_flow, gated_flow = self.flow(flow, rgb, masks)
        fused = self.drop(self.act(self.fusion(torch.cat([gated_rgb, gated_flow], dim=1), masks)))
        cas = self.classifier(self.drop(self.act(self.hidden(self.drop(fused), masks))), masks)
        return CO2NetOutput(
            cas=cas.transpose(1, 2),
            attention=(att_rgb + att_flow) / 2,
            attention_rgb=att_rgb,
            attention_flow=att_flow,
            features=fused.transpose(1, 2),
            masks=masks,
        )
