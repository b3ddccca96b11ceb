"""The training loop of every method: plain PyTorch, one process or data parallel.

Every epoch walks the cross-video pairs in global batches; the method (``tal.methods``)
owns what happens to a batch: its network, its loss and its step (I2Net runs the two videos
of a pair together; single-video methods take both sides as one batch, so that every method
sees the same data; CO2-Net trains from video labels). The loop around it is shared: AdamW
(or Adam, ``training.optimizer``) with weight decay on layer weights only
(``_param_groups``), linear warm-up and cosine decay (or a constant rate) per step,
gradient clipping, an EMA of the weights (evaluated and saved), mixed precision on GPU, a
checkpoint after every epoch (resumable), evaluation with the project's evaluator every
``training.eval_every`` epochs and after the last, through the method's decoding.

Under a process group (Ray Train or torchrun set it up; this module never imports them) the
model is wrapped in DDP, each rank takes its share of every global batch
(``ShardedBatchSampler``), a loss normalised over the global batch counts over all ranks,
and rank 0 evaluates, saves and writes: a run on N workers takes the same steps as on one.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal, Protocol, cast

import numpy as np
import torch
from torch.utils.data import DataLoader

from features.atomic import atomic_write_text
from features.extractor import pick_device
from features.store import FeatureStore
from tal.config import ExperimentConfig, TrainingConfig, config_from_dict, dump_config
from tal.data.annotations import AnnotationSet, load_annotations
from tal.data.dataset import Batch, FeatureDataset, PairDataset, collate_pairs, open_store
from tal.data.predictions import Detections, write_predictions
from tal.data.sampler import ShardedBatchSampler
from tal.engine.checkpoint import CheckpointState, save_checkpoint
from tal.engine.distributed import DistContext
from tal.engine.ema import ModelEMA
from tal.engine.inference import predict
from tal.engine.schedule import warmup_schedule
from tal.evaluation.detection import DetectionResult, evaluate_detection
from tal.methods import Method, PostprocessSettings, build_method
from tal.methods.base import InferenceAssets
from tal.pairs import build_pairs, read_pairs

logger = logging.getLogger(__name__)

# one epoch's row of the history: losses, learning rate, speed, validation mAP
EpochRow = dict[str, float]


def seed_everything(seed: int) -> None:
    """Python, numpy and torch generators; deterministic kernels where torch has them."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


@dataclass
class TrainData:
    """Everything the loop reads: datasets, pairs, label names, input width."""

    annotations: AnnotationSet
    store: FeatureStore
    train: FeatureDataset
    train_full: FeatureDataset  # uncropped, for the partner bank
    val: FeatureDataset
    pairs: PairDataset
    label_names: list[str]
    in_dim: int
    notes: list[str] = field(default_factory=list)


def load_data(
    config: ExperimentConfig,
    annotations_path: str | os.PathLike[str],
    store_path: str | os.PathLike[str],
    pairs_path: str | os.PathLike[str] | None,
) -> TrainData:
    """Datasets over the store; pairs from ``pairs_path`` or built in memory if absent."""
    annotations = load_annotations(annotations_path)
    label_map = annotations.label_map()
    store = open_store(store_path)
    method = build_method(config.model)
    weak = method.supervision == "video_labels"
    t = config.training

    def dataset(subsets: list[str], training: bool = False) -> FeatureDataset:
        return FeatureDataset(
            store,
            annotations,
            subsets,
            label_map=label_map,
            modalities=list(config.features.modalities),
            max_seq_len=config.model.max_seq_len if training else None,
            training=training,
            seed=config.seed,
            weak=weak,
            trunc_threshold=t.trunc_thresh,
            crop_ratio=t.crop_ratio,
            crop_tries=t.crop_tries,
            crop_bounds=t.crop_bounds,
            class_agnostic=t.class_agnostic,
        )

    train = dataset(list(config.data.train_subsets), training=True)
    train_full = dataset(list(config.data.train_subsets))
    val = dataset([config.evaluation.subset])
    notes = []
    if pairs_path is not None and Path(pairs_path).is_file():
        table = read_pairs(pairs_path)
        notes.append(f"pairs: {table.num_rows} from {pairs_path}")
    else:
        result = build_pairs(
            annotations,
            subsets=tuple(config.data.train_subsets),
            per_video=config.pairs.per_video,
            seed=config.pairs.seed,
            available=store.completed(),
        )
        table = result.table
        notes.append(f"pairs built in memory: {result.summary()}")
    trained = {i.label for v in annotations.subset(*config.data.train_subsets) for i in v.instances}
    untrained = [name for name in label_map.names if name not in trained]
    if untrained:
        notes.append(
            f"warning: {len(untrained)} labels have no instance in "
            f"{'+'.join(config.data.train_subsets)}: {', '.join(untrained[:10])}"
            f"{' ...' if len(untrained) > 10 else ''} (kept in the label map, they cannot be "
            "learnt; where they occur in evaluation they count with AP 0)"
        )
    # the pairs only walk the videos of a method without a partner: crop those independently
    pair_crop = t.pair_crop if method.takes_partner else "independent"
    pairs = PairDataset(train, table, pair_crop, t.partner_draw)
    in_dim = int(train[0].feats.shape[0])
    return TrainData(
        annotations, store, train, train_full, val, pairs, list(label_map.names), in_dim, notes
    )


