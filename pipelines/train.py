"""Training on Ray Train: the ``tal`` loop on data-parallel workers, tracked in MLflow, registered.

    tal train --config C --num-workers N [--output DIR] [--resume]
    python -m pipelines train --config configs/demo.yaml [--set k=v] [--resume]

``ray job submit`` and Prefect run the second form (the same command). With ``training.num_workers`` (or ``--num-workers``)
N >= 1 a ``TorchTrainer`` runs the loop on N workers: gloo on CPU, NCCL with a GPU per worker
(``training.use_gpu``); each worker takes its share of every global batch, so the global
batch size stays what the config says. After every epoch rank 0 saves the checkpoint and all
ranks report to Ray Train, which keeps the last two under ``training.storage_path/RUN``; when
a worker dies Ray Train restarts the group from the last checkpoint (up to
``training.max_failures`` times). N = 0 runs the same loop in this process, without Ray.

Each run gets a name RUN (config name, kind and start time) and an MLflow run; both are
recorded in ``RUN_DIR/latest_train.json``, so ``--resume`` continues the latest run in Ray Train and in
MLflow as one history. Afterwards the driver logs the model, registers it and moves the
``champion`` alias if it is better (``pipelines.registry``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from pipelines.errors import PipelineInputError
from pipelines.tracking import (
    RunLogger,
    check_tracking,
    client,
    git_commit,
    log_dataset_inputs,
    method_name,
    registered_model_name,
    start_run,
    store_digest,
    tracking_uri,
)
from tal.config import ExperimentConfig, config_from_text, dump_config

if TYPE_CHECKING:
    import torch
    from mlflow import MlflowClient

    from pipelines.registry import Registration
    from tal.engine.trainer import EpochRow, TrainData, Trainer, TrainMetrics

FAULT_ENV = "TAL_TRAIN_FAULT"  # "EPOCH:RANK:MARKER": that rank SIGKILLs itself once (see below)
TIMELINE_VIDEOS = 3
REPORT_POLL_S = 0.2


class TrainLaunchError(PipelineInputError):
    """A training run that cannot start or continue as asked."""


@dataclass
class TrainJob:
    """What each Ray Train worker (or this process, with 0 workers) is given: the validated
    config as its YAML text (re-validated on the worker), absolute input paths, rank 0's
    output folder, the MLflow run to log to, and whether to resume."""

    config_yaml: str
    annotations: str
    store: str
    pairs: str | None
    output: str
    tracking_uri: str
    run_id: str
    resume: bool
    on_ray: bool

    def experiment(self) -> ExperimentConfig:
        return config_from_text(self.config_yaml, "training run config")


@dataclass
class TrainOutcome:
    metrics: dict[str, float]
    output: Path
    run_name: str
    run_id: str
    experiment_id: str
    tracking_uri: str
    workers: int
    registration: Registration | None = None
    model_uri: str | None = None


# ---------------------------------------------------------------------- inside each worker


S = TypeVar("S")  # what a run's checkpoint file holds (a CheckpointState, a BackboneState)


class WorkerJob(Protocol):
    """What ``make_session`` reads of a job (``TrainJob``, ``BackboneJob``)."""

    on_ray: bool
    resume: bool

    def experiment(self) -> ExperimentConfig: ...


class WorkerSession(Protocol):
    """The worker's side of a run: its rank, device, last checkpoint and reports."""

    rank: int

    def say(self, message: str) -> None: ...

    def device(self) -> torch.device | None: ...

    def latest_state(self, load: Callable[[Path], S]) -> S | None: ...

    def report(self, row: EpochRow, checkpoint: Path | None) -> None: ...


class _LocalSession:
    """The loop run in this process: rank 0 of 1, resumes from its own checkpoint file."""

    rank = 0

    def __init__(self, checkpoint: Path, resume: bool) -> None:
        self.checkpoint, self.resume = checkpoint, resume

    def device(self) -> torch.device | None:
        return None  # the loop picks from its config

    def latest_state(self, load: Callable[[Path], S]) -> S | None:
        ok = self.resume and self.checkpoint.is_file()
        return load(self.checkpoint) if ok else None

    def report(self, row: EpochRow, checkpoint: Path | None) -> None:
        pass

    def say(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)  # progress on stderr, as every tal command


