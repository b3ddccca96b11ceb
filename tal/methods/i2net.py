"""I2Net: the one-stage localizer with intra-video and inter-video attention.

- **Intra-video attention** (``intra_attention``): right after level l+1 is made from level l
  (``refine_level``: on its block's output, or between pool and block with ``pool_then_block``),
  its points cross-attend to *all* real points of level l (within the attention context
  below). Local attention only widens the view a few points per level; this gives every
  point of every level above 0 a view of the whole video (level 0 stays local).
- **Inter-video attention** (``inter_attention``): with a partner video (a training pair that
  shares an action class), after each level is computed for both videos, each cross-attends
  to the other's level: ``x_a + CA(x_a, x_b)`` and ``x_b + CA(x_b, x_a)``, one module per
  level used in both directions, both from the pre-update tensors. The updated level feeds
  the heads and the next level. Without a partner the video is its own partner (a global
  self-attention at every level), so a model trained with pairs runs on a single video.

Training with inter-video attention runs the two videos of each pair through the network
together and both get losses (the pair's crops keep an action of a class the two share:
``training.pair_crop``, ``tal.data.dataset.PairDataset``).

**Attention context** (``attention_context``). Both attentions are global, but training
sees crops of at most ``max_seq_len`` features while inference sees whole videos, often far
longer: a global attention would then spread over a number of keys never trained, diluting
each query's softmax. With ``training_window`` (default) every query of the intra and inter
attentions attends to a window of the keys as long as a training crop at that level
(``max_seq_len / 2**l`` points of level l): the window centred on the query's position
(scaled to the key sequence's length), shifted to lie inside the video. A sequence no longer
than that window is attended to whole, so training (and inference on short videos) is
unchanged. We chose this over chunked inference (whole-network passes over windows, then
merging detections) because it keeps one pass and no seams between windows, and over
training on whole videos because that gives up ActionFormer's crop augmentation. ``global``
is the former behaviour (every key, whatever the length).

**Inference partner** (``inference_partner``): ``self`` (the video itself), ``bank`` (the
bank video most similar by cosine of mean features over whole videos, class-agnostic) or
``bank_class`` (default): a first pass with the video as its own partner gives its top
class (the highest classification score over all points and levels); the partner is the
bank's most similar video *of that class*, and a second pass gives the detections. The
bank (``PartnerBank``) keeps per class the ``bank_per_class`` training videos with most
instances of it, each as the ``max_seq_len`` window that covers most of that class's
instances, in float16, with a key from its whole video's mean feature. ``bank_class`` is
our reading of the paper's "a partner that shares an action class": at inference the class
is unknown, so the model's own first guess stands in for it. No official code is public:
the placement of both attentions, the attention context and the partner policies are our
reading of the paper.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from tal.data.dataset import Batch, FeatureDataset
from tal.methods.actionformer import LocalizerConfig, OneStageMethod
from tal.methods.base import InferenceAssets, LossTerms, single_video, to_device
from tal.methods.registry import register_method
from tal.models.blocks import CrossAttentionBlock, zero_padded
from tal.models.localizer import Localizer, LocalizerOutput, PyramidSettings

AttentionContext = Literal["training_window", "global"]


def context_window_mask(query_mask: Tensor, key_mask: Tensor, window: int) -> Tensor:
    """Which keys each query may attend to, ``[B, 1, Tq, Tk]`` bool, under the
    ``training_window`` context (module docstring).

    Per video, with ``n`` real queries and ``m`` real keys: when ``m <= window`` every real
    key; otherwise query ``i`` sees the ``window`` keys starting at ``clamp(c - window // 2,
    0, m - window)``, ``c = floor((i + 0.5) m / n)`` its position in the key sequence. A
    padded query is given every real key (its output is discarded), as ``attention_mask``.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    n = query_mask.sum(dim=1, keepdim=True)  # [B, 1]
    m = key_mask.sum(dim=1, keepdim=True)
    pos = torch.arange(query_mask.shape[1], device=query_mask.device)[None, :]  # [1, Tq]
    centre = torch.div((2 * pos + 1) * m, 2 * n.clamp(min=1), rounding_mode="floor")
    start = (centre - window // 2).clamp(min=0)
    start = torch.minimum(start, (m - window).clamp(min=0))  # [B, Tq]
    keys = torch.arange(key_mask.shape[1], device=key_mask.device)[None, None, :]
    inside = (keys >= start[..., None]) & (keys < start[..., None] + window)
    allowed = inside & key_mask[:, None, :]
    allowed = allowed | ~query_mask[:, :, None] & key_mask[:, None, :]
    return allowed[:, None]


def windowed_cross_attention(
    block: CrossAttentionBlock,
    query: Tensor,
    query_mask: Tensor,
    context: Tensor,
    context_mask: Tensor,
    window: int | None,
) -> Tensor:
    """``block`` with each query restricted to ``context_window_mask``; exactly ``block``
    itself when ``window`` is None or no video's context is longer than ``window``."""
    if window is None or int(context_mask.sum(dim=1).max()) <= window:
        return block(query, query_mask, context, context_mask)
    allowed = context_window_mask(query_mask, context_mask, window)
    update = block.attn(block.norm_q(query), block.norm_kv(context), allowed)
    return zero_padded(query + block.drop(update), query_mask)


class I2NetConfig(LocalizerConfig):
    name: Literal["i2net"] = "i2net"
    intra_attention: bool = True
    inter_attention: bool = True
    inference_partner: Literal["self", "bank", "bank_class"] = Field(
        "self",
        description="the partner at inference: the video itself (self, chosen on validation: "
        "docs/results/partner_policy.md), the bank's most similar video (bank), or the "
        "bank's most similar video of the class a first pass with self predicts (bank_class)",
    )
    attention_context: Literal["training_window", "global"] = Field(
        "training_window",
        description="keys each intra/inter attention query sees: a window as long as a "
        "training crop at that level (training_window), or all of them (global, former)",
    )
    bank_per_class: int = Field(
        2,
        ge=1,
        description="partner bank: training videos kept per class (inference_partner bank, bank_class)",
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
        self,
        settings: PyramidSettings,
        in_dim: int,
        num_classes: int,
        intra: bool,
        inter: bool,
        context: AttentionContext = "training_window",
    ) -> None:
        if context not in ("training_window", "global"):
            raise ValueError(f"unknown attention context {context!r}")
        self._intra_on, self._inter_on = intra, inter
        # points of level l in a training crop; None: global attention at every length
        self._window = (
            None
            if context == "global"
            else [max(1, settings.max_len // 2**lv) for lv in range(settings.num_levels)]
        )
        super().__init__(settings, in_dim, num_classes)

    def context_window(self, level: int) -> int | None:
        """Keys a query may attend to in level ``level`` (None: all)."""
        return None if self._window is None else self._window[level]

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
        block = self.intra[level - 1]
        assert isinstance(block, CrossAttentionBlock)
        return windowed_cross_attention(
            block, x, mask, finer, finer_mask, self.context_window(level - 1)
        )

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
                inter, window = self.inter[level], self.context_window(level)
                assert isinstance(inter, CrossAttentionBlock)
                if paired:
                    (xa, xb), (ma, mb) = xs, ms
                    xs = [
                        windowed_cross_attention(inter, xa, ma, xb, mb, window),
                        windowed_cross_attention(inter, xb, mb, xa, ma, window),
                    ]
                else:  # no partner: the video is its own partner
                    xs = [windowed_cross_attention(inter, xs[0], ms[0], xs[0], ms[0], window)]
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
    """Training videos that can serve as inference partners: entry ``k`` is video
    ``video_ids[k]`` kept for class ``labels[k]`` (-1: unknown, a bank saved before classes
    were kept), as the window ``feats[k]`` around that class's instances, with ``keys[k]`` the
    unit mean feature of the whole video. A video kept for two classes has two entries."""

    feats: list[Tensor]  # each [C, T_k], float16
    keys: Tensor  # [K, C] unit-norm mean features of the whole videos
    video_ids: list[str]
    labels: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.labels:
            self.labels = [-1] * len(self.video_ids)
        if not len(self.feats) == len(self.video_ids) == len(self.labels) == self.keys.shape[0]:
            raise ValueError("partner bank: feats, keys, video_ids and labels differ in length")

    @classmethod
    def build(
        cls, dataset: FeatureDataset, per_class: int, max_len: int | None = None
    ) -> PartnerBank:
        """Per class, the ``per_class`` videos with most instances of it (ties: by id), each
        cut to the ``max_len`` window covering most of that class's instances (earliest on
        ties; whole when not longer).

        ``dataset`` must not crop (``training=False``): keys are whole-video means.
        """
        counts: dict[int, dict[int, int]] = {}  # item index -> label -> instances
        for i in range(len(dataset)):
            counts[i] = {}
            for label in dataset.labels(i).tolist():
                counts[i][label] = counts[i].get(label, 0) + 1
        ids = dataset.video_ids
        chosen: list[tuple[int, int]] = []  # (item index, label)
        for label in sorted({lab for c in counts.values() for lab in c}):
            having = [i for i in counts if label in counts[i]]
            ranked = sorted(having, key=lambda i: (-counts[i][label], ids[i]))
            chosen += [(i, label) for i in ranked[:per_class]]
        if not chosen:
            raise ValueError("partner bank: the training videos have no instances")
        feats, keys = [], []
        for i, label in chosen:
            item = dataset[i]
            keys.append(item.feats.mean(1))
            start = _best_window(item.segments[item.labels == label], item.length, max_len)
            stop = item.length if max_len is None else start + max_len
            feats.append(item.feats[:, start:stop].to(torch.float16))
        return cls(
            feats,
            F.normalize(torch.stack(keys), dim=1),
            [ids[i] for i, _ in chosen],
            [label for _, label in chosen],
        )

    def nearest(self, feats: Tensor, exclude: str | None = None, label: int | None = None) -> int:
        """Index of the bank entry most similar to ``feats`` [C, T] (the whole video), not
        of video ``exclude`` (unless it is all there is); with ``label``, among the entries
        of that class when there are any (else among all)."""
        sims = self.keys @ F.normalize(feats.float().mean(1), dim=0)
        allowed = torch.ones(len(self.video_ids), dtype=torch.bool)
        if label is not None and label in self.labels:
            allowed &= torch.tensor([lab == label for lab in self.labels])
        if exclude is not None:
            others = allowed & torch.tensor([v != exclude for v in self.video_ids])
            if others.any():
                allowed = others
        return int(sims.masked_fill(~allowed, -float("inf")).argmax())

    def to_state(self) -> dict[str, object]:
        return {
            "feats": self.feats,
            "keys": self.keys,
            "video_ids": list(self.video_ids),
            "labels": list(self.labels),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> PartnerBank:
        feats, keys, ids = state["feats"], state["keys"], state["video_ids"]
        labels = state.get("labels", [])
        if not (
            isinstance(feats, list)
            and isinstance(keys, Tensor)
            and isinstance(ids, list)
            and isinstance(labels, list)
        ):
            raise ValueError("partner bank state: expected feats, keys, video_ids and labels")
        return cls(list(feats), keys, [str(v) for v in ids], [int(x) for x in labels])


def _best_window(segments: Tensor, length: int, max_len: int | None) -> int:
    """Start of the ``max_len`` window of a ``length`` video that covers most of
    ``segments`` [N, 2] (steps; earliest on ties); 0 when the video is not longer."""
    if max_len is None or length <= max_len or len(segments) == 0:
        return 0
    starts = torch.arange(length - max_len + 1, dtype=torch.float32)[:, None]
    low, high = starts - 0.5, starts + max_len - 0.5
    s, e = segments[:, 0].float()[None], segments[:, 1].float()[None]
    covered = (torch.minimum(e, high) - torch.maximum(s, low)).clamp(min=0).sum(1)
    return int(covered.argmax())  # argmax returns the first maximum


def top_class(out: LocalizerOutput) -> int:
    """The class with the highest classification score over every real point and level of
    the first video of ``out`` (the first pass of ``bank_class``)."""
    best = torch.stack(
        [
            logits[0].masked_fill(~mask[0][:, None], -float("inf")).amax(0)
            for logits, mask in zip(out.cls_logits, out.masks, strict=True)
        ]
    ).amax(0)
    return int(best.argmax())


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
            c.pyramid(),
            in_dim,
            num_classes,
            c.intra_attention,
            c.inter_attention,
            c.attention_context,
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
        policy = self.config.inference_partner
        if policy == "self":
            return network(batch, masks, batch, masks)
        if not isinstance(assets, PartnerBank):
            raise ValueError(f"inference partner {policy!r} needs a partner bank in the model")
        label = None
        if policy == "bank_class":  # first pass: the video's own top class
            label = top_class(network(batch, masks, batch, masks))
        k = assets.nearest(feats, exclude=video_id, label=label)
        return network(batch, masks, *single_video(assets.feats[k], self.divisible_by, device))

    def inference_assets(self, train_videos: FeatureDataset) -> PartnerBank | None:
        # kept whenever the model takes a partner, so that either policy can run from it
        if not self.takes_partner:
            return None
        return PartnerBank.build(train_videos, self.config.bank_per_class, self.config.max_seq_len)

    def assets_from_state(self, state: Mapping[str, object] | None) -> PartnerBank | None:
        return PartnerBank.from_state(state) if state else None
