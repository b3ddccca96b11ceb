"""Inference: one video in, scored segments in seconds out, with a partner chosen by policy.

I2Net's inter-video attention needs a second video. At inference there is only one, so the
partner is a policy (``model.inference_partner``):

- ``self``: the video is its own partner (inter-video attention becomes a second global
  self-attention);
- ``bank``: the most similar training video, by cosine similarity of mean features, from a
  small bank of training videos stored with the model (``PartnerBank``: for each class the
  videos with most instances of it, cropped to ``max_seq_len`` steps, kept in float16).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tal.data.dataset import FeatureDataset, pad_features, padded_length
from tal.data.predictions import Detections
from tal.models.co2net import CO2Net
from tal.postprocess import decode_video, soft_nms, to_seconds_rows


@dataclass
class PartnerBank:
    """Training videos that can serve as inference partners."""

    feats: list[torch.Tensor]  # each [C, T_k], float16
    keys: torch.Tensor  # [K, C] unit-norm mean features
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
            ranked = sorted(
                (i for i in counts if label in counts[i]),
                key=lambda i, lab=label: (-counts[i][lab], ids[i]),
            )
            chosen += [i for i in ranked[:per_class] if i not in chosen]
        feats = [dataset[i].feats[:, :max_len].to(torch.float16) for i in chosen]
        if not feats:
            raise ValueError("partner bank: the training videos have no instances")
        keys = F.normalize(torch.stack([f.float().mean(1) for f in feats]), dim=1)
        return cls(feats, keys, [ids[i] for i in chosen])

    def nearest(self, feats: torch.Tensor, exclude: str | None = None) -> int:
        """Index of the bank video most similar to ``feats`` [C, T] (not ``exclude``)."""
        sims = self.keys @ F.normalize(feats.float().mean(1), dim=0)
        if exclude is not None and exclude in self.video_ids and len(self.video_ids) > 1:
            sims[self.video_ids.index(exclude)] = -float("inf")
        return int(sims.argmax())

    def to_state(self) -> dict:
        return {"feats": self.feats, "keys": self.keys, "video_ids": list(self.video_ids)}

    @classmethod
    def from_state(cls, state: dict) -> PartnerBank:
        return cls(list(state["feats"]), state["keys"], list(state["video_ids"]))


@dataclass(frozen=True)
class PostprocessSettings:
    score_threshold: float = 0.001
    pre_nms_topk: int = 2000
    nms_sigma: float = 0.5
    min_score: float = 0.001
    max_detections: int = 200

    @classmethod
    def from_config(cls, inference) -> PostprocessSettings:
        """From the ``inference`` section of an experiment config."""
        return cls(
            score_threshold=inference.score_threshold,
            pre_nms_topk=inference.pre_nms_topk,
            nms_sigma=inference.nms_sigma,
            min_score=inference.min_score,
            max_detections=inference.max_detections,
        )


def _single(feats: torch.Tensor, divisible_by: int, device: torch.device):
    """One ``[C, T]`` sequence as a padded batch of one: ``([1, C, T'], [1, T'])``."""
    batch, masks = pad_features([feats.float()], padded_length(feats.shape[1], divisible_by))
    return batch.to(device), masks.to(device)


@torch.no_grad()
def predict_video(
    model: torch.nn.Module,
    video_id: str,
    feats: torch.Tensor,
    timing,
    duration: float | None,
    label_names: Sequence[str],
    divisible_by: int,
    device: torch.device,
    partner: str = "self",
    bank: PartnerBank | None = None,
    post: PostprocessSettings = PostprocessSettings(),
    uses_partner: bool = True,
) -> list[tuple[str, str, float, float, float]]:
    """Detection rows (``Detections.from_rows``) of one video's ``[C, T]`` features."""
    model.eval()
    batch, masks = _single(feats, divisible_by, device)
    if isinstance(model, CO2Net):  # proposals from its attention and CAS
        from tal.engine.co2net_inference import localize_weak

        out = model(batch, masks)
        real = out["masks"][0]
        segs, scores, labels = localize_weak(
            out["cas"][0][real], out["attention"][0][real], model.settings,
            max_detections=post.max_detections,
        )  # fmt: skip
        return to_seconds_rows(video_id, segs, scores, labels, timing, duration, list(label_names))
    if not uses_partner:
        out = model(batch, masks)
    elif partner == "self":
        out = model(batch, masks, batch, masks)
    elif partner == "bank":
        if bank is None:
            raise ValueError("inference partner 'bank' needs a partner bank in the model")
        k = bank.nearest(feats, exclude=video_id)
        out = model(batch, masks, *_single(bank.feats[k], divisible_by, device))
    else:
        raise ValueError(f"inference partner {partner!r}: expected self or bank")
    segs, scores, labels = decode_video(
        [x[0] for x in out["cls_logits"]],
        [x[0] for x in out["offsets"]],
        [x[0] for x in out["masks"]],
        out["strides"],
        score_threshold=post.score_threshold,
        pre_nms_topk=post.pre_nms_topk,
    )
    segs, scores, labels = soft_nms(
        segs,
        scores,
        labels,
        sigma=post.nms_sigma,
        min_score=post.min_score,
        max_detections=post.max_detections,
    )
    return to_seconds_rows(video_id, segs, scores, labels, timing, duration, list(label_names))


