"""Make sure the synthetic dataset of a config exists: generate it once, reuse it after
(every pipeline that reads the config's data calls ``ensure_synth_dataset``; `tal synth`
writes a dataset to a folder directly)."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.errors import PipelineInputError
from tal.config import ExperimentConfig, SynthConfig
from tal.synth import generate_dataset


def _matches(root: Path, synth: SynthConfig) -> bool:
    meta = root / "synth.json"
    if not meta.is_file() or not (root / "annotations.json").is_file():
        return False
    try:
        params = json.loads(meta.read_text())["params"]
    except (ValueError, KeyError):
        return False
    wanted = synth.model_dump()
    return all(params.get(k) == v for k, v in wanted.items())


def ensure_synth_dataset(config: ExperimentConfig, workers: int = 2, log=print) -> Path:
    """Generate ``data.synth`` into ``data.root`` unless the same dataset is already there.

    Returns the annotation file. Regenerates when the settings changed; a dataset folder that
    was not made by ``tal synth`` is never overwritten.
    """
    synth = config.data.synth
    root = Path(config.data.root)
    if synth is None:
        return Path(config.data.annotations)
    if _matches(root, synth):
        log(f"synthetic dataset: reusing {root}")
        return root / "annotations.json"
    if root.exists() and any(root.iterdir()) and not (root / "synth.json").is_file():
        raise PipelineInputError(
            f"{root}: data.root is not empty and was not made by `tal synth`; "
            "refusing to overwrite it (point data.root elsewhere or remove data.synth)"
        )
    preset = f" (preset {synth.preset})" if synth.preset else ""
    log(
        f"synthetic dataset: generating {synth.videos} videos, {synth.classes} classes"
        f"{preset} in {root}"
    )
    summary = generate_dataset(root, workers=workers, **synth.model_dump())
    log(f"synthetic dataset: {summary.videos} videos, {summary.instances} instances")
    return Path(summary.annotations)
