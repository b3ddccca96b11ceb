"""I2Net: the one-stage localizer with intra-video and inter-video attention.

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

Training with inter-video attention runs the two videos of each pair through the network
together and both get losses; at inference the partner is a policy (``inference_partner``):
``self`` (the video itself) or ``bank``: the most similar training video, by cosine
similarity of mean features, from a small bank kept with the model (``PartnerBank``: per
class the ``bank_per_class`` videos with most instances of it, cropped to ``max_seq_len``
steps, in float16). No official code is public: the placement of both attentions and the
partner policies are our reading of the paper.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from tal.data.dataset import Batch, FeatureDataset
from tal.methods.actionformer import LocalizerConfig, OneStageMethod
from tal.methods.base import InferenceAssets, LossTerms, single_video, to_device
from tal.methods.registry import register_method
from tal.models.blocks import CrossAttentionBlock
from tal.models.localizer import Localizer, LocalizerOutput, PyramidSettings


class I2NetConfig(LocalizerConfig):
    name: Literal["i2net"] = "i2net"
    intra_attention: bool = True
    inter_attention: bool = True
    inference_partner: Literal["self", "bank"] = Field(
        "self", description="the partner at inference: the video itself, or the bank's nearest"
    )
    bank_per_class: int = Field(
        2, ge=1, description="partner bank: training videos kept per class (inference_partner=bank)"
    )

    @model_validator(mode="after")
    def _some_attention(self) -> I2NetConfig:
        if not (self.intra_attention or self.inter_attention):
            raise ValueError(
                "i2net with intra_attention and inter_attention both false is the "
                "ActionFormer-style baseline: use model.name: actionformer"
            )
        return self


@dataclass
class I2NetOutput(LocalizerOutput):
    """The first video's outputs, and the partner's when one was given with inter-video
    attention on."""

    partner: LocalizerOutput | None = None

    def joined(self) -> LocalizerOutput:
        """Both videos' outputs as one batch, so that the loss (and its normaliser) sees
        each training step once, as for single-video methods."""
        if self.partner is None:
            return self
        other = self.partner

        def cat(xs: list[Tensor], ys: list[Tensor]) -> list[Tensor]:
            return [torch.cat([x, y]) for x, y in zip(xs, ys, strict=True)]

        return LocalizerOutput(
            cat(self.cls_logits, other.cls_logits),
            cat(self.offsets, other.offsets),
            cat(self.masks, other.masks),
            list(self.strides),
            torch.cat([self.features, other.features]),
        )


class I2NetLocalizer(Localizer):
    """The localizer with I2Net's attentions; ``forward(feats, masks, partner_feats=None,
    partner_masks=None)`` returns an ``I2NetOutput`` (partner inputs are ignored when
    inter-video attention is off)."""

    def __init__(
        self, settings: PyramidSettings, in_dim: int, num_classes: int, intra: bool, inter: bool
    ) -> None:
        self._intra_on, self._inter_on = intra, inter
        super().__init__(settings, in_dim, num_classes)

    def build_attention(self, settings: PyramidSettings) -> None:
        dim, heads, drop, levels = (
            settings.embed_dim,
            settings.num_heads,
            settings.dropout,
            settings.num_levels,
        )
        # intra[l] lets level l+1 attend to level l; inter[l] joins the two videos at level l
        self.intra = (
            nn.ModuleList(CrossAttentionBlock(dim, heads, drop) for _ in range(levels - 1))
            if self._intra_on
            else None
        )
        self.inter = (
            nn.ModuleList(CrossAttentionBlock(dim, heads, drop) for _ in range(levels))
            if self._inter_on
            else None
        )

    def refine_level(
        self, level: int, x: Tensor, mask: Tensor, finer: Tensor, finer_mask: Tensor
    ) -> Tensor:
        if self.intra is None:
            return x
        return self.intra[level - 1](x, mask, finer, finer_mask)

    def forward(
        self,
        feats: Tensor,
        masks: Tensor,
        partner_feats: Tensor | None = None,
        partner_masks: Tensor | None = None,
    ) -> I2NetOutput:
        masks = self.check_inputs(feats, masks, "feats")
        paired = self.inter is not None and (partner_feats is not None or partner_masks is not None)
        streams = [(feats, masks)]
        if paired:
            if partner_feats is None or partner_masks is None:
                raise ValueError("give both partner_feats and partner_masks, or neither")
            partner_masks = self.check_inputs(partner_feats, partner_masks, "partner_feats")
            if partner_feats.shape[0] != feats.shape[0]:
                raise ValueError(
                    f"partner batch {partner_feats.shape[0]} != batch {feats.shape[0]}"
                )
            streams.append((partner_feats, partner_masks))

        xs = [self.embed_video(f, m) for f, m in streams]
        ms = [m for _, m in streams]
        level_feats: list[list[Tensor]] = [[] for _ in streams]
        level_masks: list[list[Tensor]] = [[] for _ in streams]
        for level in range(self.num_levels):
            for s in range(len(streams)):
                xs[s], ms[s] = self.level(level, xs[s], ms[s])
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

        first = self.heads(level_feats[0], level_masks[0])
        partner = self.heads(level_feats[1], level_masks[1]) if paired else None
        return I2NetOutput(
            first.cls_logits,
            first.offsets,
            first.masks,
            first.strides,
            first.features,
            partner=partner,
        )


@dataclass
class PartnerBank(InferenceAssets):
    """Training videos that can serve as inference partners."""

    feats: list[Tensor]  # each [C, T_k], float16
    keys: Tensor  # [K, C] unit-norm mean features
    video_ids: list[str]

    @classmethod
    def build(
        cls, dataset: FeatureDataset, per_class: int, max_len: int | None = None
    ) -> PartnerBank:
        """Per class, the ``per_class`` videos with most instances of it (ties: by id).

        ``dataset`` must not crop (``training=False``): the bank keeps whole videos.
        """
        counts: dict[int, dict[int, int]] = {}  # item index -> label -> instances
        for i in range(len(dataset)):
            counts[i] = {}
            for label in dataset.labels(i).tolist():
                counts[i][label] = counts[i].get(label, 0) + 1
        ids = dataset.video_ids
        chosen: list[int] = []
        for label in sorted({lab for c in counts.values() for lab in c}):
            having = [i for i in counts if label in counts[i]]
            ranked = sorted(having, key=lambda i: (-counts[i][label], ids[i]))
            chosen += [i for i in ranked[:per_class] if i not in chosen]
        feats = [dataset[i].feats[:, :max_len].to(torch.float16) for i in chosen]
        if not feats:
            raise ValueError("partner bank: the training videos have no instances")
        keys = F.normalize(torch.stack([f.float().mean(1) for f in feats]), dim=1)
        return cls(feats, keys, [ids[i] for i in chosen])

    def nearest(self, feats: Tensor, exclude: str | None = None) -> int:
        """Index of the bank video most similar to ``feats`` [C, T] (not ``exclude``)."""
        sims = self.keys @ F.normalize(feats.float().mean(1), dim=0)
        if exclude is not None and exclude in self.video_ids and len(self.video_ids) > 1:
            sims[self.video_ids.index(exclude)] = -float("inf")
        return int(sims.argmax())

    def to_state(self) -> dict[str, object]:
        return {"feats": self.feats, "keys": self.keys, "video_ids": list(self.video_ids)}

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> PartnerBank:
        feats, keys, ids = state["feats"], state["keys"], state["video_ids"]
        if not (isinstance(feats, list) and isinstance(keys, Tensor) and isinstance(ids, list)):
            raise ValueError("partner bank state: expected feats, keys and video_ids")
        return cls(list(feats), keys, [str(v) for v in ids])


@register_method
class I2Net(OneStageMethod[I2NetConfig]):
    """Intra- and inter-video attention on the one-stage localizer."""

    name = "i2net"
    config_class = I2NetConfig

    @property
    def takes_partner(self) -> bool:
        return self.config.inter_attention

    def describe(self) -> str:
        c = self.config
        return f"i2net (intra {c.intra_attention}, inter {c.inter_attention})"

    def build_network(self, in_dim: int, num_classes: int) -> nn.Module:
        c = self.config
        return I2NetLocalizer(
            c.pyramid(), in_dim, num_classes, c.intra_attention, c.inter_attention
        )

    def loss_terms(
        self,
        network: nn.Module,
        loss: nn.Module,
        first: Batch,
        second: Batch,
        num_classes: int,
        device: torch.device,
    ) -> LossTerms:
        if not self.takes_partner:  # intra only: single videos, as the baseline
            return super().loss_terms(network, loss, first, second, num_classes, device)
        out = network(
            first.feats.to(device),
            first.masks.to(device),
            second.feats.to(device),
            second.masks.to(device),
        )
        segments = to_device(first.segments + second.segments, device)
        labels = to_device(first.labels + second.labels, device)
        return loss(out.joined(), segments, labels)

    def forward_video(
        self,
        network: nn.Module,
        video_id: str,
        feats: Tensor,
        device: torch.device,
        assets: InferenceAssets | None,
    ) -> LocalizerOutput:
        batch, masks = single_video(feats, self.divisible_by, device)
        if not self.takes_partner:
            return network(batch, masks)
        if self.config.inference_partner == "self":
            return network(batch, masks, batch, masks)
        if not isinstance(assets, PartnerBank):
            raise ValueError("inference partner 'bank' needs a partner bank in the model")
        k = assets.nearest(feats, exclude=video_id)
        return network(batch, masks, *single_video(assets.feats[k], self.divisible_by, device))

    def inference_assets(self, train_videos: FeatureDataset) -> PartnerBank | None:
        # kept whenever the model takes a partner, so that either policy can run from it
        if not self.takes_partner:
            return None
        return PartnerBank.build(train_videos, self.config.bank_per_class, self.config.max_seq_len)

    def assets_from_state(self, state: Mapping[str, object] | None) -> PartnerBank | None:
        return PartnerBank.from_state(state) if state else None
