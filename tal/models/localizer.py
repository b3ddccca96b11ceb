"""The one-stage anchor-free localizer: ActionFormer's pyramid plus I2Net's two attentions.

Features ``[B, C_in, T]`` are embedded by two masked conv layers, then pass through a pyramid
of ``L`` levels; level l has ``T / 2**l`` points and stride ``2**l`` feature steps. Each level
is a pre-LN transformer block with *local* self-attention (``attention_window`` points), the
first on the embedding, the others on the previous level halved by a stride-2 max pool.

- **Intra-video attention** (``intra_attention``): right after level l+1 is pooled from level
  l, its points cross-attend to *all* real points of level l. Local attention only widens the
  view a few points per level; this gives every point of every level above 0 a view of the
  whole video. (Level 0 has no finer level and stays local.)
- **Inter-video attention** (``inter_attention``): with a partner video (a training pair that
  shares an action class), after each level is computed for both videos, each cross-attends
  to the other's level: ``x_a + CA(x_a, x_b)`` and ``x_b + CA(x_b, x_a)``, one module per
  level used in both directions, both from the pre-update tensors. The updated level feeds
  the heads and the next level. Without a partner the video is its own partner (a global
  self-attention at every level), so a model trained with pairs runs on a single video.

Heads are shared across levels: a classification head (sigmoid logits, one per class) and a
regression head whose non-negative outputs are distances to the start and end in units of
the level stride. With both attentions off this is a plain ActionFormer-style model. With
``name: asl`` the model also carries ASL's class-level Gaussians and, per level, its
instance-level sensitivity head (``tal.models.asl``), which shape the training loss only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tal.config import ModelConfig
from tal.models.asl import ClassSensitivity, InstanceSensitivity
from tal.models.blocks import (
    ConvNormReLU,
    CrossAttentionBlock,
    LocalTransformerBlock,
    MaskedConv1d,
    masked_max_pool,
)

PRIOR_PROB = 0.01  # initial foreground probability of every class (focal-loss practice)


def divisible_by(config: ModelConfig) -> int:
    """What the padded length T must be a multiple of: ``2**(num_levels - 1)``."""
    return 2 ** (config.num_levels - 1)


class _Trunk(nn.Module):
    """Two ``ConvNormReLU`` layers, ``[B, C_in, T] -> [B, C_out, T]``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [ConvNormReLU(in_channels, out_channels), ConvNormReLU(out_channels, out_channels)]
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


