"""Building blocks of the localizer, all aware of padding masks.

Two layouts are used: convolutions take ``[B, C, T]`` and attention takes ``[B, T, D]``;
a mask is always ``[B, T]`` bool with True on real (non-padded) points. Every block leaves
padded points at exactly zero and never lets them reach a real point, so the outputs on real
points do not depend on how much padding a video got or on what the padding holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def zero_padded(x: Tensor, mask: Tensor, channels_first: bool = False) -> Tensor:
    """Set padded points to zero (``masked_fill``, so even inf/NaN padding is cleared)."""
    keep = mask[:, None, :] if channels_first else mask[:, :, None]
    return x.masked_fill(~keep, 0.0)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a ``[B, C, T]`` tensor, one normalisation per point."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class MaskedConv1d(nn.Module):
    """Same-length 1-D convolution that reads zeros where the input is padded and writes zeros
    at padded outputs; at the end of a video it therefore sees what zero padding would give."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True
    ):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the length, got {kernel_size}")
        self.conv = nn.Conv1d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias
        )
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = self.conv(zero_padded(x, mask, channels_first=True))
        return zero_padded(out, mask, channels_first=True)


class ConvNormReLU(nn.Module):
    """Masked conv (k=3) -> channel LayerNorm -> ReLU, padded points zero: the unit of the
    embedding and of the heads' trunks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        # no conv bias: the LayerNorm that follows removes it
        self.conv = MaskedConv1d(in_channels, out_channels, 3, bias=False)
        self.norm = ChannelLayerNorm(out_channels)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = F.relu(self.norm(self.conv(x, mask)))
        return zero_padded(out, mask, channels_first=True)


def masked_max_pool(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Halve time: max over the points 2j-1, 2j, 2j+1 (kernel 3, stride 2), so output point j
    sits at input point 2j. Padded inputs are left out of the max, and output j is real iff
    input 2j is real. ``x`` is ``[B, T, D]`` with T even; returns ``([B, T/2, D], [B, T/2])``."""
    if x.shape[1] % 2:
        raise ValueError(f"cannot halve an odd length {x.shape[1]}")
    filled = x.masked_fill(~mask[:, :, None], float("-inf")).transpose(1, 2)
    pooled = F.max_pool1d(filled, kernel_size=3, stride=2, padding=1).transpose(1, 2)
    down_mask = mask[:, ::2]
    # a real output always has a real source (its centre), so -inf only lands on padding
    return zero_padded(pooled, down_mask), down_mask


def attention_mask(query_mask: Tensor, key_mask: Tensor, window: int | None = None) -> Tensor:
    """Which keys each query may attend to, ``[B, 1, Tq, Tk]`` bool (True = attend).

    Keys must be real; with ``window`` (odd, same-length sequences) query i also only sees keys
    j with ``|i - j| <= window // 2`` (a band over full attention: local attention, fine for the
    lengths we train on). A padded query with no key left is given every key so that softmax
    stays finite; its output is discarded by the caller.
    """
    allowed = key_mask[:, None, :].expand(-1, query_mask.shape[1], -1)
    if window is not None:
        tq, tk = query_mask.shape[1], key_mask.shape[1]
        if tq != tk:
            raise ValueError(f"a windowed attention needs equal lengths, got {tq} and {tk}")
        pos = torch.arange(tq, device=query_mask.device)
        band = (pos[:, None] - pos[None, :]).abs() <= window // 2
        allowed = allowed & band
    empty = ~allowed.any(dim=-1, keepdim=True)
    return (allowed | empty)[:, None]


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention of queries ``[B, Tq, D]`` over a context
    ``[B, Tk, D]`` under a bool mask from :func:`attention_mask`."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q = nn.Linear(dim, dim)
        # a key bias adds the same score to every key of a query: softmax ignores it
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, query: Tensor, context: Tensor, allowed: Tensor) -> Tensor:
        q, k, v = (
            self._heads(self.q(query)),
            self._heads(self.k(context)),
            self._heads(self.v(context)),
        )
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )
        b, _, t, _ = out.shape
        return self.out(out.transpose(1, 2).reshape(b, t, -1))


class LocalTransformerBlock(nn.Module):
    """Pre-LN transformer block whose self-attention sees ``window`` points around each query:
    ``x + Attn(LN(x))`` then ``x + MLP(LN(x))`` (MLP width 4x), on ``[B, T, D]``."""

    def __init__(self, dim: int, num_heads: int, window: int, dropout: float = 0.0) -> None:
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be odd and >= 1, got {window}")
        self.window = window
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(4 * dim, dim),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        allowed = attention_mask(mask, mask, self.window)
        h = self.norm_attn(x)
        x = zero_padded(x + self.drop(self.attn(h, h, allowed)), mask)
        x = zero_padded(x + self.drop(self.mlp(self.norm_mlp(x))), mask)
        return x


class CrossAttentionBlock(nn.Module):
    """Pre-LN global cross-attention with residual: ``q + Attn(LN_q(q), LN_kv(c))`` where every
    query sees every real point of the context (which may have another length). Used between
    pyramid levels of one video (intra) and between the same level of two videos (inter)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(
        self, query: Tensor, query_mask: Tensor, context: Tensor, context_mask: Tensor
    ) -> Tensor:
        allowed = attention_mask(query_mask, context_mask)
        update = self.attn(self.norm_q(query), self.norm_kv(context), allowed)
        return zero_padded(query + self.drop(update), query_mask)
