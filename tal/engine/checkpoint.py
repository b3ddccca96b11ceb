"""Training checkpoints: one file with everything a resume or an inference needs.

``CheckpointState`` is the typed content. It is saved with ``torch.save`` as plain data and
read back with ``torch.load(weights_only=True)``, so a checkpoint holds only tensors and
plain data (the config as YAML-like data, label names, feature timing), never pickled
objects, and loading one never runs code from the file. Written through
``features.atomic.atomic_path``, so a run killed while saving keeps its previous checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import torch

from features.atomic import atomic_path
from features.errors import UserInputError

CHECKPOINT_FORMAT = 2

# JSON-like data as stored (the config, store attributes, history rows)
PlainData = dict[str, object]


class CheckpointError(UserInputError):
    """A checkpoint that cannot be used; names the file and what is wrong."""


@dataclass
class CheckpointState:
    """One training run after ``epoch`` epochs: weights (``model`` and its ``ema``), the
    optimiser, schedule and loss state, the RNG, the resolved experiment ``config`` (as
    data), the label names, input width and modalities, the feature store's attributes, the
    per-epoch ``history`` and the method's inference ``assets`` (I2Net's partner bank)."""

    epoch: int
    model: dict[str, torch.Tensor]
    config: PlainData
    label_names: list[str]
    in_dim: int
    modalities: list[str]
    ema: dict[str, torch.Tensor] = field(default_factory=dict)
    ema_updates: int = 0
    optimizer: PlainData = field(default_factory=dict)
    scheduler: PlainData = field(default_factory=dict)
    criterion: dict[str, torch.Tensor] = field(default_factory=dict)
    torch_rng: torch.Tensor | None = None
    feature_attrs: PlainData = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    assets: PlainData | None = None

    @property
    def inference_weights(self) -> dict[str, torch.Tensor]:
        """The weights inference uses: the EMA's (the model's when there is no EMA)."""
        return self.ema or self.model

    def last_metrics(self) -> dict[str, float]:
        """The last epoch's row of the history."""
        if not self.history:
            raise CheckpointError("checkpoint has no finished epoch")
        return dict(self.history[-1])


REQUIRED = tuple(
    f.name for f in fields(CheckpointState) if f.default is MISSING and f.default_factory is MISSING
)


def save_checkpoint(state: CheckpointState, path: str | os.PathLike[str]) -> Path:
    """Atomically write ``state``."""
    path = Path(path)
    # through an open file: given a path, torch.save records the (temporary) file's name
    with atomic_path(path) as tmp, open(tmp, "wb") as file:
        torch.save({**state_fields(state), "format": CHECKPOINT_FORMAT}, file)
    return path


def state_fields(state: CheckpointState) -> dict[str, object]:
    """The state's fields as a dict without copying tensors (``asdict`` deep-copies)."""
    return {f.name: getattr(state, f.name) for f in fields(state)}


def _what_file(path: Path, exc: Exception) -> str:
    """What ``path`` holds when torch cannot read it, in one line, for the error message."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    with open(path, "rb") as file:
        head = file.read(512)
    if head.startswith(b"PK"):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return f"a zip file that is not a complete torch checkpoint ({first})"
    if head[:1] == b"\x80":
        return "a plain pickle, not torch.save's zip format (refused by the weights-only reader)"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return f"{size} bytes that are not torch.save's zip format"
    return f"a text file of {size} bytes, not torch.save's zip format"


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> CheckpointState:
    """Read a checkpoint safely (``weights_only=True``); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, not a torch file, disallowed objects
        raise CheckpointError(
            f"{path}: cannot read as a checkpoint: {_what_file(path, exc)}"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a tal checkpoint (a {type(data).__name__})")
    missing = [k for k in ("format", *REQUIRED) if k not in data]
    if missing:
        raise CheckpointError(f"{path}: not a tal checkpoint, missing {missing}")
    if data["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {data['format']}, this version reads {CHECKPOINT_FORMAT}"
        )
    known = {f.name for f in fields(CheckpointState)}
    return CheckpointState(**{k: v for k, v in data.items() if k in known})
