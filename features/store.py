"""Zarr v3 feature store: one store per dataset and extractor, a manifest beside it.

Layout of a store ``STORE``::

    STORE/zarr.json              root group; attributes describe the extraction
    STORE/rgb/<video_id>         array [T, C] (float16 or float32), chunked along T, zstd
    STORE/flow/<video_id>        same T as rgb
    STORE/_done/<video_id>       empty group written LAST: the video is complete
    STORE/_manifest/<id>.json    one manifest record per video (atomic, one writer each)
    STORE/manifest.parquet       consolidated manifest (``write_manifest``)

Root attributes: ``extractor``, ``weights_digest``, ``weights_origin``, ``clip_length``,
``stride``, ``input_size``, ``fps``, ``dtype``, ``modalities``, ``feature_dims`` (modality ->
C) and ``format_version``. Array attributes: ``num_frames`` (of the resampled frame
sequence), ``fps``, ``duration``, ``num_features`` and ``complete``.

Feature timing (THE formulas of the project, defined in ``features.clips``): a video
resampled to ``fps`` has ``num_frames`` frames; clips of ``clip_length`` frames start every
``stride`` frames::

    num_features = max(1, (num_frames - clip_length) // stride + 1)
    centre_i     = (i * stride + clip_length / 2) / fps      seconds

A video shorter than one clip gives one (padded) feature. THUMOS14 convention: clip 16,
stride 4, 30 fps, so feature 0 is centred at 8/30 s.

Completeness: ``write_video`` hides the video (removes its ``_done`` marker), writes every
modality, sets each array's ``complete`` attribute, then writes the marker. Readers list and
return only marked videos, so a crash between writes leaves a hidden partial video that the
next ``write_video`` overwrites. Many processes may write different videos at once.

Use::

    store = FeatureStore.create(path_or_url, attrs)      # or FeatureStore.open(path, "r")
    store.write_video(video_id, {"rgb": a, "flow": b}, {"num_frames": n})
    store.read(video_id)                                  # [T, 2048]; ("rgb",) gives [T, 1024]
    store.record(video_id, "failed", error=str(exc))      # any process, one file per video
    store.write_manifest()                                # driver, at the end

Locations are local paths, ``file://`` URLs or other fsspec URLs (``storage_options``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.core.sync import sync

from features.atomic import atomic_path, atomic_write_bytes
from features.clips import feature_centers, num_features
from features.video_ids import check_video_id

__all__ = [
    "FORMAT_VERSION",
    "FeatureStore",
    "check_video_id",
    "feature_centers",
    "num_features",
]

FORMAT_VERSION = 1
DONE_GROUP = "_done"
MANIFEST_DIR = "_manifest"
MANIFEST_FILE = "manifest.parquet"
MODALITIES = ("rgb", "flow")
DTYPES = ("float16", "float32")
CHUNK_ROWS = 512
# Attributes that must agree between a store and whoever opens it to add features.
IDENTITY_KEYS = (
    "extractor",
    "weights_digest",
    "clip_length",
    "stride",
    "fps",
    "input_size",
    "dtype",
    "modalities",
    "feature_dims",
    "flow_method",
)
REQUIRED_KEYS = ("extractor", "weights_digest", "clip_length", "stride", "fps", "dtype")
MANIFEST_COLUMNS = (
    "video_id",
    "status",
    "num_frames",
    "num_features",
    "duration",
    "error",
    "seconds",
    "node",
)


def _local_path(location: str | os.PathLike[str]) -> Path | None:
    """The local path of a plain path or ``file://`` URL; None for other URLs."""
    text = os.fspath(location)
    if "://" not in text:
        return Path(text)
    parsed = urlparse(text)
    if parsed.scheme == "file":
        return Path(unquote(parsed.netloc + parsed.path))
    return None


