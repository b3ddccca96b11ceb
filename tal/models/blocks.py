"""Building blocks of the localizer, all aware of padding masks.

Two layouts are used: convolutions take ``[B, C, T]`` and attention takes ``[B, T, D]``;
a mask is always ``[B, T]`` bool with True on real (non-padded) points. Every block leaves
padded points at exactly zero and never lets them reach a real point, so the outputs on real
points do not depend on how much padding a video got or on what the padding holds.

Two transformer blocks build the pyramid (``tal.models.localizer``):

- ``ConvTransformerBlock``: ActionFormer's block (official ``TransformerBlock`` with
  ``MaskedMHCA``/``LocalMaskedMHCA``): queries, keys and values first pass a depthwise
  convolution and a LayerNorm; with ``stride=2`` these convolutions halve time and the skip
  path is max-pooled, so the block itself downsamples. Optional drop-path with a learnable
  per-channel scale (``AffineDropPath``).
- ``LocalTransformerBlock``: our earlier plain pre-LN block (linear q/k/v), used after a
  separate ``masked_max_pool`` (``downsample: pool_then_block``).

Where the official code lets padding leak into real points (its convolutions read the
LayerNorm bias written on padded points, its max-pool sees zeros from padding) we keep the
guarantee above instead; on unpadded inputs the two agree.
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


def drop_path(x: Tensor, drop_prob: float, training: bool) -> Tensor:
    """Stochastic depth per sample: in training each sample's ``x`` is zeroed with probability
    ``drop_prob`` and otherwise divided by ``1 - drop_prob`` (the expectation is kept); the
    identity in eval or when ``drop_prob`` is 0."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.dim() - 1)
    alive = (keep + torch.rand(shape, dtype=x.dtype, device=x.device)).floor()
    return x / keep * alive


class AffineDropPath(nn.Module):
    """``drop_path(scale * x)`` with a learnable per-channel ``scale`` (init ``1e-4``, a
    LayerScale), on ``[B, T, D]``: ActionFormer's ``AffineDropPath`` on a residual branch."""

    def __init__(self, dim: int, drop_prob: float, init_scale: float = 1e-4) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob
        self.scale = nn.Parameter(torch.full((dim,), init_scale))

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(self.scale * x, self.drop_prob, self.training)


def residual_branch(dim: int, drop_prob: float) -> nn.Module:
    """What wraps a residual update: ``AffineDropPath`` when ``drop_prob > 0``, else the
    identity (as the official block: no scale either without drop-path)."""
    return AffineDropPath(dim, drop_prob) if drop_prob > 0 else nn.Identity()


