"""Prefect flows: each pipeline step on its own, and ``tal-pipeline`` composing them all.

    python -m flows.pipeline --config configs/demo.yaml [--set key=value ...]

Every flow takes ``config`` (a YAML path) and ``overrides`` (``dotted.key=value`` strings),
so a deployment run can change anything a config can. ``tal-pipeline`` runs: the synthetic
dataset when the config describes one, backbone fine-tuning for the streams in
``backbone.fine_tune``, extraction, pairs, Ray Train training with MLflow tracking and
registration, evaluation on the test subset, prediction on the test videos with the
``champion`` model and a timeline; it publishes a markdown artifact with the mAP table and the
MLflow links. A re-run reuses the dataset, the complete videos of the store and current pairs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from prefect import flow

from flows import tasks
from tal.config import load_config


def _sets(overrides: list[str] | None) -> list[str]:
    return list(overrides or [])


@flow(name="train-backbone")
def train_backbone_flow(
    config: str = "configs/demo.yaml",
    overrides: list[str] | None = None,
    modality: str = "rgb",
    output: str | None = None,
) -> dict[str, Any]:
    cfg = load_config(config, _sets(overrides))
    output = output or str(Path(cfg.run_dir) / f"backbone_{modality}.pt")
    return tasks.train_backbone(config, _sets(overrides), modality, output)


@flow(name="extract-features")
def extract_features_flow(
    config: str = "configs/demo.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    tasks.synth_dataset(config, _sets(overrides))
    return tasks.extract_features(config, _sets(overrides))


@flow(name="build-pairs")
def build_pairs_flow(
    config: str = "configs/demo.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    return tasks.build_pairs(config, _sets(overrides))


@flow(name="train-model")
def train_model_flow(
    config: str = "configs/demo.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    return tasks.train_model(config, _sets(overrides))


@flow(name="evaluate-model")
def evaluate_model_flow(
    config: str = "configs/demo.yaml",
    overrides: list[str] | None = None,
    checkpoint: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    cfg = load_config(config, _sets(overrides))
    checkpoint = checkpoint or str(Path(cfg.run_dir) / "model" / "checkpoint.pt")
    return tasks.evaluate_model(config, _sets(overrides), checkpoint, run_id)


def _test_videos(config: str, overrides: list[str] | None) -> list[str]:
    """Files of the config's test subset (the held-out videos a demo predicts on)."""
    from features.video import find_video_file
    from tal.data.annotations import load_annotations

    cfg = load_config(config, _sets(overrides))
    ann = load_annotations(cfg.data.annotations)
    return [
        str(find_video_file(cfg.data.videos, v.video_id, cfg.data.video_extensions))
        for v in ann.subset(cfg.data.test_subset)
    ]


@flow(name="predict-videos")
def predict_videos_flow(
    config: str = "configs/demo.yaml",
    overrides: list[str] | None = None,
    videos: list[str] | None = None,
    model_uri: str | None = None,
    output: str | None = None,
    plot: str | None = None,
) -> dict[str, Any]:
    """Predict ``videos`` (default: the config's test subset) with ``model_uri`` (default:
    the champion of the config's registered model)."""
    from pipelines.tracking import registered_model_name

    cfg = load_config(config, _sets(overrides))
    videos = videos or _test_videos(config, overrides)
    model_uri = model_uri or f"models:/{registered_model_name(cfg)}@champion"
    output = output or str(Path(cfg.run_dir) / "predictions_test_videos.json")
    plot = plot or str(Path(cfg.run_dir) / "timeline_test_videos.png")
    return tasks.predict_videos(config, _sets(overrides), videos, model_uri, output, plot)


def summary_markdown(
    extracted: dict, trained: dict, evaluated: dict, predicted: dict, tracking: str
) -> str:
    """The pipeline's result as a markdown table plus where everything is."""
    from pipelines.tracking import ui_links

    rows = [
        f"| {k.removeprefix('val_mAP_')} | {v:.4f} |" for k, v in sorted(trained["mAP"].items())
    ]
    reg = trained.get("registered") or {}
    lines = [
        "# tal-pipeline",
        "",
        "| tIoU | validation mAP |",
        "|---|---|",
        *rows,
        f"| average | {trained['val_average_mAP']:.4f} |",
        "",
    ]
    if "average_mAP" in evaluated:
        lines.append(f"Test subset average mAP: {evaluated['average_mAP']:.4f}.")
    lines += [
        f"- Feature store: `{extracted['store']}` ({extracted['done']} videos extracted now, "
        f"{extracted['skipped']} reused, {extracted['failed']} failed)",
        f"- Checkpoint and outputs: `{trained['output']}`",
        f"- MLflow run `{trained['run_id']}` (experiment {trained['experiment_id']}) at "
        f"`{tracking}`",
        f"- Model: `models:/{reg.get('name')}/{reg.get('version')}`; {reg.get('line', '')}",
        f"- Predictions on {predicted['videos']} held-out videos: `{predicted['predictions']}`, "
        f"timeline `{predicted['plot']}`",
    ]
    links = ui_links(
        tracking, trained["experiment_id"], trained["run_id"], reg.get("name"), reg.get("version")
    )
    lines += [f"- [MLflow {what}]({url})" for what, url in links.items()]
    if tracking.startswith("sqlite:///"):
        lines.append(f"- Open the UI: `mlflow ui --backend-store-uri {tracking}`")
    return "\n".join(lines) + "\n"


@flow(name="tal-pipeline")
def tal_pipeline(
    config: str = "configs/demo.yaml", overrides: list[str] | None = None
) -> dict[str, Any]:
    """Raw videos to a registered model, its evaluation and predictions on held-out videos."""
    from prefect.artifacts import create_markdown_artifact

    sets = _sets(overrides)
    cfg = load_config(config, sets)
    tasks.synth_dataset(config, sets)
    for modality in cfg.backbone.fine_tune:
        weights = str(Path(cfg.run_dir).resolve() / f"backbone_{modality}.pt")
        tasks.train_backbone(config, sets, modality, weights)
        sets.append(f"features.{'weights' if modality == 'rgb' else 'flow_weights'}={weights}")
    extracted = tasks.extract_features(config, sets)
    paired = tasks.build_pairs(config, sets)
    trained = tasks.train_model(config, sets)
    evaluated = tasks.evaluate_model(
        config, sets, str(Path(trained["output"]) / "checkpoint.pt"), trained["run_id"]
    )
    predicted = predict_videos_flow(config, sets)
    markdown = summary_markdown(extracted, trained, evaluated, predicted, trained["tracking_uri"])
    create_markdown_artifact(markdown, key="tal-pipeline-summary", description="tal-pipeline")
    result = {
        "extracted": extracted,
        "pairs": paired,
        "trained": trained,
        "evaluated": evaluated,
        "predicted": predicted,
        "summary": markdown,
    }
    Path(cfg.run_dir, "pipeline_summary.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description="run the tal-pipeline flow")
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    result = tal_pipeline(args.config, args.set)
    print(result["summary"])


if __name__ == "__main__":
    main()
