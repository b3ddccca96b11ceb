"""Feature extraction on a Ray actor pool: videos in, a complete Zarr feature store out.

    python -m pipelines extract --config configs/demo.yaml          (what `ray job submit` runs)
    tal extract --videos DIR --store STORE --workers 2 --modalities rgb flow

Each actor loads its networks once (``num_gpus`` per actor where the cluster has GPUs, CPU
actors otherwise), decodes and computes flow a few batches ahead of the networks, and writes
each finished video straight into the store. The driver hands out one video at a time per
actor, shows progress, and deals with failures: a bad video is recorded ``failed`` by the
actor and the run goes on; an actor that dies or exceeds ``features.video_timeout`` on a
video is killed, replaced, and the video retried up to ``features.max_retries`` times, then
recorded failed. Re-running skips complete videos whose file is unchanged (size and
modification time, else content digest, recorded with each video); a video whose file changed
is extracted again. ``overwrite`` recreates the store.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.extractor import ClipSettings
from features.store import FeatureStore, check_video_id
from pipelines.errors import PipelineInputError
from pipelines.ray_env import init_ray
from tal.config import ExperimentConfig, FeaturesConfig

CRASH_ENV = "TAL_EXTRACT_FAULT"  # test hook: "crash:ID:MARKER" or "hang:ID" (see _inject_fault)


class ExtractError(PipelineInputError):
    """Extraction input that cannot be used (videos folder, store, settings)."""


@dataclass
class VideoResult:
    video_id: str
    status: str  # "done" | "failed"
    clips: int = 0
    seconds: float = 0.0
    error: str | None = None
    padded: bool = False


@dataclass
class ExtractSummary:
    store: str
    total: int
    done: int = 0
    skipped: int = 0
    failed: int = 0
    clips: int = 0
    seconds: float = 0.0  # from workers ready to the last video written
    startup_seconds: float = 0.0  # starting Ray and the workers, loading the networks
    workers: int = 0
    retried: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    padded: list[str] = field(default_factory=list)

    @property
    def clips_per_second(self) -> float:
        return self.clips / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"extracted {self.done} videos ({self.clips} clips, {self.clips_per_second:.1f} "
            f"clips/s, {self.workers} workers, {self.seconds:.1f} s after "
            f"{self.startup_seconds:.1f} s start-up), skipped {self.skipped} "
            f"already complete, failed {self.failed}; manifest: {self.store}/manifest.parquet"
        )


def list_videos(folder: str | os.PathLike[str], extensions: list[str]) -> dict[str, Path]:
    """``{video_id: file}`` for the video files directly in ``folder`` (id = file stem),
    broken symbolic links included (``unusable`` reports them)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExtractError(f"{folder}: videos folder not found")
    exts = {e.lower() for e in extensions}
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        listed = path.is_file() or (path.is_symlink() and not path.exists())
        if not listed or path.suffix.lower() not in exts:
            continue
        if path.stem in found:
            raise ExtractError(
                f"{folder}: two files for video id {path.stem!r}: {found[path.stem].name} and "
                f"{path.name}; keep one"
            )
        found[path.stem] = path
    if not found:
        raise ExtractError(f"{folder}: no video files (extensions {', '.join(extensions)})")
    return found


def unusable(video_id: str, path: Path) -> str | None:
    """Why a listed video cannot be extracted (an id the store cannot hold, a broken symbolic
    link), or None."""
    try:
        check_video_id(video_id)
    except ValueError as exc:
        return str(exc)
    if path.is_symlink() and not path.exists():
        return f"{path} is a broken symbolic link (its target {os.readlink(path)} does not exist)"
    return None


