"""Experiment configs: validation, error messages, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from tal.config import ConfigError, ExperimentConfig, dump_config, load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path, tmp_path):
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig)
    # the resolved config is itself a valid config (what runs save beside their outputs);
    # written outside configs/, where a test on another worker lists the shipped configs
    again = tmp_path / "resolved.yaml"
    again.write_text(dump_config(cfg))
    assert load_config(again) == cfg


def test_demo_config_is_sized_for_two_cores():
    cfg = load_config(REPO / "configs" / "demo.yaml")
    assert cfg.data.synth is not None and cfg.data.synth.videos <= 32
    assert cfg.training.num_workers <= 2 and cfg.features.num_actors <= 2
    assert not cfg.training.use_gpu and cfg.features.num_gpus_per_actor == 0


def test_defaults_derive_paths_from_run_dir():
    cfg = load_config(None, ["run_dir=/tmp/x"])
    assert cfg.data.annotations == Path("/tmp/x/data/annotations.json")
    assert cfg.features.store == Path("/tmp/x/features.zarr")
    assert cfg.pairs.output == Path("/tmp/x/pairs.parquet")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_file_and_dotted_key(tmp_path):
    path = write(tmp_path, "training:\n  epochz: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and "training.epochz" in msg and "epochs" in msg


def test_wrong_type_names_key_and_value(tmp_path):
    path = write(tmp_path, "model:\n  embed_dim: big\n")
    with pytest.raises(ConfigError, match=r"key 'model.embed_dim'.*integer.*'big'"):
        load_config(path)


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'trainer'"):
        load_config(write(tmp_path, "trainer: {}\n"))


def test_invalid_yaml_names_line(tmp_path):
    path = write(tmp_path, "training:\n  epochs: [1, 2\n")
    with pytest.raises(ConfigError, match=r"exp.yaml: not valid YAML \(line \d+"):
        load_config(path)


def test_missing_file():
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config("nope.yaml")


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_overrides_are_parsed_as_yaml_and_validated(tmp_path):
    path = write(tmp_path, "training:\n  epochs: 3\n")
    cfg = load_config(path, ["training.epochs=7", "evaluation.tiou_thresholds=[0.5, 0.75]"])
    assert cfg.training.epochs == 7
    assert cfg.evaluation.tiou_thresholds == [0.5, 0.75]
    cfg = load_config(path, ["data.synth.videos=5"])  # creates the missing section
    assert cfg.data.synth is not None and cfg.data.synth.videos == 5
    with pytest.raises(ConfigError, match=r"--set training.epochs=0.*'training.epochs'.*greater"):
        load_config(path, ["training.epochs=0"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_config(path, ["training.epochs"])
    with pytest.raises(ConfigError, match="holds a value, not a section"):
        load_config(path, ["training.epochs.x=1"])


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="max_duration"):
        load_config(None, ["data.synth.min_duration=30", "data.synth.max_duration=10"])
    with pytest.raises(ConfigError, match="tIoU thresholds must lie in"):
        load_config(None, ["evaluation.tiou_thresholds=[0.5, 1.5]"])
    with pytest.raises(ConfigError, match="must be even"):
        load_config(None, ["data.synth.size=101"])


def test_ata_extractor_settings_are_checked_and_the_backbone_starts_random():
    ata = ["features.extractor=ata", "features.modalities=[rgb]"]
    config = load_config(None, ata)
    assert config.backbone.init == "random" and config.features.ata.temporal == "aligned"
    assert load_config(None, []).backbone.init == "kinetics-rgb"
    with pytest.raises(ConfigError, match=r"RGB network: modalities must be \[rgb\]"):
        load_config(None, ["features.extractor=ata"])
    with pytest.raises(ConfigError, match="input_size 100 must be a multiple of ata.patch_size 8"):
        load_config(None, [*ata, "features.input_size=100"])
    with pytest.raises(ConfigError, match="ata.dim 30 must be a multiple of ata.heads 4"):
        load_config(None, [*ata, "features.ata.dim=30"])
    with pytest.raises(ConfigError, match="kinetics-rgb is I3D's"):
        load_config(None, [*ata, "backbone.init=kinetics-rgb"])
    with pytest.raises(ConfigError, match="backbone.modality must be rgb"):
        load_config(None, [*ata, "backbone.modality=flow"])
    with pytest.raises(ConfigError, match="features.ata.temporal"):
        load_config(None, [*ata, "features.ata.temporal=diagonal"])


def test_co2net_needs_both_streams():
    with pytest.raises(ConfigError, match=r"co2net needs features.modalities \[rgb, flow\]"):
        load_config(None, ["model.name=co2net", "features.modalities=[rgb]"])


def test_model_section_is_validated_by_its_method():
    config = load_config(None, ["model.name=asl", "model.combine=mean"])
    assert type(config.model).__name__ == "ASLConfig" and config.model.combine == "mean"
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'model.intra_attention' \(not a key of method actionformer\)",
    ):
        load_config(None, ["model.name=actionformer", "model.intra_attention=true"])
    with pytest.raises(
        ConfigError, match=r"unknown key 'model.embed_dim' \(not a key of method co2net\)"
    ):
        load_config(None, ["model.name=co2net", "model.embed_dim=64"])
    with pytest.raises(
        ConfigError,
        match=r"unknown method 'nope'; registered methods: actionformer, asl, co2net, (.*, )?i2net",
    ):
        load_config(None, ["model.name=nope"])
    with pytest.raises(ConfigError, match="use model.name: actionformer"):
        load_config(None, ["model.intra_attention=false", "model.inter_attention=false"])


def test_method_section_round_trips_through_yaml():
    from tal.config import config_from_text, dump_config

    config = load_config("configs/demo_co2net.yaml")
    again = config_from_text(dump_config(config))
    assert again == config and type(again.model).__name__ == "CO2NetConfig"
    assert again.model.attention_dim == 256


def test_a_synth_preset_fills_only_what_the_config_leaves_unset(tmp_path):
    path = write(tmp_path, "data:\n  synth:\n    preset: weak\n    videos: 9\n")
    synth = load_config(path).data.synth
    assert synth is not None
    assert (synth.preset, synth.videos, synth.classes, synth.max_duration) == ("weak", 9, 8, 4.5)
    with pytest.raises(ConfigError, match=r"data.synth.preset.*'standard', 'context'"):
        load_config(path, ["data.synth.preset=cinema"])
