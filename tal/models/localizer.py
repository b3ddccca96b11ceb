"""The one-stage anchor-free localizer of ActionFormer, which I2Net and ASL extend.

Features ``[B, C_in, T]`` are embedded by two masked conv layers, then pass through a pyramid
of ``L`` levels; level l has ``T / 2**l`` points and stride ``2**l`` feature steps. Each level
is a pre-LN transformer block with *local* self-attention (``attention_window`` points), the
first on the embedding, the others on the previous level halved by a stride-2 max pool.

Heads are shared across levels: a classification head (sigmoid logits, one per class) and a
regression head whose non-negative outputs are distances to the start and end in units of
the level stride. A method extends the network through three hooks, so that its modules are
created in a fixed order (the same seed gives the same initial weights): ``build_attention``
(after the pyramid, before the heads: I2Net's attentions), ``build_extra_heads`` (after the
heads: ASL's sensitivity), ``refine_level`` (a level just pooled from the finer one) and
``extra_head``/``with_extras`` (a method's own per-level output, computed level by level
with the shared heads, so that gradients accumulate in the same order as in one network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tal.models.blocks import ConvNormReLU, LocalTransformerBlock, MaskedConv1d, masked_max_pool

PRIOR_PROB = 0.01  # initial foreground probability of every class (focal-loss practice)


@dataclass(frozen=True)
class PyramidSettings:
    """The shape of the one-stage network (the keys every localizer method's config has)."""

    embed_dim: int
    num_heads: int
    num_levels: int
    dropout: float
    attention_window: int


@dataclass
class LocalizerOutput:
    """Per level ``l``: ``cls_logits`` ``[B, T_l, num_classes]``, ``offsets`` ``[B, T_l, 2]``
    (start, end distances in stride units), ``masks`` ``[B, T_l]`` and ``strides`` ``2**l``;
    padded points of every tensor are zero. ``features`` is level 0 ``[B, T, D]``."""

    cls_logits: list[Tensor]
    offsets: list[Tensor]
    masks: list[Tensor]
    strides: list[int]
    features: Tensor

    def __len__(self) -> int:
        return int(self.masks[0].shape[0])

    def video(self, index: int) -> LocalizerOutput:
        """The outputs of one video of the batch (batch dimension kept, size 1)."""
        pick = slice(index, index + 1)
        return LocalizerOutput(
            [x[pick] for x in self.cls_logits],
            [x[pick] for x in self.offsets],
            [x[pick] for x in self.masks],
            list(self.strides),
            self.features[pick],
        )


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
        assert self.out.conv.bias is not None
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
    """ActionFormer's one-stage localizer; see the module docstring.

    ``forward(feats [B, C_in, T], masks [B, T] bool)`` returns a ``LocalizerOutput``.
    """

    def __init__(self, settings: PyramidSettings, in_dim: int, num_classes: int) -> None:
        super().__init__()
        if in_dim < 1 or num_classes < 1:
            raise ValueError(f"in_dim and num_classes must be >= 1, got {in_dim}, {num_classes}")
        dim, heads, drop = settings.embed_dim, settings.num_heads, settings.dropout
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.num_levels = settings.num_levels
        self.embed = _Trunk(in_dim, dim)
        self.levels = nn.ModuleList(
            LocalTransformerBlock(dim, heads, settings.attention_window, drop)
            for _ in range(settings.num_levels)
        )
        self.build_attention(settings)
        self.cls_head = ClassificationHead(dim, num_classes)
        self.reg_head = RegressionHead(dim, settings.num_levels)
        self.build_extra_heads(settings)

    @property
    def divisible_by(self) -> int:
        """What the padded length T must be a multiple of: ``2**(num_levels - 1)``."""
        return 2 ** (self.num_levels - 1)

    # ------------------------------------------------------------------ hooks

    def build_attention(self, settings: PyramidSettings) -> None:
        """Modules created after the pyramid and before the heads (none here)."""

    def build_extra_heads(self, settings: PyramidSettings) -> None:
        """Modules created after the heads (none here)."""

    def refine_level(
        self, level: int, x: Tensor, mask: Tensor, finer: Tensor, finer_mask: Tensor
    ) -> Tensor:
        """Level ``level`` (``[B, T_l, D]``) right after pooling from the finer level."""
        return x

    # ------------------------------------------------------------------ the network

    def check_inputs(self, feats: Tensor, masks: Tensor, name: str) -> Tensor:
        """``masks`` as bool after checking both shapes; errors name the input."""
        if feats.dim() != 3 or feats.shape[1] != self.in_dim:
            raise ValueError(f"{name}: expected [B, {self.in_dim}, T], got {tuple(feats.shape)}")
        b, _, t = feats.shape
        if masks.shape != (b, t):
            raise ValueError(f"{name}: masks must be [{b}, {t}], got {tuple(masks.shape)}")
        step = self.divisible_by
        if t % step:
            raise ValueError(f"{name}: T = {t} is not a multiple of 2**(num_levels-1) = {step}")
        masks = masks.bool()
        if not bool(masks.any(dim=1).all()):
            raise ValueError(f"{name}: every video needs at least one real (unmasked) point")
        return masks

    def embed_video(self, feats: Tensor, masks: Tensor) -> Tensor:
        """The embedding ``[B, T, D]`` the pyramid starts from."""
        return self.embed(feats, masks).transpose(1, 2)

    def level(self, level: int, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Level ``level`` of one video from the previous level's output (or the embedding)."""
        if level > 0:
            finer, finer_mask = x, mask
            x, mask = masked_max_pool(finer, finer_mask)
            x = self.refine_level(level, x, mask, finer, finer_mask)
        return self.levels[level](x, mask), mask

    def extra_head(self, x: Tensor, mask: Tensor) -> Tensor | None:
        """A method's own per-level output from ``x`` ``[B, D, T_l]``, computed right after
        the shared heads on the same level (none here)."""
        return None

    def with_extras(self, out: LocalizerOutput, extras: list[Tensor | None]) -> LocalizerOutput:
        """The output with the per-level ``extra_head`` results (unchanged here)."""
        return out

    def heads(self, feats: list[Tensor], masks: list[Tensor]) -> LocalizerOutput:
        """Classification and regression (then any extra head) on every level's
        ``[B, T_l, D]`` features, level by level."""
        cls_logits, offsets, extras = [], [], []
        for level, (x, mask) in enumerate(zip(feats, masks, strict=True)):
            x = x.transpose(1, 2)
            cls_logits.append(self.cls_head(x, mask))
            offsets.append(self.reg_head(x, mask, level))
            extras.append(self.extra_head(x, mask))
        strides = [2**level for level in range(self.num_levels)]
        out = LocalizerOutput(cls_logits, offsets, masks, strides, feats[0])
        return self.with_extras(out, extras)

    def forward(self, feats: Tensor, masks: Tensor) -> LocalizerOutput:
        """Per-level outputs for ``feats``."""
        masks = self.check_inputs(feats, masks, "feats")
        x, mask = self.embed_video(feats, masks), masks
        level_feats, level_masks = [], []
        for level in range(self.num_levels):
            x, mask = self.level(level, x, mask)
            level_feats.append(x)
            level_masks.append(mask)
        return self.heads(level_feats, level_masks)
