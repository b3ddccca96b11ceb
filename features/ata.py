"""ATA (Alignment-guided Temporal Attention, Zhao et al., NeurIPS 2022): a video backbone
made from an image transformer plus temporal attention along *aligned* patches.

Before attending over time, the patches of neighbouring frames are aligned without
parameters: frame ``t`` is matched one-to-one to the already-aligned frame ``t - 1`` by
maximising the summed cosine similarity of patch features (the Hungarian algorithm), so
that patch slot ``n`` follows one trajectory through the clip. Temporal self-attention then
runs along each trajectory, and its output is put back at the patches' own positions (the
inverse permutation). With ``temporal="plain"`` the trajectories are the fixed positions
(divided space-time attention, TimeSformer-style): the comparison the issue asks for. The
alignment is computed without gradients; gradients flow through the gathered features.

No official code was available here: this follows the paper's abstract (parameter-free
patch-level alignment between neighbouring frames, a plug-in for image backbones) and our
reading of its method (one-to-one matching, chained alignment, de-alignment).

What is matched (``match``): alignment is by appearance, so by default (``"content"``) the
patches are compared on their content, the block's input *without* the learned position
embedding (space and time) that was added to the patch tokens, layer-normalised as the
attention's input is. The position embedding is the same in every frame at a given
position, so leaving it in pulls each patch towards "stay in place" (with it, 0.003 of the
patches moved on clips without camera motion). ``"with_position"`` keeps the earlier
matching on the normalised tokens including it, for comparison. Our reading: the paper
aligns on the frame features; nothing says whether a position embedding is part of them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

Temporal = Literal["aligned", "plain"]
Match = Literal["content", "with_position"]
MATCHES = ("content", "with_position")


@torch.no_grad()
def align_patches(tokens: Tensor) -> Tensor:
    """Per clip, the permutation ``perm [B, T, N]`` that aligns each frame's patches to the
    previous aligned frame: ``tokens[b, t, perm[b, t]]`` puts in slot ``n`` the patch of frame
    ``t`` matched to slot ``n`` of frame ``t - 1`` (frame 0 keeps its order).
    ``tokens`` is ``[B, T, N, C]``."""
    b, t, n, _ = tokens.shape
    feats = F.normalize(tokens.float(), dim=-1).cpu()
    perm = torch.arange(n).repeat(b, t, 1)
    for clip in range(b):
        previous = feats[clip, 0]
        for frame in range(1, t):
            similarity = (previous @ feats[clip, frame].T).numpy()  # slots x patches
            rows, cols = linear_sum_assignment(-similarity)
            order = np.empty(n, dtype=np.int64)
            order[rows] = cols
            perm[clip, frame] = torch.from_numpy(order)
            previous = feats[clip, frame][perm[clip, frame]]
    return perm.to(tokens.device)


def gather_patches(x: Tensor, perm: Tensor) -> Tensor:
    """``x[b, t, perm[b, t]]`` for ``x [B, T, N, C]``."""
    return torch.gather(x, 2, perm[..., None].expand_as(x))


def scatter_patches(x: Tensor, perm: Tensor) -> Tensor:
    """The inverse of ``gather_patches``: every slot's value back at its patch."""
    return torch.zeros_like(x).scatter(2, perm[..., None].expand_as(x), x)


class TemporalAttention(nn.Module):
    """Pre-norm self-attention over time along patch trajectories, ``[B, T, N, C]`` in and
    out (residual); the output projection starts at zero so that the block starts as the
    image model. ``match`` chooses what the alignment compares (module docstring): with
    ``"content"`` the ``position`` embedding given to ``forward`` is taken off first."""

    def __init__(
        self, dim: int, heads: int, temporal: Temporal = "aligned", match: Match = "content"
    ) -> None:
        super().__init__()
        if temporal not in ("aligned", "plain"):
            raise ValueError(f"temporal must be 'aligned' or 'plain', got {temporal!r}")
        if match not in MATCHES:
            raise ValueError(f"match must be one of {MATCHES}, got {match!r}")
        self.temporal, self.match = temporal, match
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    @torch.no_grad()
    def alignment(self, x: Tensor, position: Tensor | None = None) -> Tensor:
        """The permutation ``[B, T, N]`` (``align_patches``) of ``x [B, T, N, C]``, matched on
        the normalised tokens less ``position`` (``match="content"``) or on the normalised
        tokens as they are (``"with_position"``, or when no ``position`` is given)."""
        if self.match == "content" and position is not None:
            x = x - position
        return align_patches(self.norm(x))

    def forward(self, x: Tensor, position: Tensor | None = None) -> Tensor:
        """``x [B, T, N, C]``; ``position`` (broadcastable to it) is the position embedding
        inside ``x``, left out of the matching when ``match`` is ``"content"``."""
        b, t, n, c = x.shape
        y = self.norm(x)
        perm = self.alignment(x, position) if self.temporal == "aligned" else None
        if perm is not None:
            y = gather_patches(y, perm)
        seq = y.permute(0, 2, 1, 3).reshape(b * n, t, c)  # one sequence per trajectory
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        out = out.reshape(b, n, t, c).permute(0, 2, 1, 3)
        if perm is not None:
            out = scatter_patches(out, perm)
        return x + out


