"""Import existing per-video ``.npy`` features (ActionFormer style) into a feature store.

Users who already have THUMOS14 or ActivityNet features start from them instead of running
extraction. Input: a folder with one ``VIDEO_ID.npy`` per video, a 2-D float array, ``[T, C]``
(``layout="tc"``, ActionFormer) or ``[C, T]`` (``layout="ct"``, some ActivityNet sets). The
clip timing (``stride``, ``clip_length``, ``fps``) is not in the files and must be given;
ActionFormer's THUMOS14 I3D features are ``[T, 2048]`` float32 (RGB 1024, then flow 1024),
stride 4, clip 16, 30 fps: feature i is centred on frame ``4i + 8`` (``features.clips``).

Decisions, and why:

* Channels: with one modality the whole row is that modality. With two (``rgb``, ``flow``)
  the row is cut at ``split`` (rgb first, as ActionFormer concatenates them); without
  ``split`` at ``C / 2`` (an odd C is then an error). The expected C is the store's (when the
  store exists) or the most common C among the files; files with another C fail.
* Frame count: imported features carry none, and several counts give the same T under
  ``num_features``. We use the smallest, ``(T - 1) * stride + clip_length``, unless
  ``durations`` (from an annotation file; the caller loads it, ``features`` never imports
  ``tal``) gives a duration whose ``round(duration * fps)`` maps to exactly T; otherwise the
  smallest count is used and a note says so. Each video's meta has ``frames_from``
  (``"annotations"`` or ``"features"``) and ``duration`` (the annotation's when known, else
  ``num_frames / fps``); an annotation fps, if any, is kept as ``video_fps`` (``fps`` stays the
  store's: the centres are computed from it).
* Identity attributes: ``extractor`` names the source (default ``"imported"``, e.g.
  ``"actionformer-i3d"``); ``weights_digest`` is ``"unknown"`` unless given, because a digest
  of the ``.npy`` files would describe the data, not the network, and would differ for every
  subset of the same features (so appending would be refused). ``source`` records the folder.
* Re-running skips videos already complete; ``overwrite`` replaces the whole store. A bad
  file (unreadable, pickled, not 2-D, wrong C, NaN/inf, unusable video id) is recorded as
  failed with the reason and the run goes on. A file name that is not a valid video id is
  recorded under a percent-encoded id (``a%0Ab`` for ``a\\nb``) with the real name in the error.

Resized features (``resized=True``, ActivityNet style): each file's T steps span its
video's whole duration, whatever T is (BMN's 100, ActionFormer's 192 after up-sampling),
so every video has its own feature rate and no global stride/clip/fps describes them.
Convention (ActionFormer's, ``libs/datasets/anet.py``, fixed-length case): with
``feat_stride = duration * fps / T`` frames and ``num_frames = feat_stride``, the offset
``0.5 * num_frames / feat_stride`` is half a step, so step i is centred at
``(i + 0.5) * duration / T`` seconds (T equal cells tiling ``[0, duration]``, each feature
at its cell's centre), and its decoder maps step s back to ``(s + 0.5) * duration / T``.
The store says this with the project's one timing formula (``features.clips``): root
``stride = clip_length = 1`` and ``fps = null``; each video's ``fps`` is ``T / duration``
(its steps per second), ``num_frames = T`` and ``duration`` the annotation's, so
``FeatureTiming`` maps step i to ``(i + 0.5) / fps`` = the centre above. Durations come
from the annotations and are required for every file (a missing one stops the import,
naming the video). ActionFormer's own ActivityNet I3D features (stride 16, up-sampled with
``force_upsampling``) take their span from the features, ``T * 16`` frames at 25 fps,
rather than from the duration; the two agree up to the last partial clip, and we use the
annotation's duration because fixed-length sets (BMN's) carry no stride at all. (BMN's own
code lets its 100 steps span ``feature_frame / duration_frame * duration_second``, the
frames its extractor covered: a median 0.13 s short of the annotated duration on
ActivityNet 1.3, a few videos far more; ActionFormer, and we, use the annotated duration.)
``steps=N`` resamples each video to N steps at import (linear, ``align_corners=False``,
exactly ``torch.nn.functional.interpolate(mode="linear")``, as ActionFormer up-samples to
``max_seq_len`` when it loads), so the store holds what the model reads; meta then keeps
the file's own T as ``source_num_features``. Shrinking is allowed but not anti-aliased.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from features.clips import num_features
from features.errors import UserInputError
from features.store import DTYPES, MODALITIES, FeatureStore
from features.video_ids import MAX_VIDEO_ID_BYTES, check_video_id

__all__ = [
    "FeatureImportError",
    "ImportSummary",
    "import_features",
    "list_feature_files",
    "resample_linear",
    "smallest_num_frames",
]

LAYOUTS = ("tc", "ct")
SUFFIX = ".npy"
NPY_MAGIC = b"\x93NUMPY"
Durations = Mapping[str, tuple[float, float | None] | float]


class FeatureImportError(UserInputError):
    """The import as a whole cannot run (missing folder, no files, bad options)."""


@dataclass
class ImportSummary:
    """What one import did: video ids imported, skipped (already complete) and failed."""

    store: str
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # manifest id -> reason
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        return (
            f"imported {len(self.imported)}, skipped {len(self.skipped)} (already complete), "
            f"failed {len(self.failed)}"
        )


def smallest_num_frames(count: int, clip_length: int, stride: int) -> int:
    """The smallest frame count of ``count`` full clips (``num_features`` maps it to count).

    For one feature this is ``clip_length``, not 1: imported features come from full clips.
    """
    if count < 1:
        raise ValueError(f"feature count must be >= 1, got {count}")
    return (count - 1) * stride + clip_length


def resample_linear(data: np.ndarray, steps: int) -> np.ndarray:
    """``[T, C]`` -> ``[steps, C]`` by linear interpolation along T with
    ``align_corners=False`` (``torch.nn.functional.interpolate(mode="linear")``, what
    ActionFormer applies to ActivityNet features): output j samples input position
    ``(j + 0.5) * T / steps - 0.5``, clamped at 0, between its two neighbours."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    count = len(data)
    if count == steps:
        return data
    # positions in float32, as torch computes them, so that the results agree to ~1e-6
    scale, half = np.float32(count / steps), np.float32(0.5)
    source = np.maximum(scale * (np.arange(steps, dtype=np.float32) + half) - half, 0)
    low = np.minimum(np.floor(source).astype(np.int64), count - 1)
    high = np.minimum(low + 1, count - 1)
    weight = (source - low.astype(np.float32)).astype(np.float64)[:, None]
    values = np.asarray(data, dtype=np.float64)
    return (1.0 - weight) * values[low] + weight * values[high]


