"""The training loop end to end on a small, easy feature store: it learns, it is
deterministic on CPU, a killed run resumes to the same result, checkpoints load safely."""

from __future__ import annotations

import json

import pytest
import torch

from tal.config import load_config
from tal.data.annotations import load_annotations
from tal.engine.checkpoint import CheckpointError, load_checkpoint
from tal.engine.inference import infer_from_checkpoint
from tal.engine.trainer import train_localizer
from tal.evaluation.detection import evaluate_detection
from tal.methods.i2net import PartnerBank

# the small one-stage pyramid of these tests (actionformer, i2net, asl)
PYRAMID = {
    "model.embed_dim": 32,
    "model.num_heads": 4,
    "model.num_levels": 3,
    "model.attention_window": 5,
}
TRAINING = {
    "seed": 0,
    "model.max_seq_len": 64,
    "training.epochs": 12,
    "training.batch_size": 4,
    "training.lr": 0.002,
    "training.warmup_epochs": 1,
    "training.eval_every": 4,
    "training.ema_decay": 0.9,
    "pairs.per_video": 2,
    "features.modalities": "[rgb, flow]",
}


def _config(method: str = "i2net", **changes):
    shape = PYRAMID if method != "co2net" else {}
    sets = {"model.name": method, **shape, **TRAINING, **changes}
    return load_config(None, [f"{k}={v}" for k, v in sets.items()])


# ActionFormer's architecture (drop-path's 1e-4 residual scales, the LayerNorm neck) learns
# the toy more slowly than our earlier pyramid: 12 epochs gave average mAP 0.47, 20 give 1.0
LEARN = {"training.epochs": 20}


@pytest.mark.parametrize("method", ["actionformer", "i2net"])
def test_learns_easy_actions(toy_store, tmp_path, method):
    _, ann, store = toy_store
    config = _config(method, **LEARN)
    metrics = train_localizer(config, ann, store, None, tmp_path, log=lambda _m: None)
    assert metrics.average_mAP is not None and metrics.average_mAP > 0.6, metrics.mAP
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["average_mAP"] == metrics.average_mAP and len(saved["history"]) == 20
    assert (tmp_path / "predictions.json").is_file()
    # predictions.json scores exactly what metrics.json says
    from tal.data.predictions import load_predictions

    result = evaluate_detection(
        load_annotations(ann),
        load_predictions(tmp_path / "predictions.json"),
        "validation",
        config.evaluation.tiou_thresholds,
    )
    assert result.average_mAP == pytest.approx(metrics.average_mAP)


def test_deterministic_and_resumable(toy_store, tmp_path):
    _, ann, store = toy_store
    config = _config(**{"training.epochs": 4, "training.eval_every": 2})
    full = train_localizer(config, ann, store, None, tmp_path / "a", log=lambda _m: None)
    again = train_localizer(config, ann, store, None, tmp_path / "b", log=lambda _m: None)
    assert [r["loss"] for r in again.history] == [r["loss"] for r in full.history]

    class Killed(Exception):
        pass

    def kill_after_two(message: str) -> None:
        if message.startswith("epoch 2/4"):
            raise Killed

    with pytest.raises(Killed):
        train_localizer(config, ann, store, None, tmp_path / "c", log=kill_after_two)
    assert load_checkpoint(tmp_path / "c" / "checkpoint.pt").epoch == 2
    resumed = train_localizer(
        config, ann, store, None, tmp_path / "c", resume=True, log=lambda _m: None
    )
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    assert resumed.average_mAP == full.average_mAP
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt").ema
    c = load_checkpoint(tmp_path / "c" / "checkpoint.pt").ema
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_infer_from_checkpoint_matches_training_predictions(toy_store, tmp_path):
    _, ann, store = toy_store
    config = _config(**{"training.epochs": 2, "training.eval_every": 2})
    metrics = train_localizer(config, ann, store, None, tmp_path, log=lambda _m: None)
    detections, facts = infer_from_checkpoint(
        str(tmp_path / "checkpoint.pt"), str(ann), str(store), "validation"
    )
    result = evaluate_detection(
        load_annotations(ann), detections, "validation", (0.3, 0.4, 0.5, 0.6, 0.7)
    )
    assert result.average_mAP == pytest.approx(metrics.average_mAP)
    # the default partner: the video itself
    assert facts.videos == 6 and facts.config.model.inference_partner == "self"
    # the same checkpoint with the bank policies: partners are training videos of the bank
    for policy in ("bank", "bank_class"):
        bank_detections, bank_facts = infer_from_checkpoint(
            tmp_path / "checkpoint.pt",
            ann,
            store,
            "validation",
            config_overrides=[f"model.inference_partner={policy}"],
        )
        assert bank_facts.config.model.inference_partner == policy and len(bank_detections) > 0
    bank = PartnerBank.from_state(load_checkpoint(tmp_path / "checkpoint.pt").assets or {})
    assert set(bank.video_ids) <= {f"toy_{v:02d}" for v in range(12)}
    assert len(bank.video_ids) <= 2 * 2 and bank.keys.shape == (len(bank.video_ids), 32)


