"""bench/ata_pretraining.py: the variants start from the same image weights and differ only in
their temporal attention."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import ata_pretraining  # noqa: E402
import methods_suite as suite  # noqa: E402

from tal.config import load_config  # noqa: E402


def test_the_variants_share_everything_but_the_temporal_attention(tmp_path):
    cfg = suite.preset_config("configs/suite.yaml", "camera", tmp_path, [])
    args = argparse.Namespace(seeds=[0], scale=0.5, set=[], workers=0)
    configs = {}
    for key, variant in ata_pretraining.VARIANTS.items():
        run_dir = tmp_path / key
        settings = ata_pretraining.variant_settings(
            key, 0, cfg, 54, str(tmp_path / "image.pt"), args, "sqlite:///x", run_dir
        )
        config = load_config(settings[0], settings[1:])
        assert config.backbone.init == (str(tmp_path / "image.pt") if variant.image else "random")
        assert config.features.weights == str(run_dir / "backbone_rgb.pt")
        configs[key] = config
    ata = configs["ata"].features.ata
    assert (ata.temporal, ata.match) == ("aligned", "content")
    assert configs["ata-position"].features.ata.match == "with_position"
    assert configs["plain"].features.ata.temporal == "plain"

    def rest(key: str) -> str:  # everything but the temporal attention, run folder as RUN
        config = configs[key].model_copy(deep=True)
        config.features.ata.temporal, config.features.ata.match = "aligned", "content"
        assert config.name == f"ata-camera-{key}"
        config.name = "NAME"
        return config.model_dump_json().replace(str(tmp_path / key), "RUN")

    assert rest("ata-position") == rest("ata") == rest("plain")
    scratch = configs["ata-scratch"]
    assert (scratch.features.ata.temporal, scratch.features.ata.match) == ("aligned", "content")
    assert {a for a, _ in ata_pretraining.COMPARISONS} == {"ata"}