def list_feature_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The ``*.npy`` files of ``folder`` (not recursive), sorted by name."""
    root = Path(folder)
    if not root.is_dir():
        raise FeatureImportError(f"{root}: feature folder not found (or not a folder)")
    return sorted(
        p for p in root.iterdir() if p.name.endswith(SUFFIX) and len(p.name) > len(SUFFIX)
    )


def _escape(c: str) -> str:
    if c in "/\\%" or ord(c) < 32 or ord(c) == 127:
        return f"%{ord(c):02X}"
    if 0xDC80 <= ord(c) <= 0xDCFF:  # a byte of a file name that is not UTF-8
        return f"%{ord(c) - 0xDC00:02X}"
    if 0xD800 <= ord(c) <= 0xDFFF:
        return f"%u{ord(c):04X}"
    return c


def _manifest_id(name: str) -> str:
    """A usable manifest id for a file name that is not a valid video id (percent-encoded;
    a name too long is cut and ended with a digest of the whole name)."""
    out = "".join(_escape(c) for c in name).replace("..", ".%2E")
    if out.startswith("."):
        out = "%2E" + out[1:]
    if out.strip() == "" or out == "zarr.json":
        out = "".join(f"%{ord(c):02X}" for c in out) or "%00"
    if len(out.encode()) > MAX_VIDEO_ID_BYTES:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        out = out.encode()[: MAX_VIDEO_ID_BYTES - 17].decode("utf-8", "ignore") + "~" + digest
    return out


def _channels_of(path: Path, layout: str) -> int | None:
    """C from the file header alone (memory-mapped, nothing read); None if unusable."""
    try:
        header = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception:  # reported when the file is really loaded
        return None
    if not isinstance(header, np.ndarray) or header.ndim != 2:
        return None
    return int(header.shape[1] if layout == "tc" else header.shape[0])


def _feature_dims(channels: int, modalities: Sequence[str], split: int | None) -> dict[str, int]:
    if len(modalities) == 1:
        if split is not None and split != channels:
            raise FeatureImportError(
                f"split {split} given for one modality ({modalities[0]}) of {channels} channels"
            )
        return {modalities[0]: channels}
    if split is None:
        if channels % 2:
            raise FeatureImportError(
                f"the files have {channels} channels, which cannot be halved into "
                f"{' and '.join(modalities)}; give split (--split N)"
            )
        split = channels // 2
    if not 0 < split < channels:
        raise FeatureImportError(f"split must be between 1 and {channels - 1}, got {split}")
    return {modalities[0]: split, modalities[1]: channels - split}


def _load(path: Path, layout: str, channels: int) -> np.ndarray:
    """The ``[T, C]`` array of one file; a ValueError with a readable reason otherwise."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
    except OSError as exc:
        raise ValueError(f"cannot be read ({type(exc).__name__}: {exc})") from None
    if magic != NPY_MAGIC:
        raise ValueError(f"not a .npy file (starts with {magic!r}, not {NPY_MAGIC!r})")
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError as exc:  # pickled or object data, or not a .npy file at all
        raise ValueError(f"not loadable as a numpy array without pickle ({exc})") from None
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot be read ({type(exc).__name__}: {exc})") from None
    expect = "[T, C]" if layout == "tc" else "[C, T]"
    if data.ndim != 2:
        raise ValueError(f"expected a 2-D {expect} array (layout {layout}), got shape {data.shape}")
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise ValueError(f"dtype {data.dtype} is not a real number type")
    if layout == "ct":
        data = data.T
    if data.shape[1] != channels:
        raise ValueError(
            f"{data.shape[1]} channels (shape {data.shape} as [T, C]), expected {channels}"
            + (" (wrong --layout?)" if data.shape[0] == channels else "")
        )
    if data.shape[0] < 1:
        raise ValueError("no features (T = 0)")
    finite = np.isfinite(data)
    if not finite.all():
        bad = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(f"holds NaN or inf in {len(bad)} of {len(data)} rows (first row {bad[0]})")
    return data


