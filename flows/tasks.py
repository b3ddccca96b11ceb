"""Prefect tasks: each calls one pipeline step and keeps no science of its own.

Tasks take the config path and ``--set`` overrides (plain, serialisable parameters) and load
the config themselves. Progress goes through Prefect's run logger. Work already done is
skipped by the pipelines themselves (complete videos in the store) or here (pairs built from
the same inputs). Retries are set where a retry can help: extraction (a node or actor lost),
training (a worker group that failed beyond Ray Train's own restarts resumes from its last
checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from tal.config import ExperimentConfig, load_config


def _config(config: str, overrides: list[str] | None) -> ExperimentConfig:
    return load_config(config, list(overrides or []))


def _log():
    return get_run_logger().info


@task(name="synthetic-dataset", retries=1)
def synth_dataset(config: str, overrides: list[str] | None = None) -> str | None:
    """Generate the synthetic dataset when the config describes one (reused when present)."""
    from pipelines.synth import ensure_synth_dataset

    cfg = _config(config, overrides)
    if cfg.data.synth is None:
        return None
    return str(ensure_synth_dataset(cfg, log=_log()))


@task(name="train-backbone", retries=1)
def train_backbone(
    config: str, overrides: list[str] | None, modality: str, output: str
) -> dict[str, Any]:
    """Train one stream of the extractor's network (skipped when ``output`` exists: delete it
    to retrain)."""
    from pipelines.train_backbone import run_backbone_training

    log = _log()
    if Path(output).is_file():
        log(f"{output} exists: backbone training skipped")
        return {"output": output, "skipped": True}
    cfg = _config(config, [*(overrides or []), f"backbone.modality={modality}"])
    outcome = run_backbone_training(cfg, output, log=log)
    return {
        "output": output,
        "skipped": False,
        "run_id": outcome.run_id,
        "val_accuracy": outcome.report.val_accuracy,
    }


@task(name="extract-features", retries=2, retry_delay_seconds=10)
def extract_features(config: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Fill the feature store; complete videos are skipped, so a retry or re-run resumes."""
    from pipelines.extract import extract_from_config

    cfg = _config(config, overrides)
    summary = extract_from_config(cfg, log=_log())
    _log()(summary.line())
    return {
        "store": str(cfg.features.store),
        "done": summary.done,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "seconds": summary.seconds,
    }


@task(name="build-pairs")
def build_pairs(config: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Cross-video pairs of the training videos in the store (skipped when current)."""
    from pipelines.pairs import build_pairs_from_config, pairs_are_current, pairs_inputs

    cfg = _config(config, overrides)
    log = _log()
    store = str(cfg.features.store)
    inputs = pairs_inputs(cfg, cfg.data.annotations, store)
    if pairs_are_current(cfg.pairs.output, inputs):
        log(f"{cfg.pairs.output} is up to date with its inputs: not rebuilt")
        return {"pairs": str(cfg.pairs.output), "skipped": True}
    result = build_pairs_from_config(cfg, cfg.data.annotations, store=store, log=log)
    return {"pairs": str(cfg.pairs.output), "skipped": False, "rows": result.table.num_rows}


@task(name="train-model", retries=1, retry_delay_seconds=10)
def train_model(config: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Ray Train training with MLflow tracking and registration; a retry resumes the run."""
    from prefect.context import get_run_context

    from pipelines.train import run_training

    cfg = _config(config, overrides)
    retry = get_run_context().task_run.run_count > 1
    outcome = run_training(cfg, resume=retry, log=_log())
    reg = outcome.registration
    registered = None
    if reg is not None:
        registered = {
            "name": reg.name,
            "version": reg.version,
            "promoted": reg.promoted,
            "line": reg.line(),
        }
    return {
        "run_id": outcome.run_id,
        "experiment_id": outcome.experiment_id,
        "tracking_uri": outcome.tracking_uri,
        "output": str(outcome.output),
        "val_average_mAP": outcome.metrics["val_average_mAP"],
        "mAP": {k: v for k, v in outcome.metrics.items() if k.startswith("val_mAP_")},
        "registered": registered,
    }


@task(name="evaluate-model")
def evaluate_model(
    config: str, overrides: list[str] | None, checkpoint: str, run_id: str | None = None
) -> dict[str, Any]:
    """Score a trained checkpoint on the config's test subset; logged to its MLflow run."""
    from pipelines.tracking import RunLogger, tracking_uri
    from tal.data.predictions import write_predictions
    from tal.engine.inference import infer_from_checkpoint

    cfg = _config(config, overrides)
    subset = cfg.data.test_subset
    detections, facts = infer_from_checkpoint(
        checkpoint, cfg.data.annotations, cfg.features.store, subset, log=_log()
    )
    out = Path(checkpoint).parent / f"predictions_{subset}.json"
    write_predictions(detections, out)
    result = facts.result
    summary = {"subset": subset, "videos": facts.videos, "predictions": str(out)}
    if result is not None:
        summary |= {"average_mAP": result.average_mAP, "tiou": result.tiou, "mAP": result.mAP}
        _log()(f"{subset} average mAP {result.average_mAP:.4f} on {facts.videos} videos")
        if run_id is not None:
            run = RunLogger(tracking_uri(cfg), run_id)
            metrics = {
                f"{subset}_mAP_{t:.2f}": m for t, m in zip(result.tiou, result.mAP, strict=True)
            }
            run.log_epoch(
                {
                    "epoch": cfg.training.epochs,
                    f"{subset}_average_mAP": result.average_mAP,
                    **metrics,
                }
            )
            run.log_artifact(out)
    return summary


@task(name="predict-videos")
def predict_videos(
    config: str,
    overrides: list[str] | None,
    videos: list[str],
    model_uri: str,
    output: str,
    plot: str | None = None,
) -> dict[str, Any]:
    """Featurise and localize video files with a registered model; predictions and timeline."""
    from pipelines.predict import predict_videos as predict
    from pipelines.predict import write_outputs
    from pipelines.tracking import tracking_uri

    cfg = _config(config, overrides)
    result = predict(model_uri, videos, tracking_uri(cfg), log=_log())
    annotations = cfg.data.annotations if Path(cfg.data.annotations).is_file() else None
    write_outputs(result, output, plot, annotations)
    return {
        "predictions": output,
        "plot": plot,
        "videos": len(result.durations),
        "detections": len(result.detections),
        "failed": result.failed,
    }