class ATABlock(nn.Module):
    """Temporal attention (aligned or plain), then the image block: spatial self-attention
    within each frame and an MLP, all pre-norm with residuals."""

    def __init__(
        self,
        dim: int,
        heads: int,
        temporal: Temporal,
        mlp_ratio: float = 4.0,
        match: Match = "content",
    ):
        super().__init__()
        self.temporal = TemporalAttention(dim, heads, temporal, match)
        self.norm1 = nn.LayerNorm(dim)
        self.spatial = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, position: Tensor | None = None) -> Tensor:
        x = self.temporal(x, position)
        b, t, n, c = x.shape
        frames = x.reshape(b * t, n, c)
        y = self.norm1(frames)
        frames = frames + self.spatial(y, y, y, need_weights=False)[0]
        frames = frames + self.mlp(self.norm2(frames))
        return frames.reshape(b, t, n, c)


class ATAViT(nn.Module):
    """A small ViT over clips ``[B, 3, T, H, W]`` in [-1, 1] with ATA blocks, trained from
    scratch (no image-pretrained weights can be fetched here). ``features`` gives the pooled
    clip feature ``[B, dim]`` (what the ``ata`` extractor stores), ``forward`` class logits;
    ``arch`` is what a weights file records to rebuild it."""

    in_channels = 3

    def __init__(
        self,
        num_classes: int,
        frames: int,
        image_size: int = 32,
        patch_size: int = 8,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        temporal: Temporal = "aligned",
        match: Match = "content",
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch {patch_size}")
        if dim % heads:
            raise ValueError(f"dim {dim} is not a multiple of heads {heads}")
        self.arch = {
            "frames": frames,
            "image_size": image_size,
            "patch_size": patch_size,
            "dim": dim,
            "depth": depth,
            "heads": heads,
            "temporal": temporal,
            "match": match,
        }
        self.dim, self.frames, self.image_size = dim, frames, image_size
        self.feature_dim, self.num_classes = dim, num_classes
        self.patch = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        patches = (image_size // patch_size) ** 2
        self.space = nn.Parameter(torch.zeros(1, 1, patches, dim))
        self.time = nn.Parameter(torch.zeros(1, frames, 1, dim))
        nn.init.trunc_normal_(self.space, std=0.02)
        nn.init.trunc_normal_(self.time, std=0.02)
        self.blocks = nn.ModuleList(
            ATABlock(dim, heads, temporal, match=match) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def tokens(self, clips: Tensor) -> Tensor:
        """Patch tokens with space and time embeddings, ``[B, T, N, dim]``."""
        shape = (3, self.frames, self.image_size, self.image_size)
        if clips.dim() != 5 or tuple(clips.shape[1:]) != shape:
            raise ValueError(
                f"clips: expected [B, 3, {self.frames}, {self.image_size}, {self.image_size}] "
                f"(this ATA network's frames and size), got {tuple(clips.shape)}"
            )
        b, _, t, h, w = clips.shape
        x = self.patch(clips.transpose(1, 2).reshape(b * t, 3, h, w))  # [B*T, C, h', w']
        x = x.flatten(2).transpose(1, 2).reshape(b, t, -1, self.dim)
        return x + self.position()

    def position(self) -> Tensor:
        """The learned position embedding added to the patch tokens, ``[1, T, N, dim]``."""
        return self.space + self.time

    def features(self, clips: Tensor) -> Tensor:
        x = self.tokens(clips)
        position = self.position()
        for block in self.blocks:
            x = block(x, position)
        return self.norm(x.mean(dim=(1, 2)))

    def load_image_state(self, state: dict[str, Tensor]) -> list[str]:
        """Take the image path of an image-pretrained network's ``state`` (same patch size,
        width, depth, heads and image size; any frames): the patch and space embeddings,
        spatial attention, MLPs and norms. The time embedding, temporal attention and the
        classification layer keep their own start. Returns the names taken."""

        def image_part(name: str) -> bool:
            return not (name == "time" or name.startswith("head.") or ".temporal." in name)

        mine = self.state_dict()
        taken = [k for k in mine if image_part(k)]
        missing = [k for k in taken if k not in state]
        wrong = [k for k in taken if k in state and state[k].shape != mine[k].shape]
        if missing or wrong:
            raise ValueError(
                f"image weights do not fit this network: missing {missing[:3]}, "
                f"other shapes {wrong[:3]}"
            )
        with torch.no_grad():
            for k in taken:
                mine[k].copy_(state[k])
        return taken

    def replace_logits(self, num_classes: int) -> None:
        """A fresh classification layer for ``num_classes``."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.dim, num_classes)

    def forward(self, clips: Tensor) -> Tensor:
        return self.head(self.features(clips))
