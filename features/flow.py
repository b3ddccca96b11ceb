"""Optical flow for the I3D flow stream: TV-L1 (the I3D paper's choice) or DIS (fast).

Flow is computed on greyscale versions of the already resampled and cropped frames. Frame i
gets the flow from frame i to frame i + 1; the last frame repeats the flow before it (a
single frame gets zero flow), so a video of N frames gives N flow frames and the flow
stream's clips, feature count and timing are exactly those of the RGB stream. Values in
pixels are clipped to [-20, 20] and scaled to [-1, 1], as in the I3D paper's preprocessing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Literal

import numpy as np

FlowMethod = Literal["tvl1", "dis"]
FLOW_METHODS: tuple[str, ...] = ("tvl1", "dis")
FLOW_BOUND = 20.0


def _engine(method: str):
    import cv2  # opencv-contrib: imported here, only flow needs it

    cv2.setNumThreads(1)  # deterministic and polite next to the network's threads
    if method == "tvl1":
        return cv2.optflow.DualTVL1OpticalFlow_create()  # type: ignore[attr-defined]
    if method == "dis":
        return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]
    raise ValueError(f"optical flow method {method!r}: expected one of {', '.join(FLOW_METHODS)}")


def _grey(frame: np.ndarray) -> np.ndarray:
    import cv2

    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"flow needs uint8 RGB frames [H, W, 3], got {frame.dtype} {frame.shape}")
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def scale_flow(flow: np.ndarray) -> np.ndarray:
    """Pixel displacements clipped to [-20, 20] and mapped to [-1, 1] (float32)."""
    return (np.clip(flow, -FLOW_BOUND, FLOW_BOUND) / FLOW_BOUND).astype(np.float32)


class FlowStream:
    """Flow of a frame sequence that arrives in batches (one frame of look-ahead kept)."""

    def __init__(self, method: str = "tvl1") -> None:
        self.method = method
        self._engine = _engine(method)
        self._last: np.ndarray | None = None  # grey frame waiting for its successor
        self._last_flow: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None

    def push(self, frames: np.ndarray) -> np.ndarray:
        """Flows ``[n, H, W, 2]`` for every frame before the newest one seen so far."""
        out = []
        for frame in frames:
            grey = _grey(frame)
            if self._last is not None:
                if grey.shape != self._last.shape:
                    raise ValueError(f"frame size changed from {self._last.shape} to {grey.shape}")
                flow = scale_flow(self._engine.calc(self._last, grey, None))
                out.append(flow)
                self._last_flow = flow
            self._last = grey
        if not out:
            h, w = frames.shape[1:3] if len(frames) else (0, 0)
            return np.zeros((0, h, w, 2), np.float32)
        return np.stack(out)

    def finish(self) -> np.ndarray:
        """The flow of the final frame: a repeat of the one before, zeros for a lone frame."""
        if self._last is None:
            raise ValueError("no frames given: cannot compute flow")
        last = self._last_flow
        if last is None:
            last = np.zeros((*self._last.shape, 2), np.float32)
        self._last = None
        return last[None]


def iter_flow(batches: Iterable[np.ndarray], method: str = "tvl1") -> Iterator[np.ndarray]:
    """Flow batches ``[n, H, W, 2]`` in [-1, 1] for frame batches ``[n, H, W, 3]``; same count."""
    stream = FlowStream(method)
    for batch in batches:
        flows = stream.push(batch)
        if len(flows):
            yield flows
    yield stream.finish()


def compute_flow(frames: np.ndarray, method: str = "tvl1") -> np.ndarray:
    """Flow ``[N, H, W, 2]`` in [-1, 1] of uint8 RGB frames ``[N, H, W, 3]``."""
    return np.concatenate(list(iter_flow([frames], method)))
