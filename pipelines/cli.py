"""The `tal` command: one entry point for every stage (typer).

`tal COMMAND ...` and `python -m pipelines COMMAND ...` are the same command (the second is
what `ray job submit` and a cluster's scripts run). Heavy imports happen inside commands, so
`tal --help` and `tal eval` load neither torch nor zarr (a test checks). Every error caused
by input derives from `features.errors.UserInputError`: it prints as one line `error: ...`
and exits with status 2; anything else keeps its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from features.errors import UserInputError
from tal.synth.presets import PLAIN_DEFAULTS, PRESET_NAMES

app = typer.Typer(
    name="tal",
    help="Temporal action localization: raw video to a trained, evaluated, registered model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
annotations_app = typer.Typer(
    help="Import, validate and inspect annotation files.", no_args_is_help=True
)
config_app = typer.Typer(help="Inspect experiment configs.", no_args_is_help=True)
app.add_typer(annotations_app, name="annotations")
app.add_typer(config_app, name="config")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# options that take several values (`--tiou 0.3 0.5`); each stops at the first argument that
# is not one of its values, so a positional argument may follow (`--modalities rgb FOLDER`)
MULTI_VALUE_OPTIONS = {
    "--tiou": _is_number,
    "--modalities": lambda text: text in ("rgb", "flow"),
}

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="experiment YAML (configs/*.yaml)")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a config key: dotted.key=value (repeatable)"),
]


def _echo(msg: str) -> None:
    typer.echo(msg, err=True)


def _list_presets(value: bool) -> None:
    """``--list-presets``: each preset's sizes and what it stresses, then exit."""
    if not value:
        return
    import textwrap

    from tal.synth.presets import PRESETS

    for p in PRESETS.values():
        typer.echo(
            f"{p.name}: {p.summary}\n  {p.videos} videos, {p.classes} classes, "
            f"{p.min_duration:g}-{p.max_duration:g} s, {p.size} px, {p.fps:g} fps"
        )
        typer.echo(textwrap.fill(p.stresses, 92, initial_indent="  ", subsequent_indent="  "))
    raise typer.Exit()


_PRESET_HELP = (
    "a named benchmark whose sizes fill the options not given: "
    + ", ".join(PRESET_NAMES)
    + " (--list-presets says what each stresses)"
)


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="folder for videos/, annotations.json")],
    videos: Annotated[
        int | None, typer.Option(help=f"number of videos (default {PLAIN_DEFAULTS['videos']})")
    ] = None,
    classes: Annotated[
        int | None,
        typer.Option(help=f"number of action classes (default {PLAIN_DEFAULTS['classes']})"),
    ] = None,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same dataset)")] = 0,
    size: Annotated[
        int | None,
        typer.Option(help=f"frame width and height in pixels (default {PLAIN_DEFAULTS['size']})"),
    ] = None,
    fps: Annotated[
        float | None, typer.Option(help=f"frames per second (default {PLAIN_DEFAULTS['fps']:g})")
    ] = None,
    min_duration: Annotated[
        float | None,
        typer.Option(help=f"shortest video, seconds (default {PLAIN_DEFAULTS['min_duration']:g})"),
    ] = None,
    max_duration: Annotated[
        float | None,
        typer.Option(help=f"longest video, seconds (default {PLAIN_DEFAULTS['max_duration']:g})"),
    ] = None,
    workers: Annotated[int, typer.Option(help="processes used to render")] = 2,
    preset: Annotated[str | None, typer.Option(help=_PRESET_HELP)] = None,
    list_presets: Annotated[
        bool,
        typer.Option(
            "--list-presets",
            callback=_list_presets,
            is_eager=True,
            help="describe the presets and exit",
        ),
    ] = False,
) -> None:
    """Write a synthetic action video benchmark: real H.264 files and their annotations.

    Defaults are for no --preset; a preset brings its own, and options given override them.
    """
    from tal.synth import generate_dataset

    def progress(done: int, total: int, video_id: str) -> None:
        _echo(f"[{done}/{total}] {video_id}")

    try:
        summary = generate_dataset(
            out_dir,
            videos=videos,
            classes=classes,
            seed=seed,
            size=size,
            fps=fps,
            min_duration=min_duration,
            max_duration=max_duration,
            workers=workers,
            preset=preset,
            progress=progress,
        )
    except UserInputError:
        raise
    except ValueError as exc:  # argument out of range: a usage error, exit status 2
        raise typer.BadParameter(str(exc)) from None
    typer.echo(
        f"wrote {summary.videos} videos with {summary.instances} action instances of "
        f"{len(summary.class_names)} classes to {summary.out_dir}; annotations: {summary.annotations}"
    )