class ClassificationHead(nn.Module):
    """Per-point class logits ``[B, T, num_classes]``; the final bias starts every class at
    probability ``PRIOR_PROB`` so that the many background points do not swamp early training."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.trunk = _Trunk(dim, dim)
        self.out = MaskedConv1d(dim, num_classes, 3)
        nn.init.constant_(self.out.conv.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.out(self.trunk(x, mask), mask).transpose(1, 2)


class RegressionHead(nn.Module):
    """Per-point distances ``[B, T, 2]`` (start, end) >= 0 in level-stride units; a learnable
    scale per level (init 1) lets the shared weights serve levels of different sizes."""

    def __init__(self, dim: int, num_levels: int) -> None:
        super().__init__()
        self.trunk = _Trunk(dim, dim)
        self.out = MaskedConv1d(dim, 2, 3)
        self.scales = nn.Parameter(torch.ones(num_levels))

    def forward(self, x: Tensor, mask: Tensor, level: int) -> Tensor:
        offsets = F.relu(self.out(self.trunk(x, mask), mask) * self.scales[level])
        return offsets.transpose(1, 2)


class Localizer(nn.Module):
    """ActionFormer / I2Net localizer; see the module docstring.

    ``forward(feats [B, C_in, T], masks [B, T] bool, partner_feats=None, partner_masks=None)``
    returns ``{"cls_logits": [B, T_l, num_classes] per level, "offsets": [B, T_l, 2],
    "masks": [B, T_l], "strides": [2**l]}`` for the first video, plus ``"partner"`` (the same
    dict for the partner) when a partner was given and inter-video attention is on. Partner
    inputs are ignored when it is off. Padded points of every output are zero. An ASL model
    adds ``"features"`` (level 0, ``[B, T, D]``), ``"class_sensitivity"`` (the module) and,
    with the instance branch, ``"sensitivity"`` (``[B, T_l, 2]`` per level).
    """

    divisible_by = staticmethod(divisible_by)

    def __init__(self, config: ModelConfig, in_dim: int, num_classes: int) -> None:
        super().__init__()
        if in_dim < 1 or num_classes < 1:
            raise ValueError(f"in_dim and num_classes must be >= 1, got {in_dim}, {num_classes}")
        dim, heads, drop = config.embed_dim, config.num_heads, config.dropout
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.num_levels = config.num_levels
        self.embed = _Trunk(in_dim, dim)
        self.levels = nn.ModuleList(
            LocalTransformerBlock(dim, heads, config.attention_window, drop)
            for _ in range(config.num_levels)
        )
        # intra[l] lets level l+1 attend to level l; inter[l] joins the two videos at level l
        self.intra = (
            nn.ModuleList(
                CrossAttentionBlock(dim, heads, drop) for _ in range(config.num_levels - 1)
            )
            if config.intra_attention
            else None
        )
        self.inter = (
            nn.ModuleList(CrossAttentionBlock(dim, heads, drop) for _ in range(config.num_levels))
            if config.inter_attention
            else None
        )
        self.cls_head = ClassificationHead(dim, num_classes)
        self.reg_head = RegressionHead(dim, config.num_levels)
        asl = config.name == "asl"
        self.class_sensitivity = (
            ClassSensitivity(num_classes, config.asl.min_sigma) if asl else None
        )
        self.sensitivity = InstanceSensitivity(dim) if asl and config.asl.instance_branch else None

    def _check(self, feats: Tensor, masks: Tensor, name: str) -> Tensor:
        if feats.dim() != 3 or feats.shape[1] != self.in_dim:
            raise ValueError(f"{name}: expected [B, {self.in_dim}, T], got {tuple(feats.shape)}")
        b, _, t = feats.shape
        if masks.shape != (b, t):
            raise ValueError(f"{name}: masks must be [{b}, {t}], got {tuple(masks.shape)}")
        step = 2 ** (self.num_levels - 1)
        if t % step:
            raise ValueError(f"{name}: T = {t} is not a multiple of 2**(num_levels-1) = {step}")
        masks = masks.bool()
        if not bool(masks.any(dim=1).all()):
            raise ValueError(f"{name}: every video needs at least one real (unmasked) point")
        return masks

    def _level(self, level: int, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Level ``level`` of one video from the previous level's output (or the embedding)."""
        if level > 0:
            finer, finer_mask = x, mask
            x, mask = masked_max_pool(finer, finer_mask)
            if self.intra is not None:
                x = self.intra[level - 1](x, mask, finer, finer_mask)
        return self.levels[level](x, mask), mask

    def _heads(self, feats: list[Tensor], masks: list[Tensor]) -> dict:
        cls_logits, offsets, sensitivity = [], [], []
        for level, (x, mask) in enumerate(zip(feats, masks, strict=True)):
            x = x.transpose(1, 2)
            cls_logits.append(self.cls_head(x, mask))
            offsets.append(self.reg_head(x, mask, level))
            if self.sensitivity is not None:
                sensitivity.append(self.sensitivity(x, mask))
        strides = [2**level for level in range(self.num_levels)]
        out = {"cls_logits": cls_logits, "offsets": offsets, "masks": masks, "strides": strides}
        if self.class_sensitivity is not None:  # what ASL's loss needs besides the heads
            out["features"] = feats[0]
            out["class_sensitivity"] = self.class_sensitivity
        if self.sensitivity is not None:
            out["sensitivity"] = sensitivity
        return out

    def forward(
        self,
        feats: Tensor,
        masks: Tensor,
        partner_feats: Tensor | None = None,
        partner_masks: Tensor | None = None,
    ) -> dict:
        """Per-level outputs for ``feats`` (and for the partner, see the class docstring)."""
        masks = self._check(feats, masks, "feats")
        paired = self.inter is not None and (partner_feats is not None or partner_masks is not None)
        streams = [(feats, masks)]
        if paired:
            if partner_feats is None or partner_masks is None:
                raise ValueError("give both partner_feats and partner_masks, or neither")
            partner_masks = self._check(partner_feats, partner_masks, "partner_feats")
            if partner_feats.shape[0] != feats.shape[0]:
                raise ValueError(
                    f"partner batch {partner_feats.shape[0]} != batch {feats.shape[0]}"
                )
            streams.append((partner_feats, partner_masks))

        xs = [self.embed(f, m).transpose(1, 2) for f, m in streams]
        ms = [m for _, m in streams]
        level_feats: list[list[Tensor]] = [[] for _ in streams]
        level_masks: list[list[Tensor]] = [[] for _ in streams]
        for level in range(self.num_levels):
            for s in range(len(streams)):
                xs[s], ms[s] = self._level(level, xs[s], ms[s])
            if self.inter is not None:
                inter = self.inter[level]
                if paired:
                    (xa, xb), (ma, mb) = xs, ms
                    xs = [inter(xa, ma, xb, mb), inter(xb, mb, xa, ma)]
                else:  # no partner: the video is its own partner
                    xs = [inter(xs[0], ms[0], xs[0], ms[0])]
            for s in range(len(streams)):
                level_feats[s].append(xs[s])
                level_masks[s].append(ms[s])

        out = self._heads(level_feats[0], level_masks[0])
        if paired:
            out["partner"] = self._heads(level_feats[1], level_masks[1])
        return out
