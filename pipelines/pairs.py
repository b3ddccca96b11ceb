"""Build the cross-video pairs file of an experiment (the partners of inter-video attention).

python -m pipelines.pairs --config configs/demo.yaml [--store runs/demo/features.zarr]
"""

from __future__ import annotations

import os
from collections.abc import Callable

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
    log(result.summary())
    log(f"wrote {path}")
    return result


def main() -> None:
    from pipelines.cli import run_module

    run_module("pairs")


if __name__ == "__main__":
    main()