def _normalise(value: Any) -> Any:
    """Attribute values as they read back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"feature store attributes: {value!r} is not JSON serialisable")


def _check_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    missing = [key for key in REQUIRED_KEYS if key not in attrs]
    if missing:
        raise ValueError(f"feature store attributes: missing {missing}")
    out = _normalise(dict(attrs))
    if out["dtype"] not in DTYPES:
        raise ValueError(
            f"feature store attributes: dtype must be one of {DTYPES}, got {out['dtype']!r}"
        )
    for key in ("clip_length", "stride"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise ValueError(
                f"feature store attributes: {key} must be an int >= 1, got {out[key]!r}"
            )
    fps = out["fps"]  # None: each video keeps its own rate (its array's fps attribute)
    if fps is not None and (not isinstance(fps, int | float) or fps <= 0):
        raise ValueError(f"feature store attributes: fps must be > 0 or null, got {fps!r}")
    modalities = out.setdefault("modalities", list(out.get("feature_dims", MODALITIES)))
    if not modalities or any(m not in MODALITIES for m in modalities):
        raise ValueError(
            f"feature store attributes: modalities must be a non-empty subset of {MODALITIES}, "
            f"got {modalities!r}"
        )
    dims = out.get("feature_dims")
    if dims is not None and sorted(dims) != sorted(modalities):
        raise ValueError(
            f"feature store attributes: feature_dims {dims!r} does not match modalities {modalities!r}"
        )
    out["format_version"] = FORMAT_VERSION
    return out


class FeatureStore:
    """A Zarr v3 feature store; build it with ``create`` or ``open``."""

    def __init__(
        self,
        location: str | os.PathLike[str],
        group: zarr.Group,
        storage_options: dict[str, Any] | None = None,
    ):
        self.location = os.fspath(location)
        self.local = _local_path(location)
        self.group = group
        self.storage_options = storage_options or {}
        self.attrs: dict[str, Any] = dict(group.attrs)
        self.modalities: tuple[str, ...] = tuple(self.attrs.get("modalities", MODALITIES))
        self.dtype = np.dtype(self.attrs.get("dtype", "float32"))
        # meta of complete videos read through this handle: a complete video's meta does not
        # change until it is written again or removed (through a handle, which drops it)
        self._meta_cache: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"FeatureStore({self.location!r})"

    # ------------------------------------------------------------------ open / create

    @staticmethod
    def _zarr_target(location: str | os.PathLike[str]) -> str:
        local = _local_path(location)
        return str(local) if local is not None else os.fspath(location)

    @classmethod
    def _exists(cls, location: str | os.PathLike[str], storage_options=None) -> bool:
        try:
            zarr.open_group(cls._zarr_target(location), mode="r", storage_options=storage_options)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            return False
        return True

    @classmethod
    def create(
        cls,
        location: str | os.PathLike[str],
        attrs: Mapping[str, Any],
        overwrite: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> FeatureStore:
        """A store at ``location`` with ``attrs``; an existing one with the same attributes is
        opened for appending, one with different attributes is an error unless ``overwrite``
        (which deletes it)."""
        wanted = _check_attrs(attrs)
        target = cls._zarr_target(location)
        exists = cls._exists(location, storage_options)
        if exists and not overwrite:
            return cls.open(location, mode="a", attrs=wanted, storage_options=storage_options)
        if exists:
            cls.open(location, mode="a", storage_options=storage_options)  # a feature store?
        local = _local_path(location)
        foreign = local is not None and local.exists() and not exists
        if foreign and local is not None and (not local.is_dir() or any(local.iterdir())):
            raise ValueError(f"feature store {location}: exists and is not a feature store")
        group = zarr.open_group(
            target, mode="w", storage_options=storage_options, zarr_format=3, attributes=wanted
        )
        for modality in wanted["modalities"]:
            group.create_group(modality)
        group.create_group(DONE_GROUP)
        store = cls(location, group, storage_options)
        if overwrite:
            store._remove_manifest_files()
        return store

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str],
        mode: str = "r",
        attrs: Mapping[str, Any] | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> FeatureStore:
        """An existing store, read-only (``"r"``) or for appending (``"a"``). With ``attrs``, a
        store whose identity attributes differ raises a ValueError listing the keys."""
        if mode not in ("r", "a"):
            raise ValueError(f"feature store {location}: mode must be 'r' or 'a', got {mode!r}")
        try:
            group = zarr.open_group(
                cls._zarr_target(location),
                mode="r" if mode == "r" else "r+",
                storage_options=storage_options,
            )
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            raise FileNotFoundError(f"feature store {location}: not found") from None
        store = cls(location, group, storage_options)
        version = store.attrs.get("format_version")
        if version is None:
            raise ValueError(f"feature store {location}: not a feature store (no format_version)")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"feature store {location}: format_version {version}, this code reads "
                f"{FORMAT_VERSION}"
            )
        if attrs is not None:
            store.check_attrs(attrs)
        return store

    def check_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Raise a ValueError listing the identity attributes that differ from ``attrs``."""
        wanted = _normalise(dict(attrs))
        if "feature_dims" in wanted:
            wanted.setdefault("modalities", list(wanted["feature_dims"]))
        differing = [
            key
            for key in IDENTITY_KEYS
            if key in wanted and not _same(wanted[key], self.attrs.get(key))
        ]
        if differing:
            details = ", ".join(
                f"{key}: store has {self.attrs.get(key)!r}, asked for {wanted[key]!r}"
                for key in differing
            )
            raise ValueError(
                f"feature store {self.location}: attributes differ ({details}); "
                "use overwrite=True to replace the store"
            )

    # ------------------------------------------------------------------ timing

    def num_features(self, num_frames: int) -> int:
        """Feature count of a video of ``num_frames`` resampled frames."""
        return num_features(num_frames, self.attrs["clip_length"], self.attrs["stride"])

    def centers(self, video_id: str) -> np.ndarray:
        """Centre time in seconds of each feature of ``video_id``."""
        meta = self.meta(video_id)
        return feature_centers(
            meta["num_features"], self.attrs["clip_length"], self.attrs["stride"], meta["fps"]
        )

    # ------------------------------------------------------------------ write

    def write_video(
        self,
        video_id: str,
        features: Mapping[str, np.ndarray],
        meta: Mapping[str, Any],
        seconds: float | None = None,
        node: str | None = None,
    ) -> None:
        """Write every modality of ``video_id``, then mark it complete and record it done.

        ``meta`` needs ``num_frames`` (resampled frames); ``fps`` defaults to the store's and
        ``duration`` to ``num_frames / fps``. Arrays are cast to the store's dtype. ``node``
        names the machine that extracted it (a Ray node id), for the manifest.
        """
        check_video_id(video_id)
        self._check_writable()
        arrays = self._check_features(video_id, features)
        rows = next(iter(arrays.values())).shape[0]
        info = self._check_meta(video_id, meta, rows)
        self._meta_cache.pop(video_id, None)
        self._unmark(video_id)  # hide an older version while it is rewritten
        for modality, data in arrays.items():
            array = self._subgroup(modality).create_array(
                video_id,
                shape=data.shape,
                dtype=self.dtype,
                chunks=(min(rows, CHUNK_ROWS), data.shape[1]),
                compressors=ZstdCodec(level=3),
                attributes={**info, "complete": False},
                overwrite=True,
            )
            array[...] = data
            array.update_attributes({"complete": True})
        self._subgroup(DONE_GROUP).create_group(video_id, attributes=info, overwrite=True)
        self.record(
            video_id,
            "done",
            num_frames=info["num_frames"],
            num_features=info["num_features"],
            duration=info["duration"],
            seconds=seconds,
            node=node,
        )

    def _check_features(
        self, video_id: str, features: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        keys = set(features)
        if keys != set(self.modalities):
            raise ValueError(
                f"{self.location}: video {video_id!r} has modalities {sorted(keys)}, "
                f"the store needs {list(self.modalities)}"
            )
        dims = self.attrs.get("feature_dims") or {}
        out: dict[str, np.ndarray] = {}
        for modality in self.modalities:
            data = np.asarray(features[modality])
            where = f"{self.location}: video {video_id!r} {modality}"
            if data.ndim != 2 or data.shape[0] < 1:
                raise ValueError(f"{where}: features must be [T, C] with T >= 1, got {data.shape}")
            if modality in dims and data.shape[1] != dims[modality]:
                raise ValueError(
                    f"{where}: {data.shape[1]} channels, the store has {dims[modality]}"
                )
            data = data.astype(self.dtype, copy=False)
            if not np.isfinite(data).all():
                raise ValueError(f"{where}: features hold NaN or inf (as {self.dtype})")
            out[modality] = data
        lengths = {m: a.shape[0] for m, a in out.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(
                f"{self.location}: video {video_id!r} modalities differ in length {lengths}"
            )
        return out

    def _check_meta(self, video_id: str, meta: Mapping[str, Any], rows: int) -> dict[str, Any]:
        where = f"{self.location}: video {video_id!r}"
        if "num_frames" not in meta:
            raise ValueError(f"{where}: meta needs num_frames")
        num_frames = int(meta["num_frames"])
        fps = meta.get("fps", self.attrs["fps"])
        if fps is None:
            raise ValueError(f"{where}: meta needs fps (the store keeps each video's own rate)")
        fps = float(fps)
        if num_frames < 1 or not fps > 0:
            raise ValueError(f"{where}: num_frames {num_frames} and fps {fps} must be positive")
        expected = num_features(num_frames, self.attrs["clip_length"], self.attrs["stride"])
        if rows != expected:
            raise ValueError(
                f"{where}: {rows} features, but {num_frames} frames with clip_length "
                f"{self.attrs['clip_length']} and stride {self.attrs['stride']} give {expected}"
            )
        duration = float(meta.get("duration", num_frames / fps))
        if not math.isfinite(duration) or duration < 0:
            raise ValueError(f"{where}: duration must be finite and >= 0, got {duration}")
        extra = {k: v for k, v in meta.items() if k not in ("num_frames", "fps", "duration")}
        info = {
            **_normalise(extra),
            "num_frames": num_frames,
            "fps": fps,
            "duration": duration,
            "num_features": rows,
        }
        return info

    def _key(self, *parts: str) -> str:
        return "/".join([self.group.path, *parts] if self.group.path else parts)

    def _unmark(self, video_id: str) -> None:
        store = self.group.store_path.store
        sync(store.delete(self._key(DONE_GROUP, video_id, "zarr.json")))  # hidden from here on
        sync(store.delete_dir(self._key(DONE_GROUP, video_id)))

    def _check_writable(self) -> None:
        if self.group.read_only:
            raise ValueError(f"feature store {self.location}: opened read-only (use mode='a')")

    def remove(self, video_id: str) -> None:
        """Delete ``video_id`` (marker first, then arrays and its manifest record)."""
        check_video_id(video_id)
        self._meta_cache.pop(video_id, None)
        self._check_writable()
        self._unmark(video_id)
        store = self.group.store_path.store
        for modality in self.modalities:  # also clears arrays a crashed writer left
            sync(store.delete_dir(self._key(modality, video_id)))
        self._drop_record(video_id)

    # ------------------------------------------------------------------ read

    def _has_marker(self, video_id: str) -> bool:
        store = self.group.store_path.store
        return sync(store.exists(self._key(DONE_GROUP, video_id, "zarr.json")))

    def is_complete(self, video_id: str) -> bool:
        """Whether every modality of ``video_id`` is written and marked done."""
        check_video_id(video_id)
        return self._has_marker(video_id)

    def completed(self) -> set[str]:
        """Ids of the complete videos (one listing of the markers)."""
        store = self.group.store_path.store
        base = self._key(DONE_GROUP) + "/"

        async def collect() -> list[str]:
            return [key async for key in store.list_prefix(base)]

        done = set()
        for key in sync(collect()):
            parts = key[len(base) :].split("/") if key.startswith(base) else []
            if len(parts) == 2 and parts[1] == "zarr.json":
                done.add(parts[0])
        return done

    def __contains__(self, video_id: object) -> bool:
        return isinstance(video_id, str) and video_id in self.completed()

    def _require(self, video_id: str) -> None:
        check_video_id(video_id)
        if not self._has_marker(video_id):
            raise KeyError(
                f"video {video_id!r} is not (completely) in feature store {self.location}"
            )

    def _subgroup(self, name: str) -> zarr.Group:
        """The store's group ``name`` (a modality, or the completion markers)."""
        node = self.group[name]
        if not isinstance(node, zarr.Group):
            raise ValueError(f"feature store {self.location}: {name} is not a group")
        return node

    def _array(self, modality: str, video_id: str) -> zarr.Array:
        node = self._subgroup(modality)[video_id]
        if not isinstance(node, zarr.Array):
            raise ValueError(
                f"feature store {self.location}: {modality}/{video_id} is not an array"
            )
        return node

    def meta(self, video_id: str) -> dict[str, Any]:
        """``num_frames``, ``fps``, ``duration``, ``num_features`` (and extra meta) of a video,
        read once per handle (datasets over one store share it)."""
        cached = self._meta_cache.get(video_id)
        if cached is None:
            self._require(video_id)
            cached = dict(self._subgroup(DONE_GROUP)[video_id].attrs)
            self._meta_cache[video_id] = cached
        return dict(cached)

    def read(self, video_id: str, modalities: str | Iterable[str] | None = None) -> np.ndarray:
        """Features ``[T, C]`` of ``video_id``; several modalities are concatenated along C."""
        self._require(video_id)
        names = (
            (modalities,) if isinstance(modalities, str) else tuple(modalities or self.modalities)
        )
        unknown = [m for m in names if m not in self.modalities]
        if unknown or not names:
            raise ValueError(
                f"feature store {self.location}: modalities {list(names)} not among {list(self.modalities)}"
            )
        parts = [np.asarray(self._array(m, video_id)[...]) for m in names]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    # ------------------------------------------------------------------ manifest

    def _fs(self):
        import fsspec

        return fsspec.url_to_fs(self.location, **self.storage_options)

    def _put_text(self, relpath: str, text: str) -> None:
        if self.local is not None:
            atomic_write_bytes(self.local / relpath, text.encode())
        else:
            fs, root = self._fs()
            fs.pipe_file(f"{root}/{relpath}", text.encode())

    def record(
        self,
        video_id: str,
        status: str,
        num_frames: int | None = None,
        num_features: int | None = None,
        duration: float | None = None,
        error: str | None = None,
        seconds: float | None = None,
        node: str | None = None,
    ) -> None:
        """Upsert the manifest row of ``video_id`` (its own file, so writers never collide)."""
        check_video_id(video_id)
        self._check_writable()
        if status not in ("done", "failed"):
            raise ValueError(
                f"manifest of {self.location}: status must be 'done' or 'failed', got {status!r}"
            )
        if status == "failed" and not error:
            raise ValueError(
                f"manifest of {self.location}: failed video {video_id!r} needs error text"
            )
        row = {
            "video_id": video_id,
            "status": status,
            "num_frames": None if num_frames is None else int(num_frames),
            "num_features": None if num_features is None else int(num_features),
            "duration": None if duration is None else float(duration),
            "error": None if status == "done" else str(error),
            "seconds": None if seconds is None else float(seconds),
            "node": None if node is None else str(node),
        }
        self._put_text(f"{MANIFEST_DIR}/{video_id}.json", json.dumps(row))

    def _records(self) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        if self.local is not None:
            folder = self.local / MANIFEST_DIR
            files = sorted(folder.glob("*.json")) if folder.is_dir() else []
            texts = []
            for path in files:
                try:
                    texts.append(path.read_text(encoding="utf-8"))
                except FileNotFoundError:  # removed meanwhile
                    continue
        else:
            fs, root = self._fs()
            paths = fs.glob(f"{root}/{MANIFEST_DIR}/*.json")
            texts = [fs.cat_file(p).decode() for p in sorted(paths)]
        for text in texts:
            row = json.loads(text)
            rows[row["video_id"]] = row
        return rows

    def _read_parquet(self):
        import pyarrow.parquet as pq

        if self.local is not None:
            local = self.local / MANIFEST_FILE
            return pq.read_table(local) if local.is_file() else None
        fs, root = self._fs()
        remote = f"{root}/{MANIFEST_FILE}"
        return pq.read_table(remote, filesystem=fs) if fs.exists(remote) else None

    def manifest(self):
        """The manifest as a pyarrow Table: manifest.parquet overlaid with newer records."""
        rows: dict[str, dict[str, Any]] = {}
        table = self._read_parquet()
        if table is not None:
            for row in table.to_pylist():
                rows[row["video_id"]] = {c: row.get(c) for c in MANIFEST_COLUMNS}
        rows.update(self._records())
        return _manifest_table([rows[k] for k in sorted(rows)])

    def write_manifest(self):
        """Consolidate the records into ``STORE/manifest.parquet`` (atomically); the table."""
        table = self.manifest()
        self._write_parquet(table)
        return table

    def _write_parquet(self, table) -> None:
        import pyarrow.parquet as pq

        if self.local is not None:
            with atomic_path(self.local / MANIFEST_FILE) as tmp:
                pq.write_table(table, tmp)
        else:  # object stores replace an object whole
            fs, root = self._fs()
            pq.write_table(table, f"{root}/{MANIFEST_FILE}", filesystem=fs)

    def _drop_record(self, video_id: str) -> None:
        if self.local is not None:
            (self.local / MANIFEST_DIR / f"{video_id}.json").unlink(missing_ok=True)
        else:
            fs, root = self._fs()
            path = f"{root}/{MANIFEST_DIR}/{video_id}.json"
            if fs.exists(path):
                fs.rm_file(path)
        table = self._read_parquet()
        if table is not None and video_id in table.column("video_id").to_pylist():
            import pyarrow.compute as pc

            self._write_parquet(table.filter(pc.not_equal(table.column("video_id"), video_id)))

    def _remove_manifest_files(self) -> None:
        if self.local is None:
            fs, root = self._fs()
            for path in [*fs.glob(f"{root}/{MANIFEST_DIR}/*.json"), f"{root}/{MANIFEST_FILE}"]:
                if fs.exists(path):
                    fs.rm_file(path)
            return
        for path in (self.local / MANIFEST_DIR).glob("*.json"):
            path.unlink(missing_ok=True)
        (self.local / MANIFEST_FILE).unlink(missing_ok=True)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-9)
    return a == b


def _manifest_table(rows: list[dict[str, Any]]):
    import pyarrow as pa

    schema = pa.schema(
        [
            ("video_id", pa.string()),
            ("status", pa.string()),
            ("num_frames", pa.int64()),
            ("num_features", pa.int64()),
            ("duration", pa.float64()),
            ("error", pa.string()),
            ("seconds", pa.float64()),
            ("node", pa.string()),
        ]
    )
    return pa.Table.from_pylist(
        [{c: r.get(c) for c in MANIFEST_COLUMNS} for r in rows], schema=schema
    )
