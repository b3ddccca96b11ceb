"""Training checkpoints: one file with everything a resume or an inference needs.

Saved with ``torch.save`` and read back with ``torch.load(weights_only=True)``, so a
checkpoint holds only tensors and plain data (the config as a JSON-like dict, label names,
feature timing), never pickled objects. Written to a temporary file and renamed, so a run
killed while saving keeps its previous checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; names the file and what is wrong."""


REQUIRED = ("format", "epoch", "model", "config", "label_names", "in_dim", "modalities")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Atomically write ``state`` (which must have the REQUIRED keys)."""
    missing = [k for k in REQUIRED if k not in {**state, "format": 1}]
    if missing:
        raise CheckpointError(f"{path}: checkpoint state lacks {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save({**state, "format": CHECKPOINT_FORMAT}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, disallowed objects
        raise CheckpointError(f"{path}: cannot read as a checkpoint ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a tal checkpoint (a {type(state).__name__})")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a tal checkpoint, missing {missing}")
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {state['format']}, this version reads {CHECKPOINT_FORMAT}"
        )
    return state