@app.command("eval")
def eval_cmd(
    ground_truth: Annotated[Path, typer.Option(help="ActivityNet-style annotation JSON")],
    predictions: Annotated[Path, typer.Option(help="ActivityNet results JSON")],
    subset: Annotated[str, typer.Option(help="ground-truth subset to evaluate")] = "validation",
    tiou: Annotated[
        list[float] | None,
        typer.Option(help="tIoU thresholds, e.g. --tiou 0.3 0.4 0.5 0.6 0.7 (default THUMOS14)"),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="write the result JSON here")] = None,
    drop_invalid: Annotated[
        bool,
        typer.Option(
            help="drop detections whose segment is reversed or starts before 0 (counted) "
            "instead of stopping"
        ),
    ] = False,
) -> None:
    """mAP at tIoU thresholds, exactly as the official ActivityNet evaluation computes it."""
    from tal.data.annotations import AnnotationError, load_annotations
    from tal.data.predictions import load_predictions
    from tal.evaluation.detection import THUMOS14_TIOU, evaluate_detection

    gt = load_annotations(ground_truth, segments="keep")
    pred = load_predictions(predictions, "drop" if drop_invalid else "error", _echo)
    try:
        result = evaluate_detection(gt, pred, subset, tiou or list(THUMOS14_TIOU))
    except ValueError as exc:
        raise AnnotationError(str(exc)) from None
    typer.echo(result.table())
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result.to_json(), indent=1) + "\n")
        typer.echo(f"wrote {output}")


@annotations_app.command("import")
def annotations_import(
    inputs: Annotated[list[Path], typer.Argument(help="annotation files or a folder of them")],
    output: Annotated[Path, typer.Option(help="ActivityNet-style JSON to write")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="auto, anet (also ActionFormer JSON), bmn, thumos-csv, thumos-txt"
        ),
    ] = "auto",
    video_info: Annotated[
        Path | None, typer.Option(help="BMN video_info_new.csv (subsets, fps) for --format bmn")
    ] = None,
) -> None:
    """Convert public annotation formats to the project's ActivityNet-style JSON."""
    from tal.data.annotations import write_annotations
    from tal.data.importers import import_annotations

    options = {"video_info_csv": video_info} if video_info is not None else {}
    imported = import_annotations(list(inputs), fmt, **options)
    for note in imported.repairs[:20]:
        _echo(f"note: {note}")
    if len(imported.repairs) > 20:
        _echo(f"note: ... and {len(imported.repairs) - 20} more")
    write_annotations(imported, output)
    typer.echo(json.dumps(imported.summary()))
    typer.echo(f"wrote {output}")


@annotations_app.command("validate")
def annotations_validate(
    path: Annotated[Path, typer.Argument(help="ActivityNet-style annotation JSON")],
) -> None:
    """Check an annotation file strictly and print a summary and its label map."""
    from tal.data.annotations import load_annotations

    ann = load_annotations(path)
    typer.echo(json.dumps(ann.summary()))
    typer.echo("labels: " + ", ".join(ann.label_map().names))