class _RaySession:
    """A Ray Train worker: rank and device from Ray, checkpoints reported to Ray Train."""

    def __init__(self) -> None:
        import ray.train

        self.rank = ray.train.get_context().get_world_rank()
        try:  # Ray Train logs every report at INFO under its file's name: one line per epoch
            from ray.train.v2._internal.execution import context

            logging.getLogger(context.__file__).setLevel(logging.WARNING)
        except ImportError:
            pass

    def say(self, message: str) -> None:
        # Ray Train sends a worker's log records to the driver's console (print would show
        # twice: Ray Train's print patch logs it and the stream is forwarded as well)
        logging.getLogger("tal.train").info(message)

    def device(self) -> torch.device | None:
        import ray.train.torch

        return ray.train.torch.get_device()

    def latest_state(self, load: Callable[[Path], S]) -> S | None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return load(Path(folder) / "checkpoint.pt")

    def report(self, row: EpochRow, checkpoint: Path | None) -> None:
        import ray.train

        metrics = {k: v for k, v in row.items() if isinstance(v, int | float)}
        if checkpoint is None:
            ray.train.report(metrics)
            return
        # a folder beside the checkpoint, so that a hard link (not a copy) puts it there;
        # Ray Train then copies it once into its storage
        with tempfile.TemporaryDirectory(prefix=".report-", dir=checkpoint.parent) as folder:
            _link_or_copy(checkpoint, Path(folder) / "checkpoint.pt")
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def make_session(job: WorkerJob, local_checkpoint: Path) -> WorkerSession:
    """The worker's side of the run: Ray Train's, or this process's (resuming from
    ``local_checkpoint``). Either way torch uses ``training.cpus_per_worker`` threads: its
    default (every core) oversubscribes a machine that runs anything else."""
    import torch

    torch.set_num_threads(job.experiment().training.cpus_per_worker)
    if not job.on_ray:
        return _LocalSession(local_checkpoint, job.resume)
    return _RaySession()


def maybe_fault(epoch: int, rank: int) -> None:
    """Operations hook (and what the fault-tolerance test uses): with TAL_TRAIN_FAULT set to
    ``EPOCH:RANK:MARKER``, that rank kills its own process with SIGKILL after reporting that
    epoch, once (the marker file records that it happened)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    at_epoch, at_rank, marker = spec.split(":", 2)
    if epoch == int(at_epoch) and rank == int(at_rank) and not os.path.exists(marker):
        Path(marker).write_text(f"killed rank {rank} after epoch {epoch}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def train_loop(fields: dict[str, object], data: TrainData | None = None) -> TrainMetrics:
    """One worker's training (Ray Train calls it on every worker with the ``TrainJob``'s
    fields, which its run state keeps as a dict; N = 0 calls it here, with the ``data`` the
    driver loaded, so that each video's metadata is read once per run)."""
    job = TrainJob(**fields)  # type: ignore[arg-type]
    session = make_session(job, Path(job.output) / "checkpoint.pt")
    if session.rank == 0:
        return _train_worker(job, session, Path(job.output), data)
    with tempfile.TemporaryDirectory(prefix="tal-rank-") as scratch:  # other ranks write nothing
        return _train_worker(job, session, Path(scratch), data)


def _train_worker(
    job: TrainJob, session: WorkerSession, output: Path, data: TrainData | None = None
) -> TrainMetrics:
    from tal.engine.checkpoint import load_checkpoint
    from tal.engine.trainer import prepare_trainer

    config = job.experiment()
    main = session.rank == 0

    def say(message: str) -> None:
        if main:
            session.say(message)

    trainer = prepare_trainer(
        config,
        job.annotations,
        job.store,
        job.pairs,
        output,
        log=say,
        device=session.device(),
        data=data,
    )
    state = session.latest_state(load_checkpoint)
    if state is not None:
        trainer.load_state(state)
        say(f"resumed after epoch {trainer.epoch} from the last checkpoint")
    run = RunLogger(job.tracking_uri, job.run_id) if main else None
    if run is not None and state is not None:  # marks each restart in the run's history
        run.log_epoch({"epoch": trainer.epoch, "resumed_after_epoch": trainer.epoch})

    def on_epoch(row: EpochRow, checkpoint: Path | None) -> None:
        if run is not None:
            run.log_epoch(row, trainer.loss_terms)
        session.report(row, checkpoint)
        maybe_fault(int(row["epoch"]), session.rank)

    metrics = trainer.fit(on_epoch)
    if run is not None:
        log_evaluation(run, trainer, output)
    return metrics


