import numpy as np
import pytest

from features.flow import FLOW_BOUND, compute_flow, iter_flow, scale_flow


def _panning(n: int, dx: int, dy: int = 0, size: int = 64) -> np.ndarray:
    """Frames of a smooth random texture moving by (dx, dy) pixels per frame."""
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (size * 3, size * 3), dtype=np.uint8).astype(np.float32)
    import cv2

    big = cv2.GaussianBlur(big, (0, 0), 2.0)
    big = ((big - big.min()) / (big.max() - big.min()) * 255).astype(np.uint8)
    frames = []
    for i in range(n):
        y0, x0 = size - i * dy, size - i * dx  # content moves +dx right, +dy down
        crop = big[y0 : y0 + size, x0 : x0 + size]
        frames.append(np.repeat(crop[..., None], 3, axis=2))
    return np.stack(frames)


@pytest.mark.parametrize("method", ["dis", "tvl1"])
def test_flow_measures_a_known_shift(method):
    frames = _panning(4, dx=3, dy=-2)
    flow = compute_flow(frames, method)
    assert flow.shape == (4, 64, 64, 2) and flow.dtype == np.float32
    inner = flow[:, 16:-16, 16:-16]
    # 3 px right and 2 px up, scaled by 1/20
    assert np.median(inner[..., 0]) == pytest.approx(3 / FLOW_BOUND, abs=0.02)
    assert np.median(inner[..., 1]) == pytest.approx(-2 / FLOW_BOUND, abs=0.02)
    np.testing.assert_array_equal(flow[-1], flow[-2])  # the last frame repeats the one before


def test_flow_in_batches_equals_flow_at_once():
    frames = _panning(7, dx=1)
    whole = compute_flow(frames, "dis")
    pieces = np.concatenate(list(iter_flow([frames[:3], frames[3:4], frames[4:]], "dis")))
    np.testing.assert_array_equal(whole, pieces)


def test_single_frame_gets_zero_flow():
    flow = compute_flow(_panning(1, dx=1), "dis")
    assert flow.shape == (1, 64, 64, 2) and not flow.any()


def test_values_are_clipped_and_scaled():
    raw = np.array([-50.0, -20.0, -10.0, 0.0, 10.0, 20.0, 50.0], np.float32)
    np.testing.assert_allclose(scale_flow(raw), [-1, -1, -0.5, 0, 0.5, 1, 1])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="optical flow method 'farneback'"):
        compute_flow(_panning(2, dx=1), "farneback")
    with pytest.raises(ValueError, match="uint8 RGB frames"):
        compute_flow(np.zeros((2, 8, 8), np.uint8), "dis")
    with pytest.raises(ValueError, match="no frames"):
        compute_flow(np.zeros((0, 8, 8, 3), np.uint8), "dis")