@config_app.command("show")
def config_show(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Validate a config (with overrides) and print it fully resolved."""
    from tal.config import dump_config, load_config

    typer.echo(dump_config(load_config(config, set_)), nl=False)


@app.command()
def weights(
    name: Annotated[str, typer.Argument(help="which weights: kinetics-rgb")] = "kinetics-rgb",
    cache_dir: Annotated[
        Path | None, typer.Option(help="default $TAL_WEIGHTS_DIR or ~/.cache/tal-pipeline/weights")
    ] = None,
) -> None:
    """Fetch (set-up time only), verify and convert pretrained I3D weights; print the path."""
    from features.weights import fetch_kinetics_rgb, load_i3d

    if name != "kinetics-rgb":
        raise typer.BadParameter(f"unknown weights {name!r}; available: kinetics-rgb")
    path = fetch_kinetics_rgb(cache_dir, log=_echo)
    _, meta = load_i3d(path)
    typer.echo(f"{path}\n  origin: {meta['origin']}\n  sha256: {meta['digest']}")


@app.command()
def demo(config: ConfigOpt = Path("configs/demo.yaml"), set_: SetOpt = None) -> None:
    """The embedded default: synthetic data, a baseline, evaluation, a summary."""
    from pipelines.demo import run_demo
    from tal.config import load_config

    cfg = load_config(config, set_)
    summary = run_demo(cfg, log=_echo)
    typer.echo(summary.result.table())
    typer.echo(
        "\n".join(
            [
                f"demo finished in {summary.seconds:.1f} s",
                f"  annotations: {summary.annotations}",
                f"  predictions: {summary.predictions}",
                f"  evaluation:  {summary.result_file}",
                f"  average mAP: {100 * summary.result.average_mAP:.2f}% "
                "(motion-energy baseline; a learned localizer must beat it)",
            ]
        )
    )


@app.command()
def extract(
    videos: Annotated[
        Path | None, typer.Option(help="folder of video files (default: the config's data.videos)")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Zarr feature store, a folder or an fsspec URL (default: features.store)"
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Ray actors (default: features.num_actors)")
    ] = None,
    modalities: Annotated[
        list[str] | None, typer.Option(help="rgb, flow or both (default: features.modalities)")
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="RGB weights: kinetics-rgb, random or a .pt file")
    ] = None,
    flow_weights: Annotated[
        str | None, typer.Option(help="flow weights: kinetics-rgb, random or a .pt file")
    ] = None,
    extractor: Annotated[
        str | None,
        typer.Option(
            help="network: i3d (RGB, flow) or ata (RGB, --weights from tal train-backbone) (default: features.extractor)"
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="recreate the store, redo every video")] = False,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Extract I3D or ATA features of a folder of videos into a Zarr store on a Ray actor pool."""
    from pipelines.extract import extract_from_config
    from tal.config import load_config

    overrides = list(set_ or [])
    if extractor:
        overrides.append(f"features.extractor={extractor}")
        if extractor == "ata" and not modalities:
            overrides.append("features.modalities=[rgb]")
    if modalities:
        overrides.append(f"features.modalities=[{', '.join(modalities)}]")
    if weights:
        overrides.append(f"features.weights={weights}")
    if flow_weights:
        overrides.append(f"features.flow_weights={flow_weights}")
    cfg = load_config(config, overrides)
    if videos is None and config is None:
        raise typer.BadParameter("give --videos DIR (or --config with data.videos)")
    summary = extract_from_config(
        cfg, videos=videos, store=store, workers=workers, overwrite=overwrite, log=_echo
    )
    for vid, error in summary.failures:
        typer.echo(f"failed: {vid}: {error}")
    typer.echo(summary.line())


@app.command("import-features")
def import_features_cmd(
    folder: Annotated[Path, typer.Argument(help="folder of VIDEO_ID.npy feature files")],
    store: Annotated[str, typer.Option(help="Zarr feature store to create or add to")],
    stride: Annotated[
        int | None, typer.Option(min=1, help="frames between clip starts (default 4)")
    ] = None,
    clip_length: Annotated[
        int | None, typer.Option(min=1, help="frames per clip (default 16)")
    ] = None,
    fps: Annotated[
        float | None, typer.Option(help="frame rate the clips were cut at (default 30)")
    ] = None,
    modalities: Annotated[
        list[str] | None,
        typer.Option(help="rgb, flow or both, e.g. --modalities rgb flow (default both)"),
    ] = None,
    layout: Annotated[str, typer.Option(help="tc: [T, C] per file; ct: [C, T]")] = "tc",
    split: Annotated[
        int | None,
        typer.Option(min=1, help="channels of rgb when both modalities (default C/2)"),
    ] = None,
    annotations: Annotated[
        Path | None,
        typer.Option(
            help="annotations (ActivityNet-style JSON or BMN anet_anno_action.json, format "
            "detected): durations give each video's frame count, or its span with --resized"
        ),
    ] = None,
    resized: Annotated[
        bool,
        typer.Option(
            help="fixed-length features (ActivityNet style): each file's T steps span its "
            "video's annotated duration, step i centred at (i + 0.5) * duration / T; needs "
            "--annotations, excludes --stride/--clip-length/--fps"
        ),
    ] = False,
    steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="with --resized: resample every video to N steps (linear, as ActionFormer "
            "up-samples ActivityNet to 192)",
        ),
    ] = None,
    file_prefix: Annotated[
        str,
        typer.Option(
            help="prefix of the file names that is not part of the video id (v_ for "
            "ActivityNet files named v_ID.npy)"
        ),
    ] = "",
    extractor: Annotated[
        str, typer.Option(help="name of the source features, e.g. actionformer-i3d")
    ] = "imported",
    weights_digest: Annotated[
        str, typer.Option(help="digest of the network that made them, if known")
    ] = "unknown",
    dtype: Annotated[str, typer.Option(help="float32 or float16 in the store")] = "float32",
    overwrite: Annotated[bool, typer.Option(help="replace the whole store")] = False,
) -> None:
    """Import per-video .npy features (ActionFormer style: THUMOS14 I3D is stride 4, clip 16,
    30 fps, [T, 2048] = rgb then flow; ActivityNet resized to T steps per video: --resized)
    into a Zarr feature store; bad files are recorded as failed and skipped."""
    from features.importing import FeatureImportError, import_features
    from tal.data.importers import import_annotations

    if resized:
        given = [
            name
            for name, value in (
                ("--stride", stride),
                ("--clip-length", clip_length),
                ("--fps", fps),
            )
            if value is not None
        ]
        if given:
            raise FeatureImportError(
                f"--resized takes each video's rate from its duration; drop {', '.join(given)}"
            )
        if annotations is None:
            raise FeatureImportError(
                "--resized needs --annotations: each video's steps span its annotated duration"
            )
    elif steps is not None:
        raise FeatureImportError("--steps resamples resized features: give --resized too")
    durations = None
    if annotations is not None:
        ann = import_annotations(annotations)  # only durations are used
        durations = {v.video_id: (v.duration, v.fps) for v in ann if v.duration is not None}
    summary = import_features(
        folder,
        store,
        stride=4 if stride is None else stride,
        clip_length=16 if clip_length is None else clip_length,
        fps=30.0 if fps is None else fps,
        modalities=modalities or ("rgb", "flow"),
        layout=layout,
        split=split,
        durations=durations,
        extractor=extractor,
        weights_digest=weights_digest,
        dtype=dtype,
        overwrite=overwrite,
        resized=resized,
        steps=steps,
        file_prefix=file_prefix,
        log=_echo,
    )
    for note in summary.notes[:20]:
        _echo(f"note: {note}")
    if len(summary.notes) > 20:
        _echo(f"note: ... and {len(summary.notes) - 20} more")
    for video_id, reason in summary.failed.items():
        typer.echo(f"failed: {video_id}: {reason}")
    typer.echo(summary.line())


