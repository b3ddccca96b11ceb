"""GPU check: the demo's extraction (float32, bfloat16, float16) and 1-GPU NCCL training on
the accelerator against the CPU path, in one run of a few minutes.

    bash bench/gpu_check.sh            # sets up what it needs, then runs this
    python bench/gpu_check.py [--config configs/demo.yaml] [--cpu-videos 3] [--epochs 10]
                              [--accelerator cuda] [--precisions float32 bfloat16 float16]
                              [--net-size 224] [--net-batch 32] [--out runs/bench/gpu_check]
                              [--page gpu_check | --no-page] [--results-dir DIR]

On the config's data (the demo's synthetic videos, made first where missing) and feature
settings, in this process, without Ray (one extractor, one training process):

1. extraction (decode, flow, I3D RGB and flow, as a pipeline actor runs it): the CPU in
   float32 on the first ``--cpu-videos`` videos with every core's threads, then the
   accelerator in float32, bfloat16 and float16 on every video. Clips per second of each, the
   ratio to the CPU, and how far each one's features lie from the CPU's on the videos both
   did (largest difference over the largest magnitude).
2. the network alone: I3D's forward on random 224 px clips (batch 32 on the accelerator, 4 on
   the CPU), clips per second per precision.
3. training: the config's localizer for ``--epochs`` epochs on the accelerator's bfloat16
   store, once on the CPU and once on the accelerator inside a one-process NCCL group
   (gloo with ``--accelerator cpu``) with bfloat16 autocast; seconds per epoch, the ratio,
   and each run's validation mAP.

Weights: the converted Kinetics-400 I3D when it is set up (``make weights``), else random
weights of the same network (said in the output): the speeds are the same, the mAP is not
meaningful then. ``--accelerator cpu`` runs every step with the CPU standing in for the GPU,
to check the script where there is none. Writes ``docs/results/gpu_check.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import time
from pathlib import Path

import numpy as np
import torch
from results_page import Transcript, add_page_flag, code_block, write_results_page

from features.extractor import VideoExtractor
from features.store import FeatureStore
from features.weights import WeightsError, resolve_network
from pipelines.extract import clip_settings, list_videos, source_fingerprint, store_attrs
from tal.config import ExperimentConfig, load_config

PRECISIONS = ("float32", "bfloat16", "float16")


def _networks(config: ExperimentConfig) -> tuple[dict[str, torch.nn.Module], str]:
    """The config's networks per modality, or random ones of the same shape when its
    weights are not set up here; and which it was."""
    f = config.features
    specs = {m: f.weights if m == "rgb" else f.flow_weights for m in f.modalities}
    try:
        nets = {m: resolve_network(f.extractor, s, m)[0] for m, s in specs.items()}
        return nets, " and ".join(sorted(set(specs.values())))
    except WeightsError as exc:
        nets = {m: resolve_network(f.extractor, "random", m)[0] for m in specs}
        return nets, f"random (the configured weights are not set up here: {exc})"


def extract(
    nets: dict[str, torch.nn.Module],
    config: ExperimentConfig,
    files: dict[str, Path],
    device: str,
    precision: str,
    store: Path | None = None,
) -> tuple[float, int, dict[str, np.ndarray]]:
    """Clips per second over ``files`` (after one warm-up video), the clips, and the features
    of each video (RGB and flow side by side); into ``store`` when given."""
    settings = dataclasses.replace(clip_settings(config.features), precision=precision)
    extractor = VideoExtractor(nets, settings, device)
    fs = None
    if store is not None:
        attrs, _ = store_attrs(config.features.model_copy(update={"precision": precision}))
        fs = FeatureStore.create(store, attrs, overwrite=True)
    first = next(iter(files.values()))
    extractor.extract(first)  # warm-up: kernels, allocator, cuDNN's choices
    features, clips, start = {}, 0, time.perf_counter()
    for vid, path in files.items():
        out = extractor.extract(path)
        clips += out.num_clips
        features[vid] = np.concatenate([out.features[m] for m in nets], axis=1)
        if fs is not None:
            meta = {"num_frames": out.num_frames, "fps": out.fps, "duration": out.duration}
            fs.write_video(vid, out.features, {**meta, **source_fingerprint(path)})
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if fs is not None:
        fs.write_manifest()
    for net in nets.values():
        net.to("cpu")  # the next extractor moves them where it runs
    return clips / seconds, clips, features


def difference(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    """Largest |ours - reference| over the reference's largest magnitude, on shared videos."""
    shared = [v for v in reference if v in ours]
    worst = max(float(np.abs(ours[v] - reference[v]).max()) for v in shared)
    scale = max(float(np.abs(reference[v]).max()) for v in shared)
    return worst / scale


