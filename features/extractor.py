"""Per-video I3D RGB feature extraction: decode, resample, crop, clip, forward.

One ``RGBExtractor`` holds one network (loaded once, as a Ray actor will) and turns a video
file into ``[num_features, 1024]`` features with the timing of ``features.clips``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from features.clips import iter_clips, num_features
from features.i3d import InceptionI3d
from features.video import iter_frames


@dataclass(frozen=True)
class ClipSettings:
    """How frames become clips: the attributes that make features reproducible."""

    fps: float | None = None  # None keeps each video's own rate
    clip_length: int = 16
    stride: int = 4
    input_size: int = 224
    batch_size: int = 8  # clips per forward pass


@dataclass
class ExtractedVideo:
    features: np.ndarray  # float32 [num_features, 1024]
    num_frames: int  # frames after resampling
    fps: float  # rate the clips were cut at
    duration: float  # seconds
    padded: bool  # shorter than one clip: the last frame was repeated


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA where there is a GPU, else CPU; ``cuda`` without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA GPU is visible")
    return torch.device(device)


def to_network_input(clips: np.ndarray) -> torch.Tensor:
    """uint8 ``[B, T, H, W, C]`` clips -> float ``[B, C, T, H, W]`` in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(clips)).float()
    return (x / 127.5 - 1.0).permute(0, 4, 1, 2, 3)


class RGBExtractor:
    """I3D RGB features of whole videos, one network reused across videos."""

    def __init__(self, model: InceptionI3d, settings: ClipSettings, device: str = "auto") -> None:
        if model.in_channels != 3:
            raise ValueError(f"RGB extraction needs a 3-channel I3D, got {model.in_channels}")
        self.settings = settings
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def forward(self, clips: np.ndarray) -> np.ndarray:
        """Features of a batch of uint8 clips ``[B, T, H, W, 3]``."""
        x = to_network_input(clips).to(self.device, non_blocking=True)
        return self.model.features(x).float().cpu().numpy()

    def clip_batches(self, path: str | os.PathLike[str]) -> tuple[dict, Iterator[np.ndarray]]:
        """Video facts and an iterator of clip batches (decoding runs as it is consumed)."""
        s = self.settings
        info, indices, frames = iter_frames(path, s.fps, s.input_size)
        fps = s.fps or info.fps
        facts = {"num_frames": len(indices), "fps": fps, "duration": info.duration}

        def batches() -> Iterator[np.ndarray]:
            group: list[np.ndarray] = []
            for clip in iter_clips(frames, len(indices), s.clip_length, s.stride):
                group.append(clip)
                if len(group) == s.batch_size:
                    yield np.stack(group)
                    group = []
            if group:
                yield np.stack(group)

        return facts, batches()

    def extract(self, path: str | os.PathLike[str]) -> ExtractedVideo:
        facts, batches = self.clip_batches(path)
        feats = np.concatenate([self.forward(b) for b in batches])
        s = self.settings
        expected = num_features(facts["num_frames"], s.clip_length, s.stride)
        if len(feats) != expected:  # a decoder that returned fewer frames than it reported
            raise RuntimeError(f"{path}: got {len(feats)} features, expected {expected}")
        return ExtractedVideo(
            features=feats.astype(np.float32),
            num_frames=facts["num_frames"],
            fps=facts["fps"],
            duration=facts["duration"],
            padded=facts["num_frames"] < s.clip_length,
        )