@app.command("train-backbone")
def train_backbone_cmd(
    output: Annotated[Path, typer.Option(help="weights file to write (WEIGHTS.pt)")],
    videos: Annotated[
        Path | None, typer.Option(help="folder of video files (default: the config's data.videos)")
    ] = None,
    annotations: Annotated[
        Path | None,
        typer.Option(help="ActivityNet-style JSON (default: the config's data.annotations)"),
    ] = None,
    modality: Annotated[
        str | None, typer.Option(help="rgb or flow (default: backbone.modality)")
    ] = None,
    extractor: Annotated[
        str | None,
        typer.Option(help="network: i3d or ata (default: features.extractor)"),
    ] = None,
    num_workers: Annotated[
        int | None,
        typer.Option(
            "--num-workers",
            help="Ray Train workers (default backbone.num_workers); 0 trains in this process",
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="continue the latest backbone run (RUN_DIR/latest_backbone.json)")
    ] = False,
    register: Annotated[
        bool, typer.Option(help="log the network, register it, move champion if it is better")
    ] = True,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Train the extractor's network (I3D fine-tuning, or ATA) on trimmed clips (actions +
    background) and save weights for `tal extract`."""
    from pipelines.train_backbone import run_backbone_training
    from tal.config import load_config

    overrides = list(set_ or [])
    if extractor:
        overrides.append(f"features.extractor={extractor}")
    if modality:
        overrides.append(f"backbone.modality={modality}")
    cfg = load_config(config, overrides)
    if config is None and (videos is None or annotations is None):
        raise typer.BadParameter("give --videos DIR and --annotations FILE (or --config)")
    outcome = run_backbone_training(
        cfg,
        output,
        videos,
        annotations,
        num_workers=num_workers,
        resume=resume,
        register=register,
        log=_echo,
    )
    report = outcome.report
    for reason in report.skipped:
        typer.echo(f"skipped: {reason}")
    typer.echo(
        f"trained {report.modality} {report.extractor.upper()} on {report.train_clips} clips in "
        f"{report.seconds:.1f} s: val accuracy {report.val_accuracy:.3f} on "
        f"{report.val_clips} clips; sha256 {report.digest}; wrote {report.output}; "
        f"MLflow run {outcome.run_id}"
    )


@app.command("pairs")
def pairs_cmd(
    annotations: Annotated[
        Path | None,
        typer.Option(help="ActivityNet-style JSON (default: the config's data.annotations)"),
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="Zarr feature store: pair only its complete videos")
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Parquet file to write (default: pairs.output)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="sampling seed (default: pairs.seed)")] = None,
    per_video: Annotated[
        int | None, typer.Option(help="partners per video (default: pairs.per_video)")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Pair training videos that share an action class (inter-video partners) into Parquet."""
    from pipelines.pairs import build_pairs_from_config
    from tal.config import load_config

    overrides = list(set_ or [])
    if seed is not None:
        overrides.append(f"pairs.seed={seed}")
    if per_video is not None:
        overrides.append(f"pairs.per_video={per_video}")
    cfg = load_config(config, overrides)
    if config is None and (annotations is None or output is None):
        raise typer.BadParameter("give --annotations FILE and --output PAIRS.parquet (or --config)")
    build_pairs_from_config(
        cfg, annotations=annotations, store=store, output=output, log=typer.echo
    )