@torch.inference_mode()
def network_only(net: torch.nn.Module, device: str, precision: str, batch: int, size: int) -> float:
    """Clips per second of the network's forward on random 16-frame clips of ``size`` px."""
    net = net.to(device).eval()
    x = torch.randn(batch, net.in_channels, 16, size, size, device=device)
    on = precision != "float32"
    with torch.autocast(torch.device(device).type, dtype=getattr(torch, precision), enabled=on):
        net.features(x)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        runs, start = 0, time.perf_counter()
        while runs < 3 or time.perf_counter() - start < 2.0:
            net.features(x)
            runs += 1
        if device == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    net.to("cpu")
    return runs * batch / seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def train(
    config: ExperimentConfig, store: Path, out: Path, accelerator: str | None
) -> tuple[float, float, str]:
    """Seconds per epoch, the last validation average mAP and the device, training on the
    CPU (``accelerator`` None) or on the accelerator inside a one-process NCCL (gloo on the
    CPU) group, as a Ray Train worker with one GPU runs it."""
    import torch.distributed as dist

    from tal.engine.trainer import prepare_trainer

    group = accelerator is not None
    if group:
        backend = "nccl" if accelerator == "cuda" else "gloo"
        url = f"tcp://127.0.0.1:{_free_port()}"
        dist.init_process_group(backend, init_method=url, rank=0, world_size=1)
        if accelerator == "cuda":
            torch.cuda.set_device(0)
    try:
        trainer = prepare_trainer(
            config,
            config.data.annotations,
            store,
            None,
            out,
            log=lambda _line: None,
            device=torch.device(accelerator or "cpu"),
        )
        start = time.perf_counter()
        metrics = trainer.fit()
        seconds = time.perf_counter() - start
    finally:
        if group:
            dist.destroy_process_group()
    device = f"{trainer.device}" + (f", {backend} group of 1" if group else "")
    device += ", bfloat16 autocast" if trainer.amp else ""
    return seconds / config.training.epochs, float(metrics.history[-1]["val_average_mAP"]), device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--cpu-videos", type=int, default=3, help="videos the CPU extracts")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of each run")
    parser.add_argument("--accelerator", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=list(PRECISIONS),
        choices=PRECISIONS,
        help="the accelerator's precisions to measure",
    )
    parser.add_argument("--net-size", type=int, default=224, help="network-only clip side")
    parser.add_argument("--net-batch", type=int, default=32, help="network-only batch")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/bench/gpu_check")
    parser.add_argument("--page", default="gpu_check")
    parser.add_argument("--results-dir", default=None, help="where the page goes")
    add_page_flag(parser, "PAGE")
    args = parser.parse_args()
    accelerator = args.accelerator
    if accelerator == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "gpu_check: no CUDA GPU is visible to torch "
            f"{torch.__version__}; run it on a GPU machine (--accelerator cpu checks the "
            "script on the CPU)"
        )
    say = Transcript()
    out = Path(args.out)
    epochs = args.epochs
    overrides = [f"training.epochs={epochs}", f"training.eval_every={epochs}", *args.set]
    config = load_config(args.config, overrides)
    if not Path(config.data.annotations).is_file():
        from pipelines.synth import ensure_synth_dataset  # writes videos: needs PyAV

        ensure_synth_dataset(config)
    f = config.features
    files = list_videos(config.data.videos, config.data.video_extensions)
    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    nets, weights = _networks(config)
    name = torch.cuda.get_device_name(0) if accelerator == "cuda" else "the CPU (a dry run)"
    say(f"accelerator: {name}; CPU: {cores} cores; torch {torch.__version__}")
    say(
        f"{len(files)} videos, streams {'+'.join(f.modalities)}, {f.input_size} px, "
        f"{f.clip_length}-frame clips, stride {f.stride}, {f.fps} fps, batch {f.batch_size}, "
        f"flow {f.flow_method}; weights: {weights}"
    )

    say("\n1. extraction (decode, flow, networks; one process, no Ray)")
    cpu_files = dict(list(files.items())[: args.cpu_videos])
    cpu_rate, cpu_clips, reference = extract(nets, config, cpu_files, "cpu", "float32")
    say(f"   cpu float32: {cpu_rate:8.1f} clips/s ({cpu_clips} clips, {len(cpu_files)} videos)")
    # training reads the lowest precision measured (bfloat16 by default): what a GPU user runs
    low = "bfloat16" if "bfloat16" in args.precisions else args.precisions[-1]
    store = out / f"features_{low}.zarr"
    for precision in args.precisions:
        where = store if precision == low else None
        rate, clips, feats = extract(nets, config, files, accelerator, precision, where)
        say(
            f"   {accelerator} {precision:8s}: {rate:8.1f} clips/s ({clips} clips, {len(files)} "
            f"videos); x{rate / cpu_rate:.1f} the CPU; features differ from the CPU's by "
            f"{difference(feats, reference):.1e} of their largest magnitude"
        )

    size, batch = args.net_size, args.net_batch
    say(f"\n2. the network alone (I3D RGB forward, random 16-frame {size} px clips)")
    rgb = nets.get("rgb", next(iter(nets.values())))
    cpu_net = network_only(rgb, "cpu", "float32", 4, size)
    say(f"   cpu float32: {cpu_net:8.1f} clips/s (batch 4, {cores} threads)")
    for precision in args.precisions:
        rate = network_only(rgb, accelerator, precision, batch, size)
        say(
            f"   {accelerator} {precision:8s}: {rate:8.1f} clips/s (batch {batch}); "
            f"x{rate / cpu_net:.1f} the CPU"
        )

    say(f"\n3. training ({config.model.name}, {epochs} epochs on the {low} store)")
    cpu_epoch, cpu_map, cpu_device = train(config, store, out / "train_cpu", None)
    say(
        f"   {cpu_device}: {cpu_epoch:.2f} s/epoch (its evaluation included), validation mAP {cpu_map:.3f}"
    )
    gpu_epoch, gpu_map, gpu_device = train(config, store, out / "train_gpu", accelerator)
    say(
        f"   {gpu_device}: {gpu_epoch:.2f} s/epoch, validation mAP {gpu_map:.3f}; "
        f"x{cpu_epoch / gpu_epoch:.1f} the CPU"
    )
    if not args.no_page:
        results = Path(args.results_dir) if args.results_dir else None
        write_results_page(
            args.page,
            "GPU check: extraction and training on the accelerator against the CPU",
            f"`{args.config}`'s data and feature settings, one process, no Ray (`bench/"
            "gpu_check.sh` sets up and runs `bench/gpu_check.py`).\n\n" + code_block(say.lines),
            results_dir=results,
        )


if __name__ == "__main__":
    main()