DecayOn = Literal["modules", "matrices", "all"]
# layers whose weights get weight decay under "modules" (ActionFormer's make_optimizer
# whitelist: Linear, Conv1d and its MaskedConv1D, which here wraps an nn.Conv1d)
_DECAYED_LAYERS = (torch.nn.Linear, torch.nn.Conv1d)


def _param_groups(
    model: torch.nn.Module, weight_decay: float, decay_on: DecayOn = "modules"
) -> list[dict[str, object]]:
    """Two optimiser groups: parameters with weight decay, and the others.

    ``decay_on`` ``modules`` decays only the ``weight`` of ``nn.Linear`` / ``nn.Conv1d`` layers
    (ActionFormer's ``make_optimizer``: biases, norms, scales and position encodings are not
    decayed; a parameter of any other module is not either, where ActionFormer would stop
    with an assertion); ``matrices`` every parameter of 2 or more dimensions (the former
    rule); ``all`` every parameter (CO2-Net's ``Adam(weight_decay=...)``). Whatever the
    rule, the names the (unwrapped) network returns from ``no_weight_decay()`` (the timm
    convention, full dotted parameter names) get none; a listed name that is no parameter
    is an error.
    """
    if decay_on not in ("modules", "matrices", "all"):
        raise ValueError(f"decay_on must be modules, matrices or all, got {decay_on!r}")
    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    net = model.module if isinstance(model, wrappers) else model
    named = dict(net.named_parameters())
    listed = getattr(net, "no_weight_decay", None)
    exempt = set(listed()) if callable(listed) else set()
    unknown = sorted(exempt - named.keys())
    if unknown:
        raise ValueError(f"no_weight_decay() names parameters the network lacks: {unknown}")
    if decay_on == "modules":
        chosen = {
            f"{prefix}.weight" if prefix else "weight"
            for prefix, module in net.named_modules()
            if isinstance(module, _DECAYED_LAYERS) and module.weight is not None
        }
    elif decay_on == "matrices":
        chosen = {name for name, p in named.items() if p.ndim > 1}
    else:
        chosen = set(named)
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in named.items():
        if p.requires_grad:
            (decay if name in chosen and name not in exempt else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(model: torch.nn.Module, training: TrainingConfig) -> torch.optim.Optimizer:
    """``training.optimizer`` over ``_param_groups``: AdamW (decoupled weight decay,
    ActionFormer) or Adam (weight decay added to the gradient, CO2-Net)."""
    groups = _param_groups(model, training.weight_decay, training.weight_decay_on)
    if training.optimizer == "adam":
        return torch.optim.Adam(groups, lr=training.lr)
    return torch.optim.AdamW(groups, lr=training.lr)


class GlobalCountLoss(Protocol):
    """A loss normalised by a count over the global batch (``Method.global_normaliser``):
    under data parallelism it sums this rank's count over all ranks with ``reduce_count``."""

    reduce_count: Callable[[float], float] | None


class Trainer:
    """Model, optimiser, schedule, EMA and loss state of one run; ``fit`` runs the epochs."""

    def __init__(
        self,
        config: ExperimentConfig,
        data: TrainData,
        output_dir: str | os.PathLike[str],
        log: Callable[[str], None] | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.config, self.data = config, data
        self.output_dir = Path(output_dir)
        self.say = log or logger.info
        self.dist = DistContext.current()
        seed_everything(config.seed)
        if device is None:
            try:
                device = pick_device("cuda" if config.training.use_gpu else "cpu")
            except RuntimeError as exc:
                raise RuntimeError(f"training.use_gpu is true: {exc}") from None
        self.device = device
        self.method: Method = build_method(config.model)
        self.divisible_by = self.method.divisible_by
        self.num_classes = config.network_classes(len(data.label_names))
        self.model = self.method.build_network(data.in_dim, self.num_classes).to(self.device)
        self.ema = ModelEMA(
            self.model, config.training.ema_decay, warmup=config.training.ema_warmup
        )
        t = config.training
        self.criterion: torch.nn.Module = self.method.build_loss(self.num_classes, t)
        # what runs forward and backward: the model itself, or its DDP wrapper, which
        # averages gradients over the ranks during backward
        self.network: torch.nn.Module = self.model
        # each rank's loss is its share of the global batch's sum over the global normaliser;
        # DDP averages gradients, so scale by the world size to get the gradient of the total
        self.loss_scale = 1
        if self.dist.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device] if self.device.type == "cuda" else None
            self.network = DistributedDataParallel(self.model, device_ids=ids)
            if self.method.global_normaliser:
                counted = cast(GlobalCountLoss, self.criterion)
                counted.reduce_count = lambda n: self.dist.sum([n], self.device)[0]
                self.loss_scale = self.dist.world_size
        self.sampler = ShardedBatchSampler(
            len(data.pairs), t.batch_size, self.dist.rank, self.dist.world_size, config.seed
        )
        self.optimizer = make_optimizer(self.model, t)
        self.steps_per_epoch = len(self.sampler)
        self.scheduler = warmup_schedule(
            self.optimizer,
            t.warmup_epochs * self.steps_per_epoch,
            t.epochs * self.steps_per_epoch,
            after=t.schedule,
            warmup_shape=t.warmup_shape,
        )
        self.amp = self.device.type == "cuda" and t.amp
        self.epoch = 0  # epochs completed
        self.history: list[EpochRow] = []
        # the last evaluation's detections (rank 0, after ``fit``): what predictions.json holds,
        # kept as arrays for whoever logs them
        self.detections: Detections | None = None
        self._assets: InferenceAssets | None = None
        self._assets_built = False
        self.loss_terms: set[str] = set()  # names of the method's loss terms seen so far

    # ------------------------------------------------------------------ one epoch

    def loader(self, epoch: int) -> DataLoader:
        """This rank's share of each global batch of pairs in ``epoch``."""
        self.data.pairs.set_epoch(epoch)  # the base's crops, and partners drawn per epoch
        self.sampler.set_epoch(epoch)
        return DataLoader(
            self.data.pairs,
            batch_sampler=self.sampler,
            collate_fn=partial(collate_pairs, divisible_by=self.divisible_by),
        )

    def step(self, first: Batch, second: Batch) -> dict[str, float]:
        """Forward, loss, backward and update on one batch of pairs."""
        dev = self.device
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.amp):
            losses = self.method.loss_terms(
                self.network, self.criterion, first, second, self.num_classes, dev
            )
        self.loss_terms.update(losses)
        self.optimizer.zero_grad(set_to_none=True)
        (losses["loss"] * self.loss_scale).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), self.config.training.grad_clip
        )
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        return {k: float(v.detach()) for k, v in losses.items()} | {"grad_norm": float(grad_norm)}

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the pairs; mean losses, learning rate and samples (videos) per
        second, over all ranks."""
        self.network.train()
        sums: dict[str, float] = {}
        batches, samples = 0, 0
        start = time.perf_counter()
        for first, second in self.loader(epoch):
            for k, v in self.step(first, second).items():
                sums[k] = sums.get(k, 0.0) + v
            batches += 1
            samples += len(first) + len(second)
        seconds = time.perf_counter() - start
        # the losses of one step add up over the ranks; the gradient norm is the same on all
        keys = [k for k in sums if k != "grad_norm"]
        totals = self.dist.sum([sums[k] for k in keys] + [float(samples)], self.device)
        sums.update(zip(keys, totals[:-1], strict=True))
        samples = int(totals[-1])
        row: EpochRow = {k: v / max(batches, 1) for k, v in sums.items()}
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["samples_per_second"] = samples / seconds if seconds > 0 else 0.0
        row["seconds"] = seconds
        return row

    # ------------------------------------------------------------------ evaluation

    @property
    def assets(self) -> InferenceAssets | None:
        """What the method keeps with the model for inference, built once on first use."""
        if not self._assets_built:
            self._assets = self.method.inference_assets(self.data.train_full)
            self._assets_built = True
        return self._assets

    def predict(self, dataset: FeatureDataset) -> Detections:
        """Detections of ``dataset`` with the EMA weights."""
        return predict(
            self.ema.module,
            self.method,
            dataset,
            self.data.label_names,
            self.device,
            post=PostprocessSettings.from_config(self.config.inference, self.data.label_names),
            assets=self.assets,
        )

    def evaluate(self) -> tuple[DetectionResult, Detections]:
        detections = self.predict(self.data.val)
        result = evaluate_detection(
            self.data.annotations,
            detections,
            self.config.evaluation.subset,
            self.config.evaluation.tiou_thresholds,
        )
        return result, detections

    # ------------------------------------------------------------------ state

    def state(self) -> CheckpointState:
        assets = self.assets
        return CheckpointState(
            epoch=self.epoch,
            model=self.model.state_dict(),
            ema=self.ema.state_dict(),
            ema_updates=self.ema.updates,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            criterion=self.criterion.state_dict(),
            torch_rng=torch.get_rng_state(),
            config=json.loads(json.dumps(self.config.to_yaml_dict())),
            label_names=list(self.data.label_names),
            in_dim=self.data.in_dim,
            modalities=list(self.config.features.modalities),
            feature_attrs=_plain(dict(self.data.store.attrs)),
            history=self.history,
            assets=dict(assets.to_state()) if assets is not None else None,
        )

    def load_state(self, state: CheckpointState) -> None:
        self.model.load_state_dict(state.model)
        self.ema.load_state_dict(state.ema, int(state.ema_updates))
        self.optimizer.load_state_dict(state.optimizer)
        self.scheduler.load_state_dict(state.scheduler)
        self.criterion.load_state_dict(state.criterion)
        if state.torch_rng is not None:
            torch.set_rng_state(state.torch_rng)
        self.epoch = int(state.epoch)
        self.history = list(state.history)

    # ------------------------------------------------------------------ the run

    def fit(self, on_epoch: EpochCallback | None = None) -> TrainMetrics:
        """Train from ``self.epoch`` to ``training.epochs``; returns the final metrics.

        Rank 0 evaluates, saves the checkpoint after every epoch and writes the outputs; every
        rank then calls ``on_epoch(row, checkpoint)`` (the path on rank 0, else None), which
        is where a launcher reports progress. Other ranks return only the history.
        """
        t = self.config.training
        main = self.dist.is_main
        ckpt = self.output_dir / "checkpoint.pt"
        result: DetectionResult | None = None
        detections: Detections | None = None
        start = time.perf_counter()
        for epoch in range(self.epoch + 1, t.epochs + 1):
            row: EpochRow = {"epoch": epoch, **self.train_epoch(epoch)}
            if main and (epoch % t.eval_every == 0 or epoch == t.epochs):
                result, detections = self.evaluate()
                row["val_average_mAP"] = result.average_mAP
                for tiou, value in zip(result.tiou, result.mAP, strict=True):
                    row[f"val_mAP_{tiou:.2f}"] = value
            self.epoch = epoch
            self.history.append(row)
            if main:
                save_checkpoint(self.state(), ckpt)
                self.say(_epoch_line(row, t.epochs, self.loss_terms))
            if on_epoch is not None:
                on_epoch(row, ckpt if main else None)
        if not main:
            return TrainMetrics(history=self.history)
        if result is None or detections is None:  # resumed after the last epoch
            result, detections = self.evaluate()
        write_predictions(detections, self.output_dir / "predictions.json")
        self.detections = detections
        metrics = TrainMetrics(
            history=self.history,
            tiou=list(result.tiou),
            mAP=list(result.mAP),
            average_mAP=result.average_mAP,
            per_class_ap=dict(result.per_class_ap),
            subset=self.config.evaluation.subset,
            method=self.method.describe(),
            epochs=self.epoch,
            seconds=time.perf_counter() - start,
        )
        metrics.write(self.output_dir / "metrics.json")
        return metrics


EpochCallback = Callable[[EpochRow, Path | None], None]


@dataclass
class TrainMetrics:
    """A finished run: its per-epoch history and the last evaluation (rank 0 only)."""

    history: list[EpochRow]
    tiou: list[float] = field(default_factory=list)
    mAP: list[float] = field(default_factory=list)
    average_mAP: float | None = None
    per_class_ap: dict[str, list[float]] = field(default_factory=dict)
    subset: str = ""
    method: str = ""
    epochs: int = 0
    seconds: float = 0.0

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(asdict(self), indent=1) + "\n")


def _epoch_line(row: EpochRow, epochs: int, loss_terms: set[str]) -> str:
    """One epoch's log line: the total loss, then the method's other loss terms."""
    terms = ", ".join(
        f"{key.removesuffix('_loss')} {value:.3f}"
        for key, value in row.items()
        if key in loss_terms and key != "loss"
    )
    line = (
        f"epoch {row['epoch']}/{epochs}: loss {row['loss']:.3f} ({terms}), lr {row['lr']:.2e}, "
        f"{row['samples_per_second']:.1f} videos/s"
    )
    if "val_average_mAP" in row:
        line += f", val average mAP {row['val_average_mAP']:.4f}"
    return line


def _plain(value: dict[str, object]) -> dict[str, object]:
    """Store attributes as plain JSON data (safe for ``weights_only`` loading)."""
    return json.loads(json.dumps(value, default=str))


def prepare_trainer(
    config: ExperimentConfig,
    annotations: str | os.PathLike[str],
    store: str | os.PathLike[str],
    pairs: str | os.PathLike[str] | None,
    output_dir: str | os.PathLike[str],
    log: Callable[[str], None] | None = None,
    device: torch.device | None = None,
    data: TrainData | None = None,
) -> Trainer:
    """Data (``data`` when the caller loaded it already, in this process) and a fresh Trainer
    for ``config``; reports what was left out."""
    say = log or logger.info
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_config(config))
    if data is None:
        data = load_data(config, annotations, store, pairs)
    for note in data.notes:
        say(note)
    if data.train.missing or data.val.missing:
        say(
            f"not in the feature store (left out): {len(data.train.missing)} training, "
            f"{len(data.val.missing)} {config.evaluation.subset} videos"
        )
    trainer = Trainer(config, data, out, log=say, device=device)
    say(
        f"training {trainer.method.describe()} on {len(data.train)} videos / "
        f"{len(data.pairs)} pairs, "
        f"{data.in_dim}-d features, {len(data.label_names)} classes, device {trainer.device}"
        + (
            f", rank {trainer.dist.rank} of {trainer.dist.world_size}"
            if trainer.dist.active
            else ""
        )
    )
    return trainer


def train_localizer(
    config: ExperimentConfig,
    annotations: str | os.PathLike[str],
    store: str | os.PathLike[str],
    pairs: str | os.PathLike[str] | None,
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    log: Callable[[str], None] | None = None,
) -> TrainMetrics:
    """Train as ``config`` says; leaves OUTPUT_DIR/checkpoint.pt, metrics.json, predictions."""
    say = log or logger.info
    trainer = prepare_trainer(config, annotations, store, pairs, output_dir, log=say)
    ckpt = Path(output_dir) / "checkpoint.pt"
    if resume and ckpt.is_file():
        from tal.engine.checkpoint import load_checkpoint

        trainer.load_state(load_checkpoint(ckpt))
        say(f"resumed from {ckpt} after epoch {trainer.epoch}")
    return trainer.fit()


def config_from_checkpoint(state: CheckpointState) -> ExperimentConfig:
    """The config a checkpoint was trained with."""
    return config_from_dict(dict(state.config), "checkpoint config")
