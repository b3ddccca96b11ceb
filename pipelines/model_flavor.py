"""The project's MLflow model flavours over tensor-only model directories.

A logged model is a ``tal.engine.model_files`` directory plus MLflow's ``MLmodel`` file with
the flavour ``tal_localizer`` (or ``tal_extractor`` for a fine-tuned I3D) and, for
localizers, ``python_function``, so ``mlflow.pyfunc.load_model`` works for MLflow users: its
loader is this module, which reads the directory without unpickling anything. The project's
own loading (``pipelines.registry.load_packaged``) never goes through ``MLmodel``'s loader
entry: it reads the directory directly, so an ``MLmodel`` naming another loader is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tal.engine.model_files import MODEL_FILE, MODEL_FORMAT, WEIGHTS_FILE
from tal.engine.package import KIND as LOCALIZER
from tal.engine.package import PackagedLocalizer

FLAVORS = {LOCALIZER: "tal_localizer", "extractor": "tal_extractor"}


def write_mlmodel(folder: Path, kind: str, model_id: str | None, run_id: str | None) -> None:
    """Write ``folder/MLmodel`` for a model directory of ``kind``."""
    import mlflow.pyfunc
    from mlflow.models import Model

    model = Model(model_id=model_id, run_id=run_id)
    model.add_flavor(
        FLAVORS[kind], format=MODEL_FORMAT, model_file=MODEL_FILE, weights=WEIGHTS_FILE
    )
    if kind == LOCALIZER:
        mlflow.pyfunc.add_to_model(model, loader_module=__name__)
    model.save(str(folder / "MLmodel"))


class LocalizerPyfunc:
    """``mlflow.pyfunc`` view of a packaged localizer: features in, detections out."""

    def __init__(self, model: PackagedLocalizer) -> None:
        self.model = model

    def predict(self, model_input: object, params: Mapping[str, object] | None = None) -> object:
        """Detections of each video. ``model_input``: a mapping ``{video_id: {modality:
        [T, C] array}}`` or a DataFrame with a ``video_id`` column and one column per
        modality holding ``[T, C]`` arrays; ``params`` may give ``fps``. Returns a DataFrame
        with one row per detection (video_id, label, start, end, score; seconds)."""
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            videos = {
                str(row["video_id"]): {m: np.stack(row[m]) for m in self.model.modalities}
                for _, row in model_input.iterrows()
            }
        elif isinstance(model_input, Mapping):
            videos = {str(k): dict(v) for k, v in model_input.items()}
        else:
            raise ValueError(
                f"tal_localizer: expected a DataFrame or a mapping of video id to features, "
                f"got {type(model_input).__name__}"
            )
        fps = (params or {}).get("fps")
        frames = []
        for video_id, feats in videos.items():
            found = self.model.predict_features(
                video_id, feats, float(fps) if fps is not None else None
            )
            frames.append(
                pd.DataFrame(
                    {
                        "video_id": found.video_ids,
                        "label": found.labels,
                        "start": found.start,
                        "end": found.end,
                        "score": found.score,
                    }
                )
            )
        columns = ["video_id", "label", "start", "end", "score"]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _load_pyfunc(path: str) -> LocalizerPyfunc:
    """``mlflow.pyfunc``'s entry: the model directory read as tensors and JSON."""
    return LocalizerPyfunc(PackagedLocalizer.load(path))