def test_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt: cannot read"):
        load_checkpoint(bad)
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a tal checkpoint, missing"):
        load_checkpoint(tmp_path / "other.pt")


def test_paired_step_evaluates_the_loss_once_over_both_videos(toy_store, tmp_path):
    """The loss normaliser moves once per step, with the positives of both videos."""
    from tal.engine.trainer import Trainer, load_data

    _, ann, store = toy_store
    config = _config()
    trainer = Trainer(config, load_data(config, ann, store, None), tmp_path, log=lambda _m: None)
    seen: list[float] = []
    trainer.criterion.register_forward_hook(
        lambda _mod, _args, out: seen.append(out["loss"].item())
    )
    batch_a, batch_b = next(iter(trainer.loader(0)))
    trainer.step(batch_a, batch_b)
    assert len(seen) == 1
    positives = 0.0
    for batch in (batch_a, batch_b):
        out = trainer.model(batch.feats, batch.masks)
        _, _, pos = trainer.criterion.targets(out, batch.segments, batch.labels)
        positives += float((pos & torch.cat(out.masks, 1).bool()).sum())
    # one update from training.loss_norm_init 100 with momentum 0.9 (ActionFormer's rule)
    assert positives > 0
    assert float(trainer.criterion.normalizer) == pytest.approx(0.9 * 100 + 0.1 * positives)