@app.command("train")
def train_cmd(
    config: ConfigOpt = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="rank 0's folder: checkpoint.pt, metrics.json, ... (default RUN_DIR/model)"
        ),
    ] = None,
    annotations: Annotated[
        Path | None, typer.Option(help="ActivityNet-style JSON (default: data.annotations)")
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="Zarr feature store (default: features.store)")
    ] = None,
    pairs: Annotated[
        Path | None,
        typer.Option(help="pairs Parquet (default: pairs.output; built in memory if absent)"),
    ] = None,
    num_workers: Annotated[
        int | None,
        typer.Option(
            "--num-workers",
            help="Ray Train workers (default training.num_workers); 0 trains in this process",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(help="continue the latest run of this config (RUN_DIR/latest_train.json)"),
    ] = False,
    register: Annotated[
        bool, typer.Option(help="log the model, register it, move champion if it is better")
    ] = True,
    set_: SetOpt = None,
) -> None:
    """Train the config's method (model.name: i2net, actionformer, asl, co2net), tracked in
    MLflow."""
    from pipelines.train import run_training
    from tal.config import load_config

    cfg = load_config(config, list(set_ or []))
    outcome = run_training(
        cfg,
        annotations=annotations,
        store=store,
        pairs=pairs,
        output=output,
        num_workers=num_workers,
        resume=resume,
        register=register,
        log=_echo,
    )
    m = outcome.metrics
    tious = cfg.evaluation.tiou_thresholds
    cells = ", ".join(f"{t:g}: {m[f'val_mAP_{t:.2f}']:.4f}" for t in tious)
    typer.echo(
        f"{cfg.evaluation.subset} mAP ({cells}); average {m['val_average_mAP']:.4f} after "
        f"{m['epoch']} epochs on {outcome.workers or 'no'} Ray Train workers; MLflow run "
        f"{outcome.run_id} at {outcome.tracking_uri}; outputs in {outcome.output}"
    )


@app.command("models")
def models_cmd(
    name: Annotated[str | None, typer.Argument(help="registered model (default: all)")] = None,
    config: ConfigOpt = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow URI (default: the config's, as for training)")
    ] = None,
    set_: SetOpt = None,
) -> None:
    """List registered model versions with their validation mAP and aliases."""
    from pipelines.registry import list_versions
    from pipelines.tracking import check_tracking
    from pipelines.tracking import tracking_uri as default_uri
    from tal.config import load_config

    uri = tracking_uri or default_uri(load_config(config, list(set_ or [])))
    check_tracking(uri)
    rows = list_versions(uri, name)
    if not rows:
        typer.echo(f"no registered models at {uri}")
        return
    typer.echo(f"{'model':<28} {'version':>7} {'score':>7} {'(of)':<16} aliases   run")
    for r in rows:
        score = "-" if r.score is None else f"{r.score:.4f}"
        aliases = ",".join(r.aliases) or "-"
        typer.echo(
            f"{r.name:<28} {r.version:>7} {score:>7} {r.score_name:<16} {aliases:<9} {r.run_id}"
        )