def _frames(
    video_id: str,
    count: int,
    clip_length: int,
    stride: int,
    fps: float,
    durations: Durations | None,
    notes: list[str],
) -> dict[str, Any]:
    """``num_frames``, ``duration`` and provenance of a video of ``count`` features."""
    smallest = smallest_num_frames(count, clip_length, stride)
    entry = None if durations is None else durations.get(video_id)
    if entry is None:
        if durations is not None:
            notes.append(f"{video_id}: not in the annotations; num_frames {smallest} (smallest)")
        return {"num_frames": smallest, "duration": smallest / fps, "frames_from": "features"}
    duration, video_fps = entry if isinstance(entry, tuple) else (entry, None)
    meta: dict[str, Any] = {"duration": float(duration)}
    if video_fps is not None:
        meta["video_fps"] = float(video_fps)
    frames = round(float(duration) * fps)
    if frames >= 1 and num_features(frames, clip_length, stride) == count:
        return {**meta, "num_frames": frames, "frames_from": "annotations"}
    got = num_features(frames, clip_length, stride) if frames >= 1 else 0
    notes.append(
        f"{video_id}: duration {duration} s at {fps} fps is {frames} frames = {got} features, "
        f"the file has {count}; num_frames {smallest} (smallest count giving {count})"
    )
    return {**meta, "num_frames": smallest, "frames_from": "features"}