def predict(
    model: torch.nn.Module,
    dataset: FeatureDataset,
    label_names: Sequence[str],
    divisible_by: int,
    device: torch.device,
    partner: str = "self",
    bank: PartnerBank | None = None,
    post: PostprocessSettings = PostprocessSettings(),
    uses_partner: bool = True,
) -> Detections:
    """Detections of every video of ``dataset`` (never cropped), in seconds."""
    rows = []
    for i in range(len(dataset)):
        item = dataset[i]
        rows += predict_video(
            model, item.video_id, item.feats, item.timing, item.duration, label_names,
            divisible_by, device, partner=partner, bank=bank, post=post, uses_partner=uses_partner,
        )  # fmt: skip
    return Detections.from_rows(rows)


# feature-store attributes that must match between training and inference
_TIMING_KEYS = ("clip_length", "stride", "feature_dims")


def load_localizer(state: dict):
    """The EMA model and config of a checkpoint read by ``load_checkpoint``."""
    from tal.config import config_from_dict
    from tal.models import build_model

    config = config_from_dict(state["config"], "checkpoint config")
    model = build_model(
        config.model, in_dim=int(state["in_dim"]), num_classes=len(state["label_names"])
    )
    model.load_state_dict(state["ema"])
    return model.eval(), config


def infer_from_checkpoint(
    checkpoint: str | os.PathLike[str],
    annotations: str | os.PathLike[str] | None,
    store: str | os.PathLike[str] | None,
    subset: str,
    partner: str | None = None,
    device: str = "cpu",
    log=None,
) -> tuple[Detections, dict]:
    """Predictions of ``subset`` with a trained checkpoint (and its config), plus facts
    (``videos``, ``missing``, ``partner``, ``notes``, ``config`` and ``result``: the
    evaluation when the subset has ground truth, else None).

    ``annotations`` and ``store`` default to the paths in the checkpoint's config. The store
    must have the checkpoint's streams, clip length, stride and feature widths; a different
    weights digest is allowed but reported.
    """
    from tal.data.annotations import LabelMap, load_annotations
    from tal.data.dataset import open_store
    from tal.engine.checkpoint import CheckpointError, load_checkpoint
    from tal.evaluation.detection import evaluate_detection
    from tal.models import Localizer

    state = load_checkpoint(checkpoint)
    model, config = load_localizer(state)
    annotations = annotations or config.data.annotations
    store = store or config.features.store
    fs = open_store(store)
    trained = state.get("feature_attrs") or {}
    for key in _TIMING_KEYS:
        if key in trained and fs.attrs.get(key) != trained[key]:
            raise CheckpointError(
                f"{checkpoint}: trained on features with {key}={trained[key]!r}, but {store} "
                f"has {fs.attrs.get(key)!r}"
            )
    notes = []
    if trained.get("weights_digest") not in (None, fs.attrs.get("weights_digest")):
        notes.append(f"{store}: extracted with other weights than the training features")
    ann = load_annotations(annotations)
    label_names = list(state["label_names"])
    dataset = FeatureDataset(
        fs, ann, [subset], label_map=LabelMap(label_names), modalities=list(state["modalities"])
    )
    bank = PartnerBank.from_state(state["bank"]) if state.get("bank") else None
    partner = partner or config.model.inference_partner
    torch_device = torch.device(device)
    detections = predict(
        model.to(torch_device),
        dataset,
        label_names,
        Localizer.divisible_by(config.model),
        torch_device,
        partner=partner,
        bank=bank,
        post=PostprocessSettings.from_config(config.inference),
        uses_partner=config.model.takes_partner,
    )
    result = None
    if any(v.instances for v in ann.subset(subset)):
        result = evaluate_detection(ann, detections, subset, config.evaluation.tiou_thresholds)
    facts = {"videos": len(dataset), "missing": list(dataset.missing), "partner": partner,
             "notes": notes, "config": config, "result": result}  # fmt: skip
    if log:
        for note in notes:
            log(note)
    return detections, facts