def test_partners_drawn_each_epoch_reach_the_training_step(toy_store, tmp_path):
    """training.partner_draw each_epoch: every training video once per epoch, its partner
    changing between epochs among the pairs table's rows (CO2-Net's official draw)."""
    from tal.engine.trainer import Trainer, load_data

    _, ann, store = toy_store
    config = _config("co2net", **{"pairs.per_video": 11, "training.partner_draw": "each_epoch"})
    data = load_data(config, ann, store, None)
    trainer = Trainer(config, data, tmp_path, log=lambda _m: None)
    partners: dict[str, set[str]] = {}
    for epoch in range(4):
        firsts = []
        for batch_a, batch_b in trainer.loader(epoch):
            firsts += batch_a.video_ids
            for a, b in zip(batch_a.video_ids, batch_b.video_ids, strict=True):
                partners.setdefault(a, set()).add(b)
        assert sorted(firsts) == sorted(data.train.video_ids)  # each video once an epoch
    assert len(trainer.sampler) == -(-len(data.train.video_ids) // config.training.batch_size)
    assert sum(len(p) > 1 for p in partners.values()) >= len(partners) // 2


def test_asl_trains_with_its_loss_terms(toy_store, tmp_path):
    _, ann, store = toy_store
    config = _config("asl", **LEARN)
    metrics = train_localizer(config, ann, store, None, tmp_path, log=lambda _m: None)
    assert metrics.average_mAP is not None and metrics.average_mAP > 0.6, metrics.mAP
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    # as released: no instance-level branch (its loss is 0) and the contrastive loss computed
    # but weighted 0; the positives' mean weights are logged
    assert all(row["sensitivity_loss"] == 0 and row["contrastive_loss"] > 0 for row in history)
    assert all(0 < row["cls_pos_weight"] <= 1 and 0 < row["reg_pos_weight"] <= 1 for row in history)
    # the class-level Gaussians were trained and travel with the checkpoint
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    mu = state.model["class_sensitivity.mu"]
    assert mu.shape == (2, 3) and not torch.equal(mu[:, 0], torch.zeros(2))


class _LabelOnly:
    """An instance whose segment cannot be read: weak training must use only its label."""

    def __init__(self, label: str, label_id: int | None):
        self.label, self.label_id = label, label_id

    @property
    def start(self) -> float:
        raise AssertionError(f"weak training read the start of a {self.label} instance")

    @property
    def end(self) -> float:
        raise AssertionError(f"weak training read the end of a {self.label} instance")

    @property
    def length(self) -> float:
        raise AssertionError(f"weak training read the length of a {self.label} instance")


def test_co2net_trains_from_video_labels_only(toy_store, tmp_path, monkeypatch):
    import tal.engine.trainer as trainer_module

    real_loader = trainer_module.load_annotations

    def guarded(path):
        annotations = real_loader(path)
        for video in annotations.videos.values():
            if video.subset == "training":
                video.instances = [_LabelOnly(i.label, i.label_id) for i in video.instances]
        return annotations

    monkeypatch.setattr(trainer_module, "load_annotations", guarded)
    _, ann, store = toy_store
    weak = {
        "model.attention_dim": 16,
        "model.fusion_dim": 32,
        "model.dropout": 0.3,
        "model.consensus_dropout": 0.2,
        "training.epochs": 30,
        "training.eval_every": 10,
        "training.lr": 0.001,
        "evaluation.tiou_thresholds": "[0.1, 0.3, 0.5]",
    }
    config = _config("co2net", **weak)
    metrics = train_localizer(config, ann, store, None, tmp_path, log=lambda _m: None)
    history = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert history[-1]["mil"] < history[0]["mil"]
    assert all(row["coactivity"] >= 0 and row["mutual"] >= 0 for row in history)
    assert metrics.average_mAP is not None and metrics.average_mAP > 0.25, metrics.mAP
    # the checkpoint predicts as training did
    _, facts = infer_from_checkpoint(tmp_path / "checkpoint.pt", ann, store, "validation")
    assert facts.result is not None
    assert facts.result.average_mAP == pytest.approx(metrics.average_mAP)


def test_labels_without_training_instances_are_reported(toy_store, tmp_path):
    from tal.engine.trainer import load_data

    _, ann, store = toy_store
    data = json.loads(ann.read_text())
    val = next(v for v in data["database"].values() if v["subset"] == "validation")
    val["annotations"].append({"segment": [1.0, 2.0], "label": "only_in_validation"})
    changed = tmp_path / "annotations.json"
    changed.write_text(json.dumps(data))
    notes = load_data(_config(), changed, store, None).notes
    assert [n for n in notes if n.startswith("warning:")] == [
        "warning: 1 labels have no instance in training: only_in_validation (kept in the "
        "label map, they cannot be learnt; where they occur in evaluation they count with AP 0)"
    ]
    assert not [n for n in load_data(_config(), ann, store, None).notes if "warning" in n]


def test_class_agnostic_training_takes_classes_from_external_scores(toy_store, tmp_path):
    """ActionFormer's ActivityNet recipe: one class is learnt (action against background),
    each detection is repeated for the classifier's top classes; here a classifier that
    knows each validation video's classes (0.9 present, 0.1 absent)."""
    _, ann, store = toy_store
    database = json.loads(ann.read_text())["database"]
    names = ["class_0", "class_1"]  # the label map: sorted names
    scores = {
        vid: [0.9 if any(a["label"] == n for a in v["annotations"]) else 0.1 for n in names]
        for vid, v in database.items()
    }
    external = tmp_path / "video_scores.json"
    external.write_text(json.dumps({"results": scores}))
    config = _config(
        "actionformer",
        **LEARN,
        **{"training.class_agnostic": "true", "inference.external_scores": str(external)},
    )
    metrics = train_localizer(config, ann, store, None, tmp_path, log=lambda _m: None)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state.label_names == names
    assert state.ema["cls_head.out.conv.bias"].shape == (1,)  # one class learnt
    assert metrics.average_mAP is not None and metrics.average_mAP > 0.6, metrics.mAP
    # from the checkpoint: the same detections, every one labelled with a real class
    detections, _ = infer_from_checkpoint(tmp_path / "checkpoint.pt", ann, store, "validation")
    assert set(detections.labels) == set(names)
    result = evaluate_detection(
        load_annotations(ann), detections, "validation", config.evaluation.tiou_thresholds
    )
    assert result.average_mAP == pytest.approx(metrics.average_mAP)


def test_class_agnostic_needs_external_scores_and_a_fusing_method(tmp_path):
    from tal.config import ConfigError

    with pytest.raises(ConfigError, match="class_agnostic needs inference.external_scores"):
        _config("actionformer", **{"training.class_agnostic": "true"})
    with pytest.raises(ConfigError, match="co2net's decoding does not fuse"):
        _config("co2net", **{"inference.external_scores": str(tmp_path / "s.json")})
    assert _config("actionformer").network_classes(7) == 7