def _resized_meta(video_id: str, count: int, durations: Durations) -> dict[str, Any]:
    """Meta of a resized video of ``count`` steps spanning its annotated duration."""
    entry = durations[video_id]
    duration, video_fps = entry if isinstance(entry, tuple) else (entry, None)
    duration = float(duration)
    if not (math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration {duration} in the annotations; resized features need > 0")
    meta: dict[str, Any] = {
        "num_frames": count,
        "fps": count / duration,
        "duration": duration,
        "frames_from": "resized",
    }
    if video_fps is not None:
        meta["video_fps"] = float(video_fps)
    return meta


def _check_resized(
    files: Sequence[Path],
    durations: Durations | None,
    steps: int | None,
    store_attrs: dict | None,
    file_prefix: str,
) -> None:
    """Whole-import checks of resized mode: every file's video has a duration, and an
    existing store was resized the same way."""
    if durations is None:
        raise FeatureImportError(
            "resized features need each video's duration: give the annotations (--annotations)"
        )
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise FeatureImportError(f"steps must be an integer >= 1, got {steps!r}")
    missing = []
    for path in files:
        name = path.name[: -len(SUFFIX)].removeprefix(file_prefix)
        try:
            video_id = check_video_id(name)
        except ValueError:
            continue  # recorded as failed by the import loop
        if video_id not in durations:
            missing.append(video_id)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FeatureImportError(
            f"resized features: video {missing[0]!r}{more} has no duration in the annotations; "
            "each file's steps span its video's duration, so every video needs one"
        )
    if store_attrs is not None:
        if store_attrs.get("timing") != "resized":
            raise FeatureImportError(
                "the store holds features at a global stride/fps, not resized ones; "
                "use another store or overwrite"
            )
        if store_attrs.get("steps") != steps:
            raise FeatureImportError(
                f"the store was imported with steps {store_attrs.get('steps')}, asked for "
                f"{steps}; use the same --steps, another store or overwrite"
            )


def import_features(
    folder: str | os.PathLike[str],
    store_location: str | os.PathLike[str],
    *,
    stride: int = 4,
    clip_length: int = 16,
    fps: float = 30.0,
    modalities: Sequence[str] = ("rgb", "flow"),
    layout: str = "tc",
    split: int | None = None,
    durations: Durations | None = None,
    extractor: str = "imported",
    weights_digest: str = "unknown",
    dtype: str = "float32",
    overwrite: bool = False,
    resized: bool = False,
    steps: int | None = None,
    file_prefix: str = "",
    storage_options: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import every ``*.npy`` of ``folder`` into the store (see the module docstring).

    ``durations`` maps video id to ``(duration_seconds, video_fps or None)`` (or a bare
    duration). With ``resized`` each file spans its video's duration (``stride``,
    ``clip_length`` and ``fps`` are not used; ``durations`` is required) and ``steps``
    resamples every video to that many steps. ``file_prefix`` (ActionFormer's, ``v_`` for
    ActivityNet) is removed from the start of file names to give video ids. Per-file problems become failed manifest rows;
    problems with the whole import raise FeatureImportError. The consolidated manifest is
    written at the end.
    """
    modalities = tuple(modalities)
    if not modalities or len(set(modalities)) != len(modalities):
        raise FeatureImportError(f"modalities must be distinct, got {list(modalities)}")
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise FeatureImportError(f"unknown modalities {unknown}; choose from {list(MODALITIES)}")
    if len(modalities) == 2:
        modalities = tuple(m for m in MODALITIES if m in modalities)  # rgb first, as stored
    if dtype not in DTYPES:
        raise FeatureImportError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if layout not in LAYOUTS:
        raise FeatureImportError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    for name, value in (("stride", stride), ("clip_length", clip_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FeatureImportError(f"{name} must be an integer >= 1, got {value!r}")
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise FeatureImportError(f"fps must be > 0, got {fps!r}")
    if steps is not None and not resized:
        raise FeatureImportError("steps (--steps) resamples resized features: give --resized")
    if resized:  # one step per "frame": the per-video fps alone says where each step is
        stride, clip_length = 1, 1
    files = list_feature_files(folder)
    if not files:
        raise FeatureImportError(f"{folder}: no *{SUFFIX} files")
    say = log or (lambda msg: None)

    dims = existing = None
    if not overwrite:
        try:
            existing = FeatureStore.open(store_location, "r", storage_options=storage_options).attrs
            dims = existing.get("feature_dims")
        except FileNotFoundError:
            dims = None
        except ValueError as exc:  # there, but not a feature store (or another format)
            raise FeatureImportError(str(exc)) from None
    if resized:
        _check_resized(files, durations, steps, existing, file_prefix)
    if dims:
        channels = sum(dims[m] for m in dims)
        if set(dims) == set(modalities) and len(modalities) == 2:
            split = dims[modalities[0]] if split is None else split
    else:
        counts = Counter(c for c in (_channels_of(p, layout) for p in files) if c)
        if not counts:
            raise FeatureImportError(
                f"{folder}: none of the {len(files)} *{SUFFIX} files is a 2-D numeric array"
            )
        channels = counts.most_common(1)[0][0]
    feature_dims = _feature_dims(channels, modalities, split)

    attrs = {
        "extractor": extractor,
        "weights_digest": weights_digest,
        "clip_length": clip_length,
        "stride": stride,
        "fps": fps,
        "dtype": dtype,
        "modalities": list(modalities),
        "feature_dims": feature_dims,
        "source": str(Path(folder).resolve()),
        "layout": layout,
    }
    if resized:
        attrs |= {"fps": None, "timing": "resized", "steps": steps}
    try:
        store = FeatureStore.create(
            store_location, attrs, overwrite=overwrite, storage_options=storage_options
        )
    except ValueError as exc:
        raise FeatureImportError(str(exc)) from None
    summary = ImportSummary(store=store.location)
    done = store.completed()
    cut = feature_dims[modalities[0]]
    limit = float(np.finfo(store.dtype).max)
    for index, path in enumerate(files, 1):
        name = path.name[: -len(SUFFIX)].removeprefix(file_prefix)
        try:
            video_id = check_video_id(name)
        except ValueError as exc:
            key = _manifest_id(name)
            reason = f"file {path.name!r}: {exc}; recorded as {key!r}"
            store.record(key, "failed", error=reason)
            summary.failed[key] = reason
            say(f"[{index}/{len(files)}] failed {key}: {reason}")
            continue
        if video_id in done:
            summary.skipped.append(video_id)
            continue
        started = time.perf_counter()
        try:
            data = _load(path, layout, channels)
            peak = float(np.abs(data).max())
            if peak > limit:
                raise ValueError(f"values up to {peak:.4g} overflow {dtype} (max {limit:.4g})")
            if resized:
                assert durations is not None  # checked by _check_resized
                count = len(data)
                if steps is not None:
                    data = resample_linear(data, steps)
                meta = _resized_meta(video_id, len(data), durations)
                if steps is not None:
                    meta["source_num_features"] = count
            else:
                meta = _frames(
                    video_id, len(data), clip_length, stride, fps, durations, summary.notes
                )
                meta["fps"] = fps
            parts = (
                {modalities[0]: data}
                if len(modalities) == 1
                else {modalities[0]: data[:, :cut], modalities[1]: data[:, cut:]}
            )
            store.write_video(video_id, parts, meta, seconds=time.perf_counter() - started)
        except Exception as exc:  # one bad file must not stop the import
            reason = f"file {path.name}: {exc}"
            store.record(video_id, "failed", error=reason)
            summary.failed[video_id] = reason
            say(f"[{index}/{len(files)}] failed {video_id}: {reason}")
            continue
        summary.imported.append(video_id)
        say(f"[{index}/{len(files)}] {video_id}: {len(data)} features")
    store.write_manifest()
    return summary
