"""The one-stage anchor-free localizer of ActionFormer, which I2Net and ASL extend.

Features ``[B, C_in, T]`` are embedded by ``embed_convs`` masked conv layers (conv, channel
LayerNorm, ReLU), optionally plus a sinusoidal absolute position encoding (``abs_pe``), then
pass through a pyramid of ``L`` levels; level l has ``T / 2**l`` points and stride ``2**l``
feature steps. ActionFormer's backbone ``arch = (embed_convs, stem_blocks, L - 1)``:

- ``downsample="in_block"`` (ActionFormer, the default): level 0 is ``stem_blocks``
  stride-1 ``ConvTransformerBlock`` blocks on the embedding; each level l > 0 is one stride-2
  ``ConvTransformerBlock`` on level l - 1 (the block itself halves time).
- ``downsample="pool_then_block"`` (our earlier network, with ``stem_blocks=1``): level 0
  is ``stem_blocks`` plain ``LocalTransformerBlock`` blocks; each level l > 0 is the previous
  level halved by a stride-2 max pool, then one ``LocalTransformerBlock``.

Self-attention is local (``attention_window`` points, one window for all levels or one per
level, ``None`` for global attention on a level); blocks may use drop-path (``drop_path``,
with ActionFormer's per-channel scale). Every level then passes its own LayerNorm
(``neck_norm``: ActionFormer's identity neck with ``fpn_with_ln``) before the heads.

Heads are shared across levels: a classification head (sigmoid logits, one per class) and a
regression head whose non-negative outputs are distances to the start and end in units of
the level stride. A method extends the network through hooks, so that its modules are
created in a fixed order (the same seed gives the same initial weights): ``build_attention``
(after the pyramid, before the heads: I2Net's attentions), ``build_extra_heads`` (after the
heads: ASL's sensitivity), ``refine_level`` (level l > 0 from the finer level: with
``in_block`` on the level's block output, with ``pool_then_block`` between the pool and the
block) and ``extra_head``/``with_extras`` (a method's own per-level output, computed level
by level with the shared heads, so that gradients accumulate in the same order as in one
network).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tal.models.blocks import (
    ConvNormReLU,
    ConvTransformerBlock,
    LocalTransformerBlock,
    MaskedConv1d,
    masked_max_pool,
    position_encoding,
    sinusoid_encoding,
    zero_padded,
)

Downsample = Literal["in_block", "pool_then_block"]

PRIOR_PROB = 0.01  # initial foreground probability of every class (focal-loss practice)


@dataclass(frozen=True)
class PyramidSettings:
    """The shape of the one-stage network (the keys every localizer method's config has).

    ``attention_window``: one window for every level or one per level; ``None`` (``-1`` in a
    config) is global attention. ``max_len``: the length of the position-encoding table
    (the training crop, ``max_seq_len``). The defaults after ``attention_window`` are
    ActionFormer's."""

    embed_dim: int
    num_heads: int
    num_levels: int
    dropout: float
    attention_window: int | tuple[int | None, ...] | None
    embed_convs: int = 2
    stem_blocks: int = 2
    downsample: Downsample = "in_block"
    drop_path: float = 0.1
    neck_norm: bool = True
    abs_pe: bool = False
    max_len: int = 2304

    def windows(self) -> tuple[int | None, ...]:
        """The attention window of each level (``None``: global)."""
        w = self.attention_window
        if isinstance(w, tuple):
            if len(w) != self.num_levels:
                raise ValueError(f"{len(w)} attention windows for {self.num_levels} levels")
            return w
        return (w,) * self.num_levels


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
    """``layers`` ``ConvNormReLU`` layers (at least one), ``[B, C_in, T] -> [B, C_out, T]``."""

    def __init__(self, in_channels: int, out_channels: int, layers: int = 2) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"need at least one conv layer, got {layers}")
        self.layers = nn.ModuleList(
            ConvNormReLU(in_channels if i == 0 else out_channels, out_channels)
            for i in range(layers)
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
        if settings.downsample not in ("in_block", "pool_then_block"):
            raise ValueError(f"unknown downsample {settings.downsample!r}")
        if settings.stem_blocks < 0 or settings.num_levels < 1:
            raise ValueError("need stem_blocks >= 0 and num_levels >= 1")
        dim, heads, drop = settings.embed_dim, settings.num_heads, settings.dropout
        windows = settings.windows()
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.num_levels = settings.num_levels
        self.downsample = settings.downsample
        self.embed = _Trunk(in_dim, dim, settings.embed_convs)
        if settings.abs_pe:
            table = sinusoid_encoding(settings.max_len, dim) / math.sqrt(dim)
            self.register_buffer("position_table", table, persistent=False)
        else:
            self.position_table: Tensor | None = None
        path = settings.drop_path
        if settings.downsample == "in_block":
            self.stem = nn.ModuleList(
                ConvTransformerBlock(dim, heads, windows[0], 1, drop, path)
                for _ in range(settings.stem_blocks)
            )
            self.branch = nn.ModuleList(
                ConvTransformerBlock(dim, heads, windows[level], 2, drop, path)
                for level in range(1, settings.num_levels)
            )
        else:
            self.stem = nn.ModuleList(
                LocalTransformerBlock(dim, heads, windows[0], drop, path)
                for _ in range(settings.stem_blocks)
            )
            self.branch = nn.ModuleList(
                LocalTransformerBlock(dim, heads, windows[level], drop, path)
                for level in range(1, settings.num_levels)
            )
        self.neck = (
            nn.ModuleList(nn.LayerNorm(dim) for _ in range(settings.num_levels))
            if settings.neck_norm
            else None
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
        """Level ``level`` > 0 (``[B, T_l, D]``) given the finer level's output ``finer``:
        with ``downsample="in_block"`` called on the level's block output (the block itself
        downsamples, so there is no pooled tensor before it); with ``pool_then_block`` on
        the pooled tensor, before the level's block. Returns the level's new ``x``."""
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
        """The embedding ``[B, T, D]`` the pyramid starts from, with the absolute position
        encoding added on real points when ``abs_pe`` (as ActionFormer: the table's first T
        rows, or the table interpolated to T when T is longer than ``max_len``; so for such
        long inputs the encoding depends on the padded length T, as in the official code)."""
        x = self.embed(feats, masks).transpose(1, 2)
        if self.position_table is not None:
            pe = position_encoding(self.position_table, x.shape[1]).to(x.dtype)
            x = zero_padded(x + pe, masks)
        return x

    def level(self, level: int, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Level ``level`` of one video from the previous level's output (or the embedding)."""
        if level == 0:
            for block in self.stem:
                x, mask = self._block(block, x, mask)
            return x, mask
        finer, finer_mask = x, mask
        block = self.branch[level - 1]
        if self.downsample == "pool_then_block":
            x, mask = masked_max_pool(finer, finer_mask)
            x = self.refine_level(level, x, mask, finer, finer_mask)
            return self._block(block, x, mask)
        x, mask = self._block(block, x, mask)
        return self.refine_level(level, x, mask, finer, finer_mask), mask

    @staticmethod
    def _block(block: nn.Module, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if isinstance(block, ConvTransformerBlock):
            return block(x, mask)
        return block(x, mask), mask

    def extra_head(self, x: Tensor, mask: Tensor) -> Tensor | None:
        """A method's own per-level output from ``x`` ``[B, D, T_l]``, computed right after
        the shared heads on the same level (none here)."""
        return None

    def with_extras(self, out: LocalizerOutput, extras: list[Tensor | None]) -> LocalizerOutput:
        """The output with the per-level ``extra_head`` results (unchanged here)."""
        return out

    def heads(self, feats: list[Tensor], masks: list[Tensor]) -> LocalizerOutput:
        """The neck's LayerNorm (``neck_norm``), then classification and regression (then any
        extra head) on every level's ``[B, T_l, D]`` features, level by level. The output's
        ``features`` are level 0 after the neck (what the heads see)."""
        cls_logits, offsets, extras, normed = [], [], [], []
        for level, (x, mask) in enumerate(zip(feats, masks, strict=True)):
            if self.neck is not None:
                x = zero_padded(self.neck[level](x), mask)
            normed.append(x)
            x = x.transpose(1, 2)
            cls_logits.append(self.cls_head(x, mask))
            offsets.append(self.reg_head(x, mask, level))
            extras.append(self.extra_head(x, mask))
        strides = [2**level for level in range(self.num_levels)]
        out = LocalizerOutput(cls_logits, offsets, masks, strides, normed[0])
        return self.with_extras(out, extras)

    def pyramid(self, feats: Tensor, masks: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The backbone: every level's ``[B, T_l, D]`` features (before the neck) and
        ``[B, T_l]`` masks, from checked inputs."""
        x, mask = self.embed_video(feats, masks), masks
        level_feats, level_masks = [], []
        for level in range(self.num_levels):
            x, mask = self.level(level, x, mask)
            level_feats.append(x)
            level_masks.append(mask)
        return level_feats, level_masks

    def forward(self, feats: Tensor, masks: Tensor) -> LocalizerOutput:
        """Per-level outputs for ``feats``."""
        masks = self.check_inputs(feats, masks, "feats")
        return self.heads(*self.pyramid(feats, masks))
