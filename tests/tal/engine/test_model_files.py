"""Tensor-only model directories: round trips, a packaged localizer rebuilt from its files,
and damaged or crafted files refused with a message naming the file."""

from __future__ import annotations

import hashlib
import json
import pickle

import numpy as np
import pytest
import torch

from tal.config import config_from_dict
from tal.engine.model_files import (
    MODEL_FILE,
    ModelFileError,
    join_tensors,
    read_model_dir,
    split_tensors,
    write_model_dir,
)
from tal.engine.package import PackagedLocalizer
from tal.methods import build_method
from tal.methods.i2net import PartnerBank


def test_tensors_inside_data_round_trip(tmp_path):
    data = {"a": [torch.arange(3), {"b": torch.ones(2, 2, dtype=torch.float16)}], "c": "x"}
    tree, tensors = split_tensors(data)
    assert tree == {"a": [{"$tensor": "t0"}, {"b": {"$tensor": "t1"}}], "c": "x"}
    back = join_tensors(json.loads(json.dumps(tree)), tensors, "here")
    assert torch.equal(back["a"][0], data["a"][0]) and back["a"][1]["b"].dtype == torch.float16
    with pytest.raises(ModelFileError, match="here: refers to tensor 't9', which is not stored"):
        join_tensors({"$tensor": "t9"}, tensors, "here")
    with pytest.raises(TypeError, match="object is neither data nor a tensor"):
        split_tensors({"x": object()})


def _packaged() -> PackagedLocalizer:
    overrides = [
        "model.embed_dim=16",
        "model.num_heads=2",
        "model.num_levels=2",
        "model.max_seq_len=16",
        "model.attention_window=3",
    ]
    config = config_from_dict({}, "test", overrides)
    torch.manual_seed(0)
    network = build_method(config.model).build_network(8, 3)
    bank = PartnerBank(
        [torch.randn(8, 5).half(), torch.randn(8, 7).half()],
        torch.nn.functional.normalize(torch.randn(2, 8), dim=1),
        ["v1", "v2"],
        [0, 2],
    )
    attrs = {"fps": 10.0, "stride": 4, "clip_length": 8}
    return PackagedLocalizer(
        network,
        config.to_yaml_dict(),
        ["a", "b", "c"],
        ["rgb"],
        attrs,
        dict(bank.to_state()),
        8,
    )


def test_packaged_localizer_rebuilt_from_its_files_predicts_the_same(tmp_path):
    packaged = _packaged()
    folder = packaged.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == [
        MODEL_FILE,
        "tensors.safetensors",
        "weights.safetensors",
    ]
    # the description is JSON only: no pickle anywhere in the directory
    description = json.loads((folder / MODEL_FILE).read_text())["description"]
    assert description["method"] == packaged.config.model.name
    assert description["assets"]["feats"] == [{"$tensor": "t0"}, {"$tensor": "t1"}]
    again = PackagedLocalizer.load(folder)
    assert again.label_names == packaged.label_names and again.in_dim == 8
    for key, value in packaged.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[key], value), key
    feats = {"rgb": np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)}
    one = packaged.predict_features("v", feats)
    two = again.predict_features("v", feats)
    assert len(one) > 0 and one.score.tolist() == two.score.tolist()
    assert one.start.tolist() == two.start.tolist()


def test_damaged_or_crafted_files_are_refused(tmp_path):
    folder = _packaged().save(tmp_path / "model")
    manifest = json.loads((folder / MODEL_FILE).read_text())

    (folder / "weights.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ModelFileError, match=r"weights.safetensors: sha256 differs"):
        read_model_dir(folder, "localizer")

    for name in ("weights.safetensors", "tensors.safetensors"):
        (folder / name).write_bytes(pickle.dumps({"x": 1}))
        manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / MODEL_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"weights.safetensors: not a safetensors file"):
        read_model_dir(folder, "localizer")

    with pytest.raises(ModelFileError, match=r"a 'localizer' model, not a 'extractor'"):
        read_model_dir(folder, "extractor")
    (folder / MODEL_FILE).write_text("{nope")
    with pytest.raises(ModelFileError, match=rf"{MODEL_FILE}: not JSON"):
        read_model_dir(folder, "localizer")
    (folder / "data").mkdir()
    (folder / "data" / "model.pth").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"holds a pickled model \(data/model.pth\)"):
        read_model_dir(folder, "localizer")
    with pytest.raises(ModelFileError, match="not a model directory"):
        read_model_dir(tmp_path / "absent", "localizer")


def test_description_and_weights_are_checked_against_the_network(tmp_path):
    packaged = _packaged()
    folder = packaged.save(tmp_path / "model")
    manifest = json.loads((folder / MODEL_FILE).read_text())
    manifest["description"]["in_dim"] = 9
    (folder / MODEL_FILE).write_text(json.dumps(manifest))
    with pytest.raises(
        ModelFileError, match=r"wrong shapes: embed.* \(16, 8, 3\) \(expected \(16, 9, 3\)\)"
    ):
        PackagedLocalizer.load(folder)
    manifest["description"]["label_names"] = "abc"
    (folder / MODEL_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"description field 'label_names'"):
        PackagedLocalizer.load(folder)
    description = {**manifest["description"], "label_names": ["a", "b", "c"], "in_dim": 8}
    description["assets"] = None
    other = write_model_dir(tmp_path / "other", "localizer", description, {"w": torch.zeros(1)})
    with pytest.raises(ModelFileError, match=r"weights do not fit the network \(missing"):
        PackagedLocalizer.load(other)
