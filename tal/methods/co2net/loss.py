"""CO2-Net's training losses, from video-level labels only (no segment is ever read).

With ``S`` the class activation sequence ``[B, T, K+1]`` (last column background), ``A`` the
fused attention and ``A_rgb``, ``A_flow`` the two modules' (``tal.methods.co2net.network``):

- **MIL** (``mil``): each video's logit per class is the mean of its top ``T // r`` points of
  ``S`` (``r = topk_ratio``, T its real length); cross-entropy of their softmax against the
  labels plus background, divided by their count + 1e-4 (the official normaliser).
- **Suppressed MIL** (``mil_suppressed``): the same on ``A * (S - min_k S) + min_k S``, against
  the labels without background: the attention must keep the foreground.
- **Co-activity** (``coactivity``): for two videos that share classes (the pairs of a batch),
  per shared class, attention-weighted (softmax over time of the suppressed CAS) high and low
  features; a hinge keeps the two videos' high features closer (``1 - cos``) than either's
  high feature to the other's low feature, by ``coactivity_margin``.
- **Mutual learning** (``mutual``): each module's attention is pulled towards the other's,
  detached: ``(mse(A_rgb, sg A_flow) + mse(A_flow, sg A_rgb)) / 2``.
- **Sparsity** (``sparsity``): the mean of the three attentions.
- **Guide** (``guide``): the attentions agree with ``1 - softmax(S)[background]``.

Weights are the authors' THUMOS14 settings (``model:`` of ``name: co2net``). Every mean runs over real
(unpadded) points only.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tal.methods.co2net.config import CO2NetConfig
from tal.methods.co2net.network import CO2NetOutput


def topk_mean(values: Tensor, masks: Tensor, ratio: int) -> Tensor:
    """Per video and column, the mean of the ``max(1, T_real // ratio)`` largest values over
    time of ``values [B, T, K]``: ``[B, K]``."""
    lengths = masks.sum(1)
    k = (lengths // ratio).clamp(min=1)  # [B]
    ranked = values.masked_fill(~masks[:, :, None], float("-inf")).sort(dim=1, descending=True)[0]
    take = torch.arange(values.shape[1], device=values.device)[None] < k[:, None]  # [B, T]
    ranked = ranked.masked_fill(~take[:, :, None], 0.0)  # also clears the padding's -inf
    return ranked.sum(1) / k[:, None].to(values.dtype)


LABEL_NORM_EPS = 1e-4  # the official topkloss: labels / (sum(labels) + 1e-4)


def mil_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over videos of ``-sum(t / (sum t + 1e-4) * log_softmax(logits))``; ``targets``
    multi-hot. The 1e-4 is the official code's (a video's weights sum to just under 1)."""
    weights = targets / (targets.sum(1, keepdim=True) + LABEL_NORM_EPS)
    return -(weights * F.log_softmax(logits, dim=1)).sum(1).mean()


def suppressed(cas: Tensor, attention: Tensor) -> Tensor:
    """``A * (S - min_k S) + min_k S`` per point: the CAS scaled by the attention, shifted so
    that an attention of 0 gives every class the point's lowest activation."""
    low = cas.min(dim=2, keepdim=True)[0]
    return attention[:, :, None] * (cas - low) + low


def mean_of_real_points(x: Tensor, masks: Tensor) -> Tensor:
    """One mean over every real (unpadded) point of the batch, ``x`` and ``masks`` ``[B, T]``."""
    return x[masks].mean()


def coactivity_loss(
    features: Tensor,
    cas: Tensor,
    masks: Tensor,
    labels: Tensor,
    pairs: Sequence[tuple[int, int]],
    margin: float = 0.5,
) -> Tensor:
    """The co-activity hinge of the module docstring over ``pairs`` of batch indices;
    ``features [B, T, F]``, ``cas [B, T, K]`` (foreground columns), ``labels [B, K]``. Zero
    (with a graph) when no pair shares a class."""
    logits = cas.masked_fill(~masks[:, :, None], float("-inf"))
    attention = torch.softmax(logits, dim=1)  # [B, T, K], over each video's real points
    lengths = masks.sum(1).to(features.dtype)
    high = torch.einsum("btk,btf->bkf", attention, features)
    rest = (1 - attention) * masks[:, :, None].to(attention.dtype)
    low = torch.einsum("btk,btf->bkf", rest, features) / (lengths - 1).clamp(min=1)[:, None, None]

    def distance(x: Tensor, y: Tensor) -> Tensor:
        return 1 - F.cosine_similarity(x, y, dim=-1)

    total, shared = features.sum() * 0.0, 0.0
    for i, j in pairs:
        both = labels[i] * labels[j]  # [K]
        if float(both.sum()) == 0:
            continue
        d_pair = distance(high[i], high[j])
        hinge = F.relu(d_pair - distance(high[i], low[j]) + margin) + F.relu(
            d_pair - distance(high[j], low[i]) + margin
        )
        total = total + 0.5 * (hinge * both).sum()
        shared += float(both.sum())
    return total / shared if shared else total


def _mean_of_three(terms: list[Tensor]) -> Tensor:
    """``(t0 + t1 + t2) / 3``, added in that order."""
    first, second, third = terms
    return (first + second + third) / 3


class CO2NetLoss(nn.Module):
    """``forward(outputs, labels [B, K] multi-hot, pairs)`` -> every term and their weighted
    sum ``loss`` (see the module docstring)."""

    def __init__(self, config: CO2NetConfig) -> None:
        super().__init__()
        self.config = config

    def forward(
        self, outputs: CO2NetOutput, labels: Tensor, pairs: Sequence[tuple[int, int]] = ()
    ) -> dict[str, Tensor]:
        c = self.config
        cas, masks = outputs.cas.float(), outputs.masks.bool()
        att = outputs.attention.float()
        att_rgb, att_flow = outputs.attention_rgb.float(), outputs.attention_flow.float()
        labels = labels.to(cas.dtype)
        if labels.shape != (cas.shape[0], cas.shape[2] - 1):
            raise ValueError(
                f"labels must be [B, K] = {(cas.shape[0], cas.shape[2] - 1)} (multi-hot video "
                f"labels), got {tuple(labels.shape)}"
            )
        ones = torch.ones_like(labels[:, :1])
        mil = mil_loss(topk_mean(cas, masks, c.topk_ratio), torch.cat([labels, ones], 1))
        supp = suppressed(cas, att)
        mil_supp = mil_loss(topk_mean(supp, masks, c.topk_ratio), torch.cat([labels, 0 * ones], 1))
        coactivity = coactivity_loss(
            outputs.features.float(), supp[:, :, :-1], masks, labels, pairs, c.coactivity_margin
        )
        mutual = 0.5 * (
            mean_of_real_points((att_rgb - att_flow.detach()) ** 2, masks)
            + mean_of_real_points((att_flow - att_rgb.detach()) ** 2, masks)
        )
        attentions = (att, att_rgb, att_flow)
        sparsity = _mean_of_three([mean_of_real_points(a, masks) for a in attentions])
        foreground = 1 - torch.softmax(cas, dim=2)[:, :, -1]
        guide = _mean_of_three(
            [mean_of_real_points((a - foreground).abs(), masks) for a in attentions]
        )
        loss = (
            mil
            + mil_supp
            + c.coactivity_weight * coactivity
            + c.mutual_weight * mutual
            + c.sparsity_weight * sparsity
            + c.guide_weight * guide
        )
        return {
            "mil": mil,
            "mil_suppressed": mil_supp,
            "coactivity": coactivity,
            "mutual": mutual,
            "sparsity": sparsity,
            "guide": guide,
            "loss": loss,
        }
