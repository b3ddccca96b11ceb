"""`ensure_synth_dataset` reuses a generated dataset only when its settings, preset included,
are the config's (a preset's resolved sizes are what both sides hold)."""

from __future__ import annotations

import yaml

from pipelines.synth import ensure_synth_dataset
from tal.config import load_config


def _config(tmp_path, **synth):
    path = tmp_path / "config.yaml"
    section = {"seed": 1, "videos": 3, "size": 64, "min_duration": 6, "max_duration": 7, **synth}
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "data": {"synth": section}}))
    return load_config(path)


def test_a_preset_dataset_is_reused_for_its_preset_only(tmp_path):
    logs: list[str] = []
    context = _config(tmp_path, preset="context")
    assert context.data.synth is not None and context.data.synth.classes == 8  # from the preset
    ann = ensure_synth_dataset(context, workers=1, log=logs.append)
    assert "generating 3 videos, 8 classes (preset context)" in logs[-2]
    ensure_synth_dataset(context, workers=1, log=logs.append)
    assert logs[-1].startswith("synthetic dataset: reusing")
    plain = _config(tmp_path, classes=8)  # same sizes, no preset: another dataset
    ensure_synth_dataset(plain, workers=1, log=logs.append)
    assert "generating 3 videos, 8 classes in" in logs[-2]
    assert ann.is_file()
