"""Backbone fine-tuning through the training launcher: Ray Train workers, MLflow, registry.

    tal train-backbone --config C --output WEIGHTS.pt [--num-workers N] [--resume]
    python -m pipelines.train_backbone --config C --output WEIGHTS.pt     (`ray job submit`)

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

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
from tal.config import ExperimentConfig, config_from_dict

SCORE = "val_accuracy"


@dataclass
class BackboneOutcome:
    report: dict[str, Any]
    output: Path
    run_id: str
    tracking_uri: str
    workers: int
    registration: Any = None


def _save_state(state: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def _load_state(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def registered_backbone_name(config: ExperimentConfig) -> str:
    return f"{config.dataset}-{config.features.extractor}-{config.backbone.modality}"


def backbone_loop(cfg: dict[str, Any]) -> dict[str, Any]:
    """One worker's backbone training (Ray Train calls it on every worker; 0 workers: here)."""
    from tal.backbone.train import BackboneTrainConfig, train_backbone

    config = config_from_dict(cfg["config"], "backbone run config")
    output = Path(cfg["output"])
    checkpoint = output.with_name(f"{output.stem}.checkpoint.pt")
    session = make_session(cfg, checkpoint)
    main = session.rank == 0
    run = RunLogger(cfg["tracking_uri"], cfg["run_id"]) if main else None
    state = session.latest_state(_load_state)

    def on_epoch(row: dict[str, Any], epoch_state: dict[str, Any] | None) -> None:
        path = _save_state(epoch_state, checkpoint) if epoch_state is not None else None
        if run is not None:
            run.log_epoch(row)
        session.report(row, path)
        maybe_fault(int(row["epoch"]), session.rank)

    report = train_backbone(
        cfg["videos"], cfg["annotations"], output, BackboneTrainConfig.from_experiment(config),
        log=session.say if main else (lambda _m: None), on_epoch=on_epoch,
        resume_state=state, device=session.device(),
    )  # fmt: skip
    if run is None:
        return report
    run.log_artifact(output, "weights")
    if cfg["register"]:
        from features.weights import resolve_network
        from pipelines.registry import log_model, register

        network, _ = resolve_network(
            config.features.extractor, str(output), config.backbone.modality
        )
        model_uri = log_model(cfg["tracking_uri"], cfg["run_id"], network)
        registration = register(
            cfg["tracking_uri"], cfg["run_id"], model_uri, registered_backbone_name(config),
            float(report["val_accuracy"]), SCORE,
        )  # fmt: skip
        session.say(registration.line())
        report["registration"] = registration.__dict__
    run.log_dict(report, "backbone_report.json")
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
    loop_cfg = {
        "config": config.to_yaml_dict(), "videos": videos, "annotations": annotations,
        "output": str(output), "tracking_uri": uri, "run_id": run_id, "resume": resume,
        "ray": workers > 0, "register": register,
    }  # fmt: skip
    with run_status(uri, run_id) as mlflow:
        if workers == 0:
            report = backbone_loop(loop_cfg)
        else:
            log(f"Ray Train: {workers} workers for the {b.modality} backbone")
            ray_fit(backbone_loop, loop_cfg, config, workers, run_name, _load_state)
            with tempfile.TemporaryDirectory() as folder:  # rank 0's report, from the run
                local = mlflow.download_artifacts(run_id, "backbone_report.json", folder)
                report = json.loads(Path(local).read_text())
    registration = report.pop("registration", None)
    return BackboneOutcome(report, output, run_id, uri, workers, registration)


def main() -> None:
    from pipelines.cli import run_module

    run_module("train-backbone")


if __name__ == "__main__":
    main()
