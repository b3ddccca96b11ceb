"""Build the cross-video pairs file of an experiment (the partners of inter-video attention).

python -m pipelines pairs --config configs/demo.yaml [--store runs/demo/features.zarr]
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from features.store import FeatureStore
from pipelines.errors import PipelineInputError
from tal.config import ExperimentConfig
from tal.data.annotations import AnnotationSet, load_annotations
from tal.pairs import PairsResult, build_pairs, write_pairs


def _completed(store: str | os.PathLike[str]) -> set[str]:
    """Ids of the videos complete in a feature store; a missing store is a user error."""
    try:
        return FeatureStore.open(store).completed()
    except (FileNotFoundError, ValueError) as exc:
        raise PipelineInputError(f"{exc} (run `tal extract` first, or leave out --store)") from None


def pairs_inputs(
    config: ExperimentConfig, annotations: str | os.PathLike[str], store: str | None
) -> dict:
    """What a pairs file depends on: the annotation file's digest, the pairing settings and
    the videos complete in the store (when pairing is restricted to it)."""
    done = sorted(_completed(store)) if store is not None else None
    return {
        "annotations_sha256": hashlib.sha256(Path(annotations).read_bytes()).hexdigest(),
        "subsets": list(config.data.train_subsets),
        "per_video": config.pairs.per_video,
        "seed": config.pairs.seed,
        "store_videos_sha256": (
            hashlib.sha256("\n".join(done).encode()).hexdigest() if done is not None else None
        ),
    }


def _inputs_file(pairs_path: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(pairs_path)}.inputs.json")


def pairs_are_current(pairs_path: str | os.PathLike[str], inputs: dict) -> bool:
    """Whether ``pairs_path`` exists and was built from exactly ``inputs``."""
    record = _inputs_file(pairs_path)
    if not Path(pairs_path).is_file() or not record.is_file():
        return False
    try:
        return json.loads(record.read_text()) == inputs
    except ValueError:
        return False


def build_pairs_from_config(
    config: ExperimentConfig,
    annotations: AnnotationSet | str | os.PathLike[str] | None = None,
    store: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
) -> PairsResult:
    """Pairs of the config's training subsets, written to ``output`` (default pairs.output).

    ``annotations`` defaults to data.annotations (generated first when the config describes a
    synthetic dataset); with ``store``, only videos complete in that feature store are paired.
    """
    if annotations is None and config.data.synth is not None:
        from pipelines.synth import ensure_synth_dataset

        ensure_synth_dataset(config, log=log)
    if isinstance(annotations, AnnotationSet):
        ann = annotations
    else:
        ann = load_annotations(annotations if annotations is not None else config.data.annotations)
    subsets = list(config.data.train_subsets)
    videos = ann.subset(*subsets)
    if not videos:
        raise PipelineInputError(
            f"{ann.source}: no videos in subset {', '.join(subsets)}; nothing to pair "
            "(check data.train_subsets)"
        )
    available = None
    if store is not None:
        available = _completed(store)
        if not any(v.video_id in available for v in videos):
            raise PipelineInputError(
                f"feature store {store}: none of the {len(videos)} videos of subset "
                f"{', '.join(subsets)} is complete; run `tal extract` first"
            )
    result = build_pairs(
        ann,
        subsets=subsets,
        per_video=config.pairs.per_video,
        seed=config.pairs.seed,
        available=available,
    )
    path = write_pairs(result, output if output is not None else config.pairs.output)
    if not isinstance(annotations, AnnotationSet):  # a file: record what the pairs came from
        inputs = pairs_inputs(config, annotations or config.data.annotations, store)
        _inputs_file(path).write_text(json.dumps(inputs, indent=1) + "\n")
    log(result.summary())
    log(f"wrote {path}")
    return result