def sinusoid_encoding(length: int, dim: int) -> Tensor:
    """The transformer's sinusoidal table ``[length, dim]``: position p, channel j gets
    ``sin`` (even j) or ``cos`` (odd j) of ``p / 10000**(2 * (j // 2) / dim)``."""
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(10000.0, 2 * torch.div(j, 2, rounding_mode="floor") / dim)
    table = torch.where(j.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float()


def position_encoding(table: Tensor, length: int) -> Tensor:
    """The encoding ``[length, D]`` of a sequence from a ``[max_len, D]`` table: its first
    ``length`` rows, or, for a sequence longer than the table, the table linearly
    interpolated to ``length`` (``align_corners=False``), as ActionFormer does at inference."""
    if length <= table.shape[0]:
        return table[:length]
    stretched = F.interpolate(table.T[None], size=length, mode="linear", align_corners=False)
    return stretched[0].T


class LocalTransformerBlock(nn.Module):
    """Pre-LN transformer block whose self-attention sees ``window`` points around each query
    (``None``: every point): ``x + Attn(LN(x))`` then ``x + MLP(LN(x))`` (MLP width 4x), on
    ``[B, T, D]``. Our plain block: linear q/k/v, no downsampling (see the module docstring)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int | None,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if window is not None and (window < 1 or window % 2 == 0):
            raise ValueError(f"window must be odd and >= 1 (or None: global), got {window}")
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
        self.path_attn = residual_branch(dim, drop_path)
        self.path_mlp = residual_branch(dim, drop_path)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        allowed = attention_mask(mask, mask, self.window)
        h = self.norm_attn(x)
        x = zero_padded(x + self.path_attn(self.drop(self.attn(h, h, allowed))), mask)
        x = zero_padded(x + self.path_mlp(self.drop(self.mlp(self.norm_mlp(x)))), mask)
        return x


class MaskedDepthwiseConv(nn.Module):
    """Depthwise 1-D convolution on ``[B, T, D]`` without bias, kernel 3, padding 1, stride 1
    or 2 (official: kernel ``stride + 1`` when strided, 3 either way): output j is centred on
    input ``stride * j``. It reads zeros at padded inputs, and output j is real iff input
    ``stride * j`` is (the official nearest-neighbour mask)."""

    def __init__(self, dim: int, stride: int = 1) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        kernel = 3
        self.stride = stride
        self.conv = nn.Conv1d(
            dim, dim, kernel, stride=stride, padding=kernel // 2, groups=dim, bias=False
        )

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[1] % self.stride:
            raise ValueError(f"length {x.shape[1]} is not a multiple of stride {self.stride}")
        out = self.conv(zero_padded(x, mask).transpose(1, 2)).transpose(1, 2)
        out_mask = mask[:, :: self.stride]
        return zero_padded(out, out_mask), out_mask


class ConvAttention(nn.Module):
    """ActionFormer's multi-head conv attention (official ``MaskedMHCA``; ``LocalMaskedMHCA``
    with a window): q, k, v each = depthwise conv -> LayerNorm -> linear, then scaled
    dot-product attention over the real keys within ``window`` points (``None``: all), then an
    output projection and dropout. With ``stride=2`` the convolutions halve time, so the output
    ``[B, T/2, D]`` is on the downsampled points (attention among those points).

    The key projection has no bias: it adds the same score to every key of a query, which
    softmax ignores (the official one has it; the outputs are the same).
    """

    def __init__(
        self, dim: int, num_heads: int, window: int | None, stride: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if window is not None and (window < 1 or window % 2 == 0):
            raise ValueError(f"window must be odd and >= 1 (or None: global), got {window}")
        self.num_heads, self.window = num_heads, window
        self.q_conv, self.k_conv, self.v_conv = (MaskedDepthwiseConv(dim, stride) for _ in "qkv")
        self.q_norm, self.k_norm, self.v_norm = (nn.LayerNorm(dim) for _ in "qkv")
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        for linear in (self.q, self.v, self.out):
            assert linear.bias is not None
            nn.init.zeros_(linear.bias)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        q, out_mask = self.q_conv(x, mask)
        k, _ = self.k_conv(x, mask)
        v, _ = self.v_conv(x, mask)
        q = self._heads(self.q(self.q_norm(q)))
        k = self._heads(self.k(self.k_norm(k)))
        v = self._heads(self.v(self.v_norm(v)))
        allowed = attention_mask(out_mask, out_mask, self.window)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        b, _, t, _ = out.shape
        out = self.drop(self.out(out.transpose(1, 2).reshape(b, t, -1)))
        return zero_padded(out, out_mask), out_mask


class ConvTransformerBlock(nn.Module):
    """ActionFormer's pre-LN transformer block on ``[B, T, D]`` (official ``TransformerBlock``):
    ``y = skip(x) + DropPath(ConvAttn(LN(x)))``, ``y + DropPath(MLP(LN(y)))`` (MLP width 4x,
    GELU, dropout after each linear). With ``stride=2`` the attention's convolutions halve
    time and ``skip`` is a max-pool (kernel 3, stride 2, padded points left out), so the block
    returns ``([B, T/2, D], [B, T/2])``; with ``stride=1`` ``skip`` is the identity."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int | None,
        stride: int = 1,
        dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.norm_attn = nn.LayerNorm(dim)
        self.attn = ConvAttention(dim, num_heads, window, stride, dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(4 * dim, dim),
            nn.Dropout(dropout),
        )
        for index in (0, 3):
            layer = self.mlp[index]
            assert isinstance(layer, nn.Linear)
            nn.init.zeros_(layer.bias)
        self.path_attn = residual_branch(dim, drop_path)
        self.path_mlp = residual_branch(dim, drop_path)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        update, out_mask = self.attn(zero_padded(self.norm_attn(x), mask), mask)
        skip = masked_max_pool(x, mask)[0] if self.stride == 2 else x
        out = zero_padded(skip + self.path_attn(update), out_mask)
        out = zero_padded(out + self.path_mlp(self.mlp(self.norm_mlp(out))), out_mask)
        return out, out_mask


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
