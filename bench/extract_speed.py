"""Extraction speed: the whole Ray pipeline against the network's forward pass alone.

    python bench/extract_speed.py [--config configs/demo.yaml] [--videos 6]
                                  [--modalities rgb] [--set key=value ...] [--no-page]

On synthetic videos made with the config's ``data.synth`` settings (``--videos`` of them),
with the config's ``features`` settings (the demo: 112 px, 16-frame clips, stride 4, 15 fps):

- forward only: the I3D forward pass on clips decoded beforehand and held in memory, in this
  process with all cores' threads: the rate the network alone allows;
- pipeline: ``run_extraction`` (decoding, flow, prefetch, Ray actors, writing the Zarr store)
  with 1 worker and with 2 workers, timed from when the workers are ready to the last video
  written (start-up is printed apart).

Prints clips per second of each, the pipeline / forward-only ratios and the 2-worker speed-up,
and writes them to ``docs/results/extract_speed.md`` (``--modalities rgb flow``:
``extract_speed_rgb_flow.md``; ``--page NAME`` to choose, ``--no-page``: print only).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import torch
from results_page import Transcript, add_page_flag, code_block, write_results_page

from features.extractor import VideoExtractor
from features.weights import resolve_i3d
from pipelines.extract import clip_settings, list_videos, run_extraction
from pipelines.synth import ensure_synth_dataset
from tal.config import load_config


def forward_only(features, files: list[Path], repeat: int = 2) -> tuple[float, int]:
    """Clips per second of the networks alone on pre-decoded clips of ``files``."""
    models = {
        m: resolve_i3d(features.weights if m == "rgb" else features.flow_weights, m)[0]
        for m in features.modalities
    }
    settings = dataclasses.replace(clip_settings(features), prefetch=0)
    extractor = VideoExtractor(models, settings, features.device)
    batches: list[tuple[str, np.ndarray]] = []
    for path in files:
        batches += list(extractor.clip_batches(path)[1])
    clips = sum(len(b) for _, b in batches)
    extractor.forward(*batches[0])  # warm-up: allocator, kernels
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for modality, batch in batches:
            extractor.forward(modality, batch)
        best = min(best, time.perf_counter() - t0)
    return clips / best, clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--videos", type=int, default=6, help="synthetic videos to extract")
    parser.add_argument("--modalities", nargs="+", default=["rgb"], choices=["rgb", "flow"])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/bench/extract")
    parser.add_argument(
        "--page",
        default=None,
        help="docs/results/PAGE.md to write (default extract_speed, or "
        "extract_speed_rgb_flow with both streams)",
    )
    add_page_flag(parser, "PAGE")
    args = parser.parse_args()
    if args.page is None:
        streams = list(dict.fromkeys(args.modalities))
        args.page = "extract_speed" if streams == ["rgb"] else "_".join(["extract_speed", *streams])
    say = Transcript()

    out = Path(args.out)
    overrides = [
        f"data.root={out / 'data'}",
        f"data.synth.videos={args.videos}",
        f"features.modalities=[{','.join(args.modalities)}]",
        *args.set,
    ]
    config = load_config(args.config, overrides)
    ensure_synth_dataset(config)
    features = config.features
    files = list(list_videos(config.data.videos, config.data.video_extensions).values())
    cores = os.cpu_count() or 1
    say(
        f"{len(files)} videos, streams {'+'.join(features.modalities)}, {features.input_size} px, "
        f"{features.clip_length}-frame clips, stride {features.stride}, {features.fps} fps, "
        f"batch {features.batch_size}, flow {features.flow_method}, {cores} cores, "
        f"device {features.device}"
    )

    torch.set_num_threads(cores)
    reference, clips = forward_only(features, files)
    say(f"forward only (pre-decoded, {cores} threads): {reference:.2f} clips/s over {clips} clips")

    rates = {}
    for workers in args.workers:
        summary = run_extraction(
            config.data.videos,
            out / f"store_{workers}w.zarr",
            features,
            workers=workers,
            overwrite=True,
            log=lambda _line: None,
            progress_stream=open(os.devnull, "w"),  # noqa: SIM115 - closed with the process
        )
        if summary.failed or summary.clips != clips:
            raise SystemExit(
                f"pipeline run with {workers} workers was incomplete: {summary.line()}"
            )
        rates[workers] = summary.clips_per_second
        say(
            f"pipeline, {workers} worker{'s' if workers > 1 else ''}: {rates[workers]:.2f} clips/s "
            f"({summary.clips} clips in {summary.seconds:.1f} s after {summary.startup_seconds:.1f} s "
            f"start-up); ratio to forward only {rates[workers] / reference:.2f}"
        )
    if 1 in rates and 2 in rates:
        say(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")
    if not args.no_page:
        write_results_page(
            args.page,
            f"Extraction speed: the Ray pipeline against the forward pass ({'+'.join(features.modalities)})",
            f"`{args.config}`'s feature settings on {len(files)} synthetic videos: the "
            "network's forward pass alone on pre-decoded clips, then the whole pipeline "
            "(decoding, flow, Ray actors, writing the store) with each worker count.\n\n"
            + code_block(say.lines),
        )


if __name__ == "__main__":
    main()