def log_evaluation(run: RunLogger, trainer: Trainer, output: Path) -> None:
    """Predictions, metrics and figures of the final evaluation, as run artifacts."""
    from tal.evaluation.detection import evaluate_detection
    from tal.evaluation.plots import (
        per_class_ap_figure,
        precision_recall_figure,
        timeline_figure,
        training_curves_figure,
    )

    config = trainer.config
    subset = config.evaluation.subset
    detections = trainer.detections  # what predictions.json holds, not parsed again
    assert detections is not None, "log_evaluation runs after fit on rank 0"
    annotations = trainer.data.annotations
    result = evaluate_detection(
        annotations, detections, subset, config.evaluation.tiou_thresholds, curves=True
    )
    plots = output / "plots"
    videos = trainer.data.val.video_ids[:TIMELINE_VIDEOS]
    timeline = timeline_figure(
        detections,
        videos,
        trainer.data.label_names,
        plots / "timeline.png",
        ground_truth=annotations.videos,
    )
    figures = [
        timeline,
        per_class_ap_figure(result, plots / "per_class_ap.png"),
        precision_recall_figure(result, plots / "precision_recall.png"),
    ]
    curves = [*sorted(trainer.loss_terms), "lr", "val_average_mAP"]
    if trainer.history:
        figures.append(
            training_curves_figure(
                trainer.history, curves, plots / "training_curves.png", config.name
            )
        )
    run.log_artifact(output / "predictions.json")
    run.log_artifact(output / "metrics.json")
    for figure in figures:
        run.log_artifact(figure, "plots")


# ---------------------------------------------------------------------- the driver


def ray_fit(
    loop: Callable[[dict[str, object]], object],
    job: dict[str, object],
    config: ExperimentConfig,
    workers: int,
    run_name: str,
    load: Callable[[Path], S],
) -> S:
    """Run ``loop`` on ``workers`` Ray Train workers (scaling from the ``training`` section);
    the state of the last reported checkpoint, read with ``load``."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from pipelines.ray_env import init_ray

    init_ray()
    # the controller takes in one report per health check (2 s by default) and a worker
    # waits for its previous report to be taken: short epochs would wait on it
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(REPORT_POLL_S))
    t = config.training
    resources = {"CPU": t.cpus_per_worker} | ({"GPU": 1} if t.use_gpu else {})
    env = {FAULT_ENV: os.environ[FAULT_ENV]} if os.environ.get(FAULT_ENV) else {}
    trainer = TorchTrainer(
        loop,
        train_loop_config=job,
        torch_config=TorchConfig(backend="nccl" if t.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=t.use_gpu,
            resources_per_worker=resources,
            placement_strategy=t.placement_strategy,
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_location(config),
            failure_config=FailureConfig(max_failures=t.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            worker_runtime_env={"env_vars": env} if env else None,
            logging_config=LoggingConfig(log_level="WARNING"),  # not a line per report
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise TrainLaunchError(f"Ray Train run {run_name} finished without a checkpoint")
    with result.checkpoint.as_directory() as folder:
        return load(Path(folder) / "checkpoint.pt")


def storage_location(config: ExperimentConfig) -> str:
    """``training.storage_path`` as Ray Train needs it: a URL, or an absolute folder (a
    relative one would land in the job's temporary working copy under ``ray job submit``)."""
    return absolute_location(str(config.training.storage_path))


def absolute_location(location: str | os.PathLike[str]) -> str:
    """A local path made absolute; a URL (``s3://...``) as it is."""
    text = os.fspath(location)
    return text if "://" in text else str(Path(text).resolve())


def check_workers(workers: int, batch_size: int, items: str, key: str) -> None:
    """Every worker needs a share of each global batch."""
    if workers < 0:
        raise TrainLaunchError(f"--num-workers must be >= 0, got {workers}")
    if workers > batch_size:
        raise TrainLaunchError(
            f"{workers} workers but a global batch of {batch_size} {items}: every worker needs "
            f"at least one per step (raise {key} or use fewer workers)"
        )


@contextmanager
def run_status(uri: str, run_id: str) -> Iterator[MlflowClient]:
    """The run's MLflow client; the run ends FINISHED, or FAILED when the block raises."""
    mlflow = client(uri)
    try:
        yield mlflow
    except BaseException:
        mlflow.set_terminated(run_id, "FAILED")
        raise
    mlflow.set_terminated(run_id, "FINISHED")


def open_run(
    config: ExperimentConfig,
    uri: str,
    kind: str,
    resume: bool,
    log: Callable[[str], None],
    tags: Callable[[], dict[str, str]],
) -> tuple[str, str, str]:
    """``(run_name, run_id, experiment_id)``: the latest run of this ``kind`` when resuming
    (recorded in RUN_DIR/latest_KIND.json), else a new MLflow run with ``tags()``."""
    latest = Path(config.run_dir) / f"latest_{kind}.json"
    if resume and latest.is_file():
        record = json.loads(latest.read_text())
        run_name, run_id = record["run_name"], record["run_id"]
        if record.get("tracking_uri") != uri:
            raise TrainLaunchError(
                f"{latest}: run {run_name} was tracked at {record.get('tracking_uri')}, "
                f"not {uri}; resume with the same tracking URI"
            )
        log(f"resuming run {run_name} (MLflow run {run_id})")
        return run_name, run_id, record["experiment_id"]
    if resume:
        log(f"nothing to resume ({latest} not found): starting a new run")
    run_name = f"{config.name}-{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    all_tags = {"git_commit": git_commit(), "dataset": config.dataset, "kind": kind, **tags()}
    exp_id, run_id = start_run(config, uri, run_name, all_tags)
    latest.parent.mkdir(parents=True, exist_ok=True)
    record = {"run_name": run_name, "run_id": run_id, "experiment_id": exp_id, "tracking_uri": uri}
    latest.write_text(json.dumps(record, indent=1) + "\n")
    log(f"run {run_name}: MLflow run {run_id} in experiment {exp_id} at {uri}")
    return run_name, run_id, exp_id


def version_description(
    config: ExperimentConfig,
    annotations: str,
    store: str,
    digest: str,
    scores: dict[str, float],
) -> str:
    """A registered version's description: method, data, features and validation scores."""
    feats = config.features
    shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(scores.items()))
    return (
        f"method: {method_name(config)} (experiment {config.name}, seed {config.seed})\n"
        f"data: {annotations}, trained on {', '.join(map(str, config.data.train_subsets))}\n"
        f"features: {store} ({feats.extractor}, {'+'.join(feats.modalities)}, clip "
        f"{feats.clip_length} stride {feats.stride}; digest {digest[:12]})\n"
        f"scores: {shown}"
    )


