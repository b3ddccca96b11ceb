"""Model directories that hold only tensors and data: what the model registry stores.

A model directory is ``tal_model.json`` (kind, format, a description as JSON data) with
``weights.safetensors`` (the network's state dict) and, when the description holds tensors
(I2Net's partner bank), ``tensors.safetensors``. Safetensors files are a JSON header and raw
buffers, so reading a model directory never unpickles anything and never runs code from the
files: a crafted file fails to parse, it cannot execute. Tensors inside the description are
stored by reference (``{"$tensor": "t3"}``) and put back on read.

A directory that holds an ``mlflow.pytorch`` model (``data/model.pth``: a pickle) is refused
with a message saying so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from features.errors import UserInputError
from features.state_dicts import state_mismatch
from features.weights import sha256_file

MODEL_FILE = "tal_model.json"
WEIGHTS_FILE = "weights.safetensors"
TENSORS_FILE = "tensors.safetensors"
MODEL_FORMAT = 1
TENSOR_REF = "$tensor"
PICKLED_MARKERS = ("data/model.pth", "data/pickle_module_info.txt", "python_model.pkl")


class ModelFileError(UserInputError):
    """A model directory that cannot be used; names the directory or file and why."""


@dataclass
class ModelFiles:
    """A model directory's content: its ``kind`` (``localizer``, ``extractor``), the
    description (JSON data, tensors put back) and the network's weights."""

    kind: str
    description: dict[str, object]
    weights: dict[str, Tensor]


def split_tensors(data: object, tensors: dict[str, Tensor] | None = None) -> tuple[object, dict]:
    """``data`` with every tensor replaced by a reference, and the tensors by name."""
    found: dict[str, Tensor] = {} if tensors is None else tensors
    if isinstance(data, Tensor):
        name = f"t{len(found)}"
        found[name] = data.detach().cpu().contiguous().clone()
        return {TENSOR_REF: name}, found
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise TypeError(f"model description: key {key!r} is not a string")
            out[key] = split_tensors(value, found)[0]
        return out, found
    if isinstance(data, (list, tuple)):
        return [split_tensors(v, found)[0] for v in data], found
    if data is None or isinstance(data, (str, int, float, bool)):
        return data, found
    raise TypeError(f"model description: {type(data).__name__} is neither data nor a tensor")


def join_tensors(data: object, tensors: dict[str, Tensor], where: str) -> object:
    """``data`` with each reference replaced by its tensor (``where`` names the file)."""
    if isinstance(data, dict):
        if set(data) == {TENSOR_REF}:
            name = data[TENSOR_REF]
            if not isinstance(name, str) or name not in tensors:
                raise ModelFileError(f"{where}: refers to tensor {name!r}, which is not stored")
            return tensors[name]
        return {k: join_tensors(v, tensors, where) for k, v in data.items()}
    if isinstance(data, list):
        return [join_tensors(v, tensors, where) for v in data]
    return data


def write_model_dir(
    path: str | os.PathLike[str],
    kind: str,
    description: dict[str, object],
    weights: dict[str, Tensor],
) -> Path:
    """Write a model directory at ``path`` (created; files already there are replaced)."""
    from safetensors.torch import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tree, tensors = split_tensors(description)
    plain = {k: v.detach().cpu().contiguous().clone() for k, v in weights.items()}
    save_file(plain, str(folder / WEIGHTS_FILE))
    files = {WEIGHTS_FILE: sha256_file(folder / WEIGHTS_FILE)}
    if tensors:
        save_file(tensors, str(folder / TENSORS_FILE))
        files[TENSORS_FILE] = sha256_file(folder / TENSORS_FILE)
    manifest = {"format": MODEL_FORMAT, "kind": kind, "files": files, "description": tree}
    (folder / MODEL_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return folder


def refuse_pickled(folder: Path, name: str) -> None:
    """Raise if ``folder`` holds a pickled model (``mlflow.pytorch``, a pickled pyfunc)."""
    pickled = [m for m in PICKLED_MARKERS if (folder / m).exists()]
    if pickled:
        raise ModelFileError(
            f"{name}: holds a pickled model ({pickled[0]}); loading it could run code from the "
            f"file, so only tensor-only models ({MODEL_FILE} + {WEIGHTS_FILE}) are loaded"
        )


def _load_tensors(path: Path, expected: str | None) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelFileError(f"{path}: missing")
    if expected is not None and sha256_file(path) != expected:
        raise ModelFileError(f"{path}: sha256 differs from the one recorded in {MODEL_FILE}")
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # not a safetensors file: a header that does not parse
        raise ModelFileError(f"{path}: not a safetensors file ({exc})") from None


def read_model_dir(path: str | os.PathLike[str], kind: str) -> ModelFiles:
    """Read a model directory of ``kind``; errors name the directory or file at fault."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: not a model directory")
    refuse_pickled(folder, str(folder))
    manifest_path = folder / MODEL_FILE
    if not manifest_path.is_file():
        raise ModelFileError(f"{folder}: not a tal model directory (no {MODEL_FILE})")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{manifest_path}: not JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("description"), dict):
        raise ModelFileError(f"{manifest_path}: expected an object with a 'description' object")
    if manifest.get("format") != MODEL_FORMAT:
        raise ModelFileError(
            f"{manifest_path}: model format {manifest.get('format')!r}, "
            f"this version reads {MODEL_FORMAT}"
        )
    if manifest.get("kind") != kind:
        raise ModelFileError(f"{manifest_path}: a {manifest.get('kind')!r} model, not a {kind!r}")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise ModelFileError(f"{manifest_path}: expected 'files' with each file's sha256")
    weights = _load_tensors(folder / WEIGHTS_FILE, files.get(WEIGHTS_FILE))
    tensors = (
        _load_tensors(folder / TENSORS_FILE, files.get(TENSORS_FILE))
        if TENSORS_FILE in files
        else {}
    )
    description = join_tensors(manifest["description"], tensors, str(manifest_path))
    assert isinstance(description, dict)
    return ModelFiles(kind, description, weights)


def load_weights(network: torch.nn.Module, weights: dict[str, Tensor], where: str) -> None:
    """Load ``weights`` into ``network`` exactly (every key, every shape); errors name
    ``where`` and the keys at fault."""
    mismatch = state_mismatch(network.state_dict(), weights)
    if mismatch:
        raise ModelFileError(f"{where}: weights do not fit the network ({mismatch})")
    network.load_state_dict(weights)