def store_attrs(features: FeaturesConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """The store's identity attributes and the weights spec per modality.

    Resolves the weights once in the driver for their digests, origins and feature widths
    (and, for ATA, checks that the network takes the configured clips); actors load the same
    specs.
    """
    from features.weights import WeightsError, resolve_network

    specs = {
        m: features.weights if m == "rgb" else features.flow_weights for m in features.modalities
    }
    digests, origins, dims = {}, {}, {}
    for modality, spec in specs.items():
        try:
            network, meta = resolve_network(features.extractor, spec, modality)
        except WeightsError as exc:
            raise ExtractError(str(exc)) from None
        digests[modality], origins[modality] = meta["digest"], meta["origin"]
        dims[modality] = int(network.feature_dim)
        if features.extractor == "ata":
            took = (network.frames, network.image_size)
            wanted = (features.clip_length, features.input_size)
            if took != wanted:
                raise ExtractError(
                    f"{spec}: this ATA network takes clips of {took[0]} frames at {took[1]} px; "
                    f"features.clip_length and features.input_size are {wanted[0]} and "
                    f"{wanted[1]}: set them to the network's"
                )
    attrs = {
        "extractor": features.extractor,
        "weights_digest": digests,
        "weights_origin": origins,
        "clip_length": features.clip_length,
        "stride": features.stride,
        "input_size": features.input_size,
        "fps": features.fps,
        "dtype": features.dtype,
        "modalities": list(features.modalities),
        "feature_dims": dims,
    }
    if "flow" in features.modalities:
        attrs["flow_method"] = features.flow_method
    if features.precision != "float32":  # stores of float32 networks keep their attributes
        attrs["precision"] = features.precision
    return attrs, specs


def clip_settings(features: FeaturesConfig) -> ClipSettings:
    """The extractor's settings as the ``features`` section of a config gives them."""
    return ClipSettings(
        fps=features.fps,
        clip_length=features.clip_length,
        stride=features.stride,
        input_size=features.input_size,
        batch_size=features.batch_size,
        flow_method=features.flow_method,
        precision=features.precision,
    )


def _inject_fault(video_id: str) -> None:
    """Test hook (env ``TAL_EXTRACT_FAULT``): kill the actor once, or hang, on one video."""
    spec = os.environ.get(CRASH_ENV, "")
    kind, _, rest = spec.partition(":")
    if kind == "crash":
        target, _, marker = rest.partition(":")
        if target == video_id and marker and not os.path.exists(marker):
            Path(marker).write_text("crashed once\n")
            os._exit(1)
    elif kind == "hang" and rest == video_id:
        time.sleep(10**6)


def source_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What identifies a video file's content: size, modification time and sha256."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    info = os.stat(path)
    return {
        "source_bytes": info.st_size,
        "source_mtime_ns": info.st_mtime_ns,
        "source_sha256": digest.hexdigest(),
    }


def source_changed(meta: dict[str, Any], path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` differs from the one a stored video was extracted from.

    Size and modification time decide cheaply; a touched or copied file of the same size is
    hashed. Videos stored without a fingerprint count as unchanged."""
    if "source_sha256" not in meta:
        return False
    try:
        info = os.stat(path)
    except OSError:
        return False  # gone: keep what was extracted
    if info.st_size != meta.get("source_bytes"):
        return True
    if info.st_mtime_ns == meta.get("source_mtime_ns"):
        return False
    return source_fingerprint(path)["source_sha256"] != meta["source_sha256"]


def _ray_node_id() -> str | None:
    """The Ray node this process runs on (the manifest's ``node``), or None outside Ray."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


class ExtractWorker:
    """One Ray actor: networks loaded once, videos extracted into the store one at a time."""

    def __init__(
        self,
        store: str,
        extractor: str,
        specs: dict[str, str],
        settings: ClipSettings,
        device: str,
        threads: int,
    ) -> None:
        import torch

        from features.extractor import VideoExtractor
        from features.weights import resolve_network

        torch.set_num_threads(max(1, threads))
        models = {m: resolve_network(extractor, spec, m)[0] for m, spec in specs.items()}
        self.extractor = VideoExtractor(models, settings, device)
        self.store = FeatureStore.open(store, mode="a")
        self.node = _ray_node_id()

    def ready(self) -> str:
        return str(self.extractor.device)

    def extract(self, video_id: str, path: str) -> VideoResult:
        from features.video import VideoDecodeError

        _inject_fault(video_id)
        start = time.perf_counter()
        try:
            source = source_fingerprint(path)
            out = self.extractor.extract(path)
        except (VideoDecodeError, RuntimeError, ValueError, OSError) as exc:
            error = str(exc) if isinstance(exc, VideoDecodeError) else f"{path}: {exc}"
            self.store.record(video_id, "failed", error=error, node=self.node)
            return VideoResult(video_id, "failed", error=error)
        seconds = time.perf_counter() - start
        self.store.write_video(
            video_id,
            out.features,
            {"num_frames": out.num_frames, "fps": out.fps, "duration": out.duration, **source},
            seconds=seconds,
            node=self.node,
        )
        return VideoResult(video_id, "done", out.num_clips, seconds, padded=out.padded)


class Progress:
    """A one-line progress bar on stderr: videos, failures, clips per second."""

    def __init__(self, total: int, stream=None) -> None:
        self.total, self.stream = total, stream or sys.stderr
        self.start = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, finished: int, failed: int, clips: int, last: str) -> None:
        elapsed = time.perf_counter() - self.start
        width = 24
        filled = int(width * finished / self.total) if self.total else width
        bar = "#" * filled + "." * (width - filled)
        rate = clips / elapsed if elapsed > 0 else 0.0
        line = (
            f"[{bar}] {finished}/{self.total} videos, {failed} failed, {rate:.1f} clips/s ({last})"
        )
        self.stream.write(("\r" + line + " " * 8) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")


def _actor_options(features: FeaturesConfig, workers: int, log) -> tuple[dict, str, int]:
    """Ray options, device and torch threads for each actor, from what the cluster offers."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 1.0)
    want_gpu = features.device != "cpu" and features.num_gpus_per_actor > 0
    if features.device == "cuda" and gpus == 0:
        raise ExtractError("features.device is 'cuda' but the Ray cluster has no GPUs")
    if want_gpu and gpus == 0:
        log("no GPUs in the Ray cluster: extraction actors run on CPU")
    threads = max(1, int(cpus // workers))
    # OpenMP's spinning threads starve the decode/flow prefetch thread (measured here: 2
    # threads with prefetch ran at 7.2 clips/s busy-waiting, 18.2 passive)
    options: dict[str, Any] = {
        "num_cpus": threads,
        "runtime_env": {"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}},
        # over every node with room, not packed onto the first (Ray's default fills a node)
        "scheduling_strategy": "SPREAD",
    }
    if os.environ.get(CRASH_ENV):  # the test hook reaches actors on an existing cluster too
        options["runtime_env"]["env_vars"][CRASH_ENV] = os.environ[CRASH_ENV]
    device = "cpu"
    if want_gpu and gpus > 0:
        options["num_gpus"] = features.num_gpus_per_actor
        device = "cuda"
    return options, device, threads


def no_space(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an error it wraps, is a full disk (ENOSPC) or quota (EDQUOT)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc):  # re-raised by a library as another type
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _disk_full_message(
    fs: FeatureStore, files: dict[str, Path], failed: set[str], where: str
) -> str:
    """One line: the store, what is kept, what is left and about how much space it needs."""
    complete = fs.completed()
    left = [v for v in files if v not in complete and v not in failed]
    per_feature = fs.dtype.itemsize * sum(int(d) for d in fs.attrs.get("feature_dims", {}).values())
    lengths = [int(fs.meta(v)["num_features"]) for v in complete]
    need = ""
    if lengths and per_feature:
        mb = len(left) * per_feature * sum(lengths) / len(lengths) / 1e6
        need = f"about {mb:.1f} MB more are needed, "
    free = ""
    with contextlib.suppress(OSError, ValueError):
        free = f"{shutil.disk_usage(fs.location).free / 1e6:.1f} MB free"
    return (
        f"{fs.location}: the disk is full ({os.strerror(errno.ENOSPC)}) while writing {where}; "
        "stopped: "
        f"{len(complete)} videos are complete and kept, {len(left)} not extracted; {need}"
        f"{free}: free space and run again to continue"
    )


LOCK_FILE = ".extract.lock"


@contextlib.contextmanager
def extraction_lock(fs: FeatureStore) -> Iterator[None]:
    """Hold the store's extraction lock (``flock`` on ``STORE/.extract.lock``; the kernel
    drops it when the process dies, kill -9 included). A second run on the same store stops
    at once with one line naming the holder, instead of extracting every video again. Stores
    that are not local folders (fsspec URLs) have no lock."""
    import fcntl
    import socket

    if fs.local is None:
        yield
        return
    path = Path(fs.local) / LOCK_FILE
    with open(path, "a+", encoding="utf-8") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            raise ExtractError(
                f"{fs.location}: another extraction is writing this store ({holder}); wait for "
                "it to finish, or extract into another store"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}")
        file.flush()
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def _extract_on_actors(
    fs: FeatureStore,
    files: dict[str, Path],
    todo: deque[str],
    bad_ids: dict[str, str],
    features: FeaturesConfig,
    specs: dict[str, str],
    workers: int,
    summary: ExtractSummary,
    log: Callable[[str], None],
    progress_stream: Any,
) -> None:
    """Extract the videos ``todo`` on a pool of ``workers`` Ray actors into ``fs``, counting
    into ``summary``: a worker that dies or times out is replaced and its video retried up to
    ``features.max_retries`` times; a full disk stops the run with one message; the manifest
    is written whatever happens."""
    import ray
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    start = time.perf_counter()
    init_ray(log_to_driver=False)  # the progress bar is the output
    options, device, threads = _actor_options(features, workers, log)
    settings = clip_settings(features)
    remote = ray.remote(ExtractWorker)

    def new_actor():
        return remote.options(**options).remote(
            summary.store, features.extractor, specs, settings, device, threads
        )

    actors = [new_actor() for _ in range(workers)]
    attempts: dict[str, int] = {}
    running: dict[Any, tuple[int, str, float]] = {}  # ref -> (actor slot, video, started)
    starting: dict[Any, int] = {}  # ready() ref of a replacement actor -> its slot
    bar = Progress(len(todo), progress_stream)
    finished = 0

    def submit(slot: int) -> None:
        if todo:
            vid = todo.popleft()
            ref = actors[slot].extract.remote(vid, str(files[vid]))
            running[ref] = (slot, vid, time.perf_counter())

    def replace(slot: int) -> None:
        """A new actor for ``slot``, taking videos once its ``ready()`` returns."""
        actors[slot] = new_actor()
        starting[actors[slot].ready.remote()] = slot

    def actor_lost(slot: int, vid: str, reason: str) -> None:
        """Replace the actor of ``slot``; it takes videos once it is ready (on a cluster that
        lost a node it may wait for room, while the other actors go on with every video)."""
        nonlocal finished
        ray.kill(actors[slot], no_restart=True)
        replace(slot)
        attempts[vid] = attempts.get(vid, 0) + 1
        if attempts[vid] <= features.max_retries:
            summary.retried += 1
            log(f"{vid}: {reason}; worker replaced, retry {attempts[vid]}")
            todo.appendleft(vid)
            busy = {s for s, _, _ in running.values()} | set(starting.values())
            idle = [s for s in range(workers) if s not in busy]
            if idle:  # a ready worker with nothing left to do takes it now
                submit(idle[0])
        else:
            error = f"{files[vid]}: {reason} ({attempts[vid]} attempts)"
            fs.record(vid, "failed", error=error)
            summary.failed += 1
            summary.failures.append((vid, error))
            finished += 1
            bar.update(finished, summary.failed, summary.clips, f"{vid} failed")

    def replacement_ready(ref: Any) -> None:
        slot = starting.pop(ref)
        try:
            ray.get(ref)
        except (RayActorError, WorkerCrashedError) as exc:  # try once more, in a while
            log(f"a replacement worker could not start ({type(exc).__name__}); trying again")
            replace(slot)
            return
        submit(slot)

    disk_full: str | None = None  # the video of the first full-disk error
    manifest_error = ""
    try:
        try:
            devices = ray.get([a.ready.remote() for a in actors])
        except RayActorError as exc:
            raise ExtractError(f"extraction workers could not start: {exc}") from None
        log(f"{workers} workers ready on {', '.join(sorted(set(devices)))}")
        summary.startup_seconds = time.perf_counter() - start
        start = time.perf_counter()
        bar.start = start
        for slot in range(workers):
            submit(slot)
        idle_since: float | None = None  # since when videos wait and no actor is working
        while running or (todo and starting):
            if running:
                idle_since = None
            else:
                idle_since = idle_since or time.perf_counter()
                if time.perf_counter() - idle_since > features.video_timeout:
                    raise ExtractError(
                        f"{len(todo)} videos left and no extraction worker could start for "
                        f"{features.video_timeout:g} s: the Ray cluster has no room for one "
                        f"({options['num_cpus']} CPUs each); add a node and run again"
                    )
            ready, _ = ray.wait([*running, *starting], num_returns=1, timeout=1.0)
            for ref in ready:
                if ref in starting:
                    replacement_ready(ref)
                    continue
                slot, vid, _ = running.pop(ref)
                try:
                    result: VideoResult = ray.get(ref)
                except (RayActorError, WorkerCrashedError) as exc:
                    actor_lost(slot, vid, f"worker died ({type(exc).__name__})")
                    continue
                except RayTaskError as exc:  # an unexpected error inside the actor
                    cause = exc.cause if exc.cause is not None else exc
                    if no_space(cause):  # stop: every later video would fail the same way
                        disk_full = disk_full or vid
                        todo.clear()
                        with contextlib.suppress(OSError):
                            fs.remove(vid)  # the partial arrays: their space back
                        continue
                    error = f"{files[vid]}: {type(cause).__name__}: {cause}"
                    with contextlib.suppress(OSError):
                        fs.record(vid, "failed", error=error)
                    result = VideoResult(vid, "failed", error=error)
                finished += 1
                if result.status == "done":
                    summary.done += 1
                    summary.clips += result.clips
                    if result.padded:
                        summary.padded.append(vid)
                        log(f"{vid}: shorter than one clip; padded to one feature")
                else:
                    summary.failed += 1
                    summary.failures.append((vid, result.error or ""))
                bar.update(finished, summary.failed, summary.clips, f"{vid} {result.status}")
                submit(slot)
            now = time.perf_counter()
            for ref, (slot, vid, started) in list(running.items()):
                if now - started > features.video_timeout:
                    running.pop(ref)
                    actor_lost(slot, vid, f"timed out after {features.video_timeout:g} s")
    finally:
        bar.close()
        for actor in actors:
            ray.kill(actor, no_restart=True)
        summary.seconds = time.perf_counter() - start
        try:
            fs.write_manifest()
        except OSError as exc:
            if not no_space(exc):
                raise
            manifest_error = f" (manifest.parquet not written: {os.strerror(errno.ENOSPC)})"
    if disk_full is not None:
        failed = {vid for vid, _ in summary.failures} | set(bad_ids)
        message = _disk_full_message(fs, files, failed, disk_full)
        raise ExtractError(message + manifest_error)


def run_extraction(
    videos: str | os.PathLike[str],
    store: str | os.PathLike[str],
    features: FeaturesConfig,
    workers: int | None = None,
    overwrite: bool = False,
    extensions: list[str] | None = None,
    log: Callable[[str], None] = print,
    progress_stream=None,
) -> ExtractSummary:
    """Extract every video of a folder into ``store`` on a pool of Ray actors."""
    from features.video import VIDEO_EXTENSIONS

    extensions = extensions or list(VIDEO_EXTENSIONS)
    files = list_videos(videos, extensions)
    bad_ids = {vid: why for vid, path in files.items() if (why := unusable(vid, path))}
    attrs, specs = store_attrs(features)
    location = os.fspath(store)
    try:
        fs = FeatureStore.create(location, attrs, overwrite=overwrite)
    except ValueError as exc:
        raise ExtractError(f"{exc} (tal extract: pass --overwrite)") from None
    with extraction_lock(fs):
        complete = fs.completed()
        changed = [v for v in files if v in complete and source_changed(fs.meta(v), files[v])]
        for vid in changed:
            log(f"{files[vid]} changed since it was extracted: extracting it again")
            complete.discard(vid)
        todo = deque(v for v in files if v not in complete and v not in bad_ids)
        workers = max(1, min(workers or features.num_actors, len(todo) or 1))
        summary = ExtractSummary(
            store=location, total=len(files), skipped=len(files) - len(todo) - len(bad_ids)
        )
        summary.workers = workers
        for vid, reason in bad_ids.items():  # not extracted, so not in the manifest
            summary.failed += 1
            summary.failures.append((vid, reason))
            log(f"skipping {files[vid]}: {reason}")
        log(
            f"extracting {len(todo)} of {len(files)} videos into {location} "
            f"({summary.skipped} already complete) with {workers} workers"
        )
        if not todo:
            fs.write_manifest()
            return summary

        _extract_on_actors(
            fs, files, todo, bad_ids, features, specs, workers, summary, log, progress_stream
        )
        return summary


def extract_from_config(
    config: ExperimentConfig,
    videos: str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> ExtractSummary:
    """Extraction as one config describes it (the synthetic dataset is made when configured)."""
    if videos is None and config.data.synth is not None:
        from pipelines.synth import ensure_synth_dataset

        ensure_synth_dataset(config, log=log)
    return run_extraction(
        videos or config.data.videos,
        store or config.features.store,
        config.features,
        workers=workers,
        overwrite=overwrite,
        extensions=config.data.video_extensions,
        log=log,
    )