def run_training(
    config: ExperimentConfig,
    annotations: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    pairs: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    num_workers: int | None = None,
    resume: bool = False,
    register: bool = True,
    log: Callable[[str], None] = print,
) -> TrainOutcome:
    """Train as ``config`` says (on Ray Train unless 0 workers), track, register."""
    from tal.engine.checkpoint import load_checkpoint
    from tal.engine.trainer import load_data

    # workers run elsewhere (another directory, another node): hand them absolute paths
    annotations = absolute_location(annotations or config.data.annotations)
    store = absolute_location(store or config.features.store)
    pairs = (
        absolute_location(pairs or config.pairs.output) if (pairs or config.pairs.output) else None
    )
    output = Path(output or Path(config.run_dir) / "model").resolve()
    workers = config.training.num_workers if num_workers is None else num_workers
    check_workers(workers, config.training.batch_size, "pairs", "training.batch_size")
    # everything that can be wrong with the inputs fails here, before a run exists
    uri = tracking_uri(config)
    check_tracking(uri)
    data = load_data(config, annotations, store, pairs)
    features = data.store  # the datasets' handle: each video's meta is read once
    digest = store_digest(features)
    run_name, run_id, exp_id = open_run(
        config,
        uri,
        "train",
        resume,
        log,
        lambda: {
            "method": method_name(config),
            "feature_store": store,
            "feature_store_digest": digest,
            "workers": str(workers),
        },
    )
    log_dataset_inputs(
        uri, run_id, store, features.attrs, len(features.completed()), digest, annotations
    )
    job = TrainJob(
        config_yaml=dump_config(config),
        annotations=annotations,
        store=store,
        pairs=pairs,
        output=str(output),
        tracking_uri=uri,
        run_id=run_id,
        resume=resume,
        on_ray=workers > 0,
    )
    with run_status(uri, run_id):
        if workers == 0:
            train_loop(asdict(job), data)
            state = load_checkpoint(output / "checkpoint.pt")
        else:
            del data  # the workers load their own
            log(
                f"Ray Train: {workers} workers, checkpoints in {storage_location(config)}/{run_name}"
            )
            state = ray_fit(train_loop, asdict(job), config, workers, run_name, load_checkpoint)
        metrics = state.last_metrics()
        score = float(metrics["val_average_mAP"])
        outcome = TrainOutcome(metrics, output, run_name, run_id, exp_id, uri, workers)
        if register:
            from pipelines.registry import log_model
            from pipelines.registry import register as register_model
            from tal.engine.package import KIND, PackagedLocalizer

            packaged = PackagedLocalizer.from_checkpoint_state(state)
            with tempfile.TemporaryDirectory(prefix="tal-model-") as folder:
                packaged.save(folder)
                val = {k: v for k, v in metrics.items() if k.startswith("val_")}
                outcome.model_uri = log_model(uri, run_id, folder, KIND, val, state.epoch)
            outcome.registration = register_model(
                uri,
                run_id,
                outcome.model_uri,
                registered_model_name(config),
                score,
                description=version_description(config, annotations, store, digest, val),
                model_description=(
                    f"{method_name(config)} action localizer for {config.dataset}, registered "
                    "by `tal train`; the alias champion follows the best val_average_mAP."
                ),
            )
            log(outcome.registration.line())
    return outcome
