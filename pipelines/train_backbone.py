"""Backbone fine-tuning through the training launcher: Ray Train workers, MLflow, registry.

    tal train-backbone --config C --output WEIGHTS.pt [--num-workers N] [--resume]
    python -m pipelines train-backbone --config C --output WEIGHTS.pt     (`ray job submit`)

The recognition loop of ``tal.backbone.train`` runs on ``backbone.num_workers`` Ray Train
workers (scaling, fault tolerance and checkpoints as for the localizer, see
``pipelines.train``), or in this process with 0. Its MLflow run (kind ``backbone``) has the
config, per-epoch losses and clip accuracies, the report and the weights file; the network
is logged with ``mlflow.pytorch`` and registered as ``DATASET-EXTRACTOR-MODALITY`` (e.g.
``synth-i3d-flow``, ``synth-ata-rgb``), where
``champion`` follows the best validation clip accuracy. ``tal extract --weights WEIGHTS.pt``
uses the weights.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from features.atomic import atomic_path
from pipelines.registry import Registration
from pipelines.tracking import RunLogger, check_tracking, tracking_uri
from pipelines.train import (
    TrainLaunchError,
    absolute_location,
    check_workers,
    make_session,
    maybe_fault,
    open_run,
    ray_fit,
    run_status,
)
from tal.backbone.train import BackboneReport, BackboneState
from tal.config import ExperimentConfig, config_from_text, dump_config

SCORE = "val_accuracy"


@dataclass
class BackboneJob:
    """What each Ray Train worker (or this process) is given for backbone training; passed
    to Ray Train as its fields (``asdict``), the config as validated YAML text."""

    config_yaml: str
    videos: str
    annotations: str
    output: str
    tracking_uri: str
    run_id: str
    resume: bool
    on_ray: bool
    register: bool

    def experiment(self) -> ExperimentConfig:
        return config_from_text(self.config_yaml, "backbone run config")


@dataclass
class BackboneOutcome:
    report: BackboneReport
    output: Path
    run_id: str
    tracking_uri: str
    workers: int
    registration: Registration | None = None


def _save_state(state: BackboneState, path: Path) -> Path:
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        torch.save(state, file)
    return path


def _load_state(path: Path) -> BackboneState:
    return torch.load(path, map_location="cpu", weights_only=True)


def registered_backbone_name(config: ExperimentConfig) -> str:
    return f"{config.dataset}-{config.features.extractor}-{config.backbone.modality}"


def backbone_loop(fields: dict[str, object]) -> BackboneReport | None:
    """One worker's backbone training (Ray Train calls it on every worker with the
    ``BackboneJob``'s fields; 0 workers: here)."""
    from tal.backbone.train import BackboneTrainConfig, train_backbone

    job = BackboneJob(**fields)  # type: ignore[arg-type]
    config = job.experiment()
    output = Path(job.output)
    checkpoint = output.with_name(f"{output.stem}.checkpoint.pt")
    session = make_session(job, checkpoint)
    main = session.rank == 0
    run = RunLogger(job.tracking_uri, job.run_id) if main else None
    state = session.latest_state(_load_state)

    def on_epoch(row: dict[str, float], epoch_state: BackboneState | None) -> None:
        path = _save_state(epoch_state, checkpoint) if epoch_state is not None else None
        if run is not None:
            run.log_epoch(row)
        session.report(row, path)
        maybe_fault(int(row["epoch"]), session.rank)

    report = train_backbone(
        job.videos,
        job.annotations,
        output,
        BackboneTrainConfig.from_experiment(config),
        log=session.say if main else (lambda _m: None),
        on_epoch=on_epoch,
        resume_state=state,
        device=session.device(),
    )
    if run is None or report is None:
        return report
    run.log_artifact(output, "weights")
    logged = report.to_dict()
    if job.register:
        from features.weights import resolve_network
        from pipelines.registry import log_model, register
        from tal.engine.model_files import write_model_dir

        network, meta = resolve_network(
            config.features.extractor, str(output), config.backbone.modality
        )
        description: dict[str, object] = {
            "extractor": config.features.extractor,
            "modality": config.backbone.modality,
            "origin": str(meta.get("origin", "")),
            "digest": str(meta.get("digest", "")),
            "class_names": list(report.class_names),
        }
        with tempfile.TemporaryDirectory(prefix="tal-model-") as folder:
            write_model_dir(folder, "extractor", description, network.state_dict())
            model_uri = log_model(
                job.tracking_uri,
                job.run_id,
                folder,
                "extractor",
                {SCORE: float(report.val_accuracy)},
                len(report.epochs),
            )
        registration = register(
            job.tracking_uri,
            job.run_id,
            model_uri,
            registered_backbone_name(config),
            float(report.val_accuracy),
            SCORE,
            description=(
                f"{config.features.extractor} {config.backbone.modality} backbone fine-tuned on "
                f"{report.train_clips} clips of {len(report.class_names)} classes from "
                f"{meta.get('origin', 'unknown')}; {SCORE} {report.val_accuracy:.4f} on "
                f"{report.val_clips} clips"
            ),
            model_description=(
                f"{config.features.extractor} {config.backbone.modality} feature extractor for "
                f"{config.dataset}, registered by `tal train-backbone`; the alias champion "
                f"follows the best {SCORE}."
            ),
        )
        session.say(registration.line())
        logged["registration"] = asdict(registration)
    run.log_dict(logged, "backbone_report.json")
    return report


def run_backbone_training(
    config: ExperimentConfig,
    output: str | os.PathLike[str],
    videos: str | os.PathLike[str] | None = None,
    annotations: str | os.PathLike[str] | None = None,
    num_workers: int | None = None,
    resume: bool = False,
    register: bool = True,
    log: Callable[[str], None] = print,
) -> BackboneOutcome:
    """Fine-tune the backbone as ``config.backbone`` says, tracked and registered."""
    videos = absolute_location(videos or config.data.videos)
    annotations = absolute_location(annotations or config.data.annotations)
    output = Path(absolute_location(output))
    workers = config.backbone.num_workers if num_workers is None else num_workers
    check_workers(workers, config.backbone.batch_size, "clips", "backbone.batch_size")
    for path, what in ((videos, "videos folder"), (annotations, "annotation file")):
        if not Path(path).exists():
            raise TrainLaunchError(f"{path}: {what} not found")
    uri = tracking_uri(config)
    check_tracking(uri)
    b = config.backbone
    run_name, run_id, _ = open_run(
        config,
        uri,
        "backbone",
        resume,
        log,
        lambda: {
            "method": f"{config.features.extractor}-{b.modality}",
            "init": str(b.init),
            "workers": str(workers),
        },
    )
    job = BackboneJob(
        config_yaml=dump_config(config),
        videos=videos,
        annotations=annotations,
        output=str(output),
        tracking_uri=uri,
        run_id=run_id,
        resume=resume,
        on_ray=workers > 0,
        register=register,
    )
    with run_status(uri, run_id) as mlflow:
        if workers > 0:
            log(f"Ray Train: {workers} workers for the {b.modality} backbone")
            ray_fit(backbone_loop, asdict(job), config, workers, run_name, _load_state)
        else:
            backbone_loop(asdict(job))
        with tempfile.TemporaryDirectory() as folder:  # rank 0's report, as the run logged it
            local = mlflow.download_artifacts(run_id, "backbone_report.json", folder)
            logged = json.loads(Path(local).read_text())
    registration = logged.pop("registration", None)
    return BackboneOutcome(
        BackboneReport(**logged),
        output,
        run_id,
        uri,
        workers,
        Registration(**registration) if registration else None,
    )
