"""The embedded-default job of `make demo`: data, a trivial baseline, evaluation, a summary.

    python -m pipelines demo --config configs/demo.yaml [--set key=value ...]

At this stage the demo generates (or reuses) the synthetic benchmark, runs the motion-energy
baseline on the evaluation subset with decord and scores it with the exact evaluator; later
stages (features, training, registry) grow it into the whole pipeline.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from features.video import find_video_file, read_frames
from pipelines.synth import ensure_synth_dataset
from tal.baselines.motion import class_priors, motion_baseline_detections, motion_energy
from tal.config import ExperimentConfig, dump_config
from tal.data.annotations import load_annotations
from tal.data.predictions import Detections, write_predictions
from tal.evaluation.detection import DetectionResult, evaluate_detection


@dataclass
class DemoSummary:
    annotations: Path
    predictions: Path
    result_file: Path
    result: DetectionResult
    seconds: float


def run_demo(config: ExperimentConfig, log=print) -> DemoSummary:
    """Run the demo job described by ``config``; every output goes under ``run_dir``."""
    t0 = time.perf_counter()
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(config))
    ann_path = ensure_synth_dataset(config, log=log)
    annotations = load_annotations(ann_path)
    priors = class_priors(annotations.subset(*config.data.train_subsets))
    subset = config.evaluation.subset
    videos = annotations.subset(subset)
    log(f"motion-energy baseline on {len(videos)} {subset} videos (decord)")
    rows = []
    for video in videos:
        path = find_video_file(config.data.videos, video.video_id, config.data.video_extensions)
        frames = read_frames(path)
        fps = video.fps or 30.0
        rows += motion_baseline_detections(video.video_id, motion_energy(frames), fps, priors)
    detections = Detections.from_rows(rows)
    pred_path = write_predictions(detections, run_dir / "baseline_predictions.json")
    result = evaluate_detection(annotations, detections, subset, config.evaluation.tiou_thresholds)
    result_path = run_dir / "baseline_eval.json"
    result_path.write_text(json.dumps(result.to_json(), indent=1) + "\n")
    return DemoSummary(ann_path, pred_path, result_path, result, time.perf_counter() - t0)