@app.command("predict")
def predict_cmd(
    videos: Annotated[list[Path], typer.Argument(help="video files to localize actions in")],
    model: Annotated[
        str,
        typer.Option(
            help="models:/NAME@champion, models:/NAME/VERSION, models:/MODEL_ID, "
            "runs:/RUN/PATH or a model directory"
        ),
    ],
    output: Annotated[Path, typer.Option(help="predictions JSON to write")],
    plot: Annotated[
        Path | None, typer.Option(help="timeline PNG of the detections (one panel per video)")
    ] = None,
    annotations: Annotated[
        Path | None,
        typer.Option(help="ActivityNet-style JSON: ground truth drawn in the plot and scored"),
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow URI (default: $MLFLOW_TRACKING_URI)")
    ] = None,
    min_score: Annotated[float, typer.Option(help="plot detections from this score")] = 0.2,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
) -> None:
    """Decode and featurise videos as the model's features were made, then localize actions."""
    from pipelines.predict import predict_videos, write_outputs
    from pipelines.tracking import check_tracking

    if tracking_uri:
        check_tracking(tracking_uri)
    result = predict_videos(model, videos, tracking_uri, device=device, log=_echo)
    figure = write_outputs(result, output, plot, annotations, min_score)
    line = f"{len(result.detections)} detections for {len(result.durations)} videos -> {output}"
    if figure is not None:
        line += f"; timeline {plot}"
    typer.echo(line)
    if result.failed:
        _echo(f"{len(result.failed)} videos could not be read: {', '.join(result.failed)}")
        raise typer.Exit(1)


@app.command("package")
def package_cmd(
    checkpoint: Annotated[Path, typer.Option(help="RUN_DIR/checkpoint.pt from `tal train`")],
    output: Annotated[Path, typer.Option(help="model directory to write")],
) -> None:
    """Package a checkpoint as a tensor-only model directory (what the registry holds), for
    `tal predict --model DIR` or to log by hand."""
    from tal.engine.checkpoint import load_checkpoint
    from tal.engine.package import PackagedLocalizer

    folder = PackagedLocalizer.from_checkpoint_state(load_checkpoint(checkpoint)).save(output)
    typer.echo(f"{checkpoint} -> {folder} ({', '.join(sorted(p.name for p in folder.iterdir()))})")


@app.command("infer")
def infer_cmd(
    checkpoint: Annotated[Path, typer.Option(help="RUN_DIR/checkpoint.pt from `tal train`")],
    output: Annotated[Path, typer.Option(help="predictions JSON to write")],
    annotations: Annotated[
        Path | None,
        typer.Option(help="ActivityNet-style JSON (default: the checkpoint config's)"),
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="Zarr feature store (default: the checkpoint config's)")
    ] = None,
    split: Annotated[str, typer.Option(help="subset to predict")] = "validation",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="override a key of the checkpoint's config, e.g. model.inference_partner=bank",
        ),
    ] = None,
) -> None:
    """Predict a subset with a trained checkpoint; scores it when the subset has annotations."""
    from tal.data.predictions import write_predictions
    from tal.engine.inference import infer_from_checkpoint
    from tal.methods import build_method

    detections, facts = infer_from_checkpoint(
        checkpoint, annotations, store, split, config_overrides=list(set_ or []), log=_echo
    )
    write_predictions(detections, output)
    line = f"{len(detections)} detections for {facts.videos} {split} videos -> {output}"
    if facts.result is not None:
        method = build_method(facts.config.model).describe()
        line += f"; average mAP {facts.result.average_mAP:.4f} ({method})"
    typer.echo(line)


def _expand_multi_value(argv: list[str]) -> list[str]:
    """Let ``--tiou 0.3 0.4 0.5`` mean ``--tiou 0.3 --tiou 0.4 --tiou 0.5`` (click needs the latter)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        out.append(arg)
        i += 1
        if arg in MULTI_VALUE_OPTIONS:
            accepts = MULTI_VALUE_OPTIONS[arg]
            first = True
            while i < len(argv) and not argv[i].startswith("--") and (first or accepts(argv[i])):
                if not first:
                    out.append(arg)
                out.append(argv[i])
                first = False
                i += 1
    return out


def main(argv: list[str] | None = None) -> None:
    """Console entry point (`tal`)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _expand_multi_value(list(sys.argv[1:] if argv is None else argv))
    try:
        app(args=args, prog_name="tal")
    except UserInputError as exc:
        _echo(f"error: {exc}")
        sys.exit(2)


def exit_status(argv: list[str]) -> int:
    """Run ``tal ARGV...`` in this process and return its exit status instead of exiting."""
    try:
        main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    main()
