"""Inception-I3D (Carreira and Zisserman, 2017) in PyTorch, for RGB (3 channels) and flow (2).

Parameter names and shapes follow the widely used pytorch-i3d checkpoints
(``rgb_imagenet.pt``, ``flow_imagenet.pt``): modules ``Conv3d_1a_7x7`` ... ``Mixed_5c`` and
``logits``, each unit holding ``conv3d`` and ``bn``, inception branches ``b0, b1a, b1b, b2a,
b2b, b3b``. Convolutions and max pools use TensorFlow's SAME padding, as the original weights
were trained with. Inputs are ``B x C x T x H x W`` scaled to [-1, 1].

Features are the 1024 channels of ``Mixed_5c`` averaged over time and space: for a
16-frame 224-px clip this is exactly the reference ``AvgPool3d([2, 7, 7])``; for smaller
inputs, where that pool does not fit, it still gives one 1024-vector per clip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 1024
NUM_KINETICS_CLASSES = 400

# (name, in_channels, [b0, b1a, b1b, b2a, b2b, b3b]) of the inception blocks.
INCEPTION_BLOCKS = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)


def _same_pad(
    x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]
) -> torch.Tensor:
    """Pad T, H, W as TensorFlow's SAME does (the extra pixel goes after)."""
    pads: list[int] = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride), strict=True):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d (SAME padding) + BatchNorm + ReLU, or a plain biased conv for the logits."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        batch_norm: bool = True,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.activation = kernel, stride, activation
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=not batch_norm)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    """Max pool with SAME padding (zero padding is exact here: inputs follow a ReLU)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    def __init__(self, in_channels: int, out: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, out[0])
        self.b1a = Unit3D(in_channels, out[1])
        self.b1b = Unit3D(out[1], out[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, out[3])
        self.b2b = Unit3D(out[3], out[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, out[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1
        )


class InceptionI3d(nn.Module):
    """Inception-I3D with the pytorch-i3d module names; ``features`` gives [B, 1024]."""

    def __init__(self, in_channels: int = 3, num_classes: int = NUM_KINETICS_CLASSES) -> None:
        super().__init__()
        if in_channels not in (2, 3):
            raise ValueError(f"in_channels: expected 3 (RGB) or 2 (flow), got {in_channels}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.feature_dim = FEATURE_DIM
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(*INCEPTION_BLOCKS[0][1:])
        self.Mixed_3c = InceptionModule(*INCEPTION_BLOCKS[1][1:])
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule(*INCEPTION_BLOCKS[2][1:])
        self.Mixed_4c = InceptionModule(*INCEPTION_BLOCKS[3][1:])
        self.Mixed_4d = InceptionModule(*INCEPTION_BLOCKS[4][1:])
        self.Mixed_4e = InceptionModule(*INCEPTION_BLOCKS[5][1:])
        self.Mixed_4f = InceptionModule(*INCEPTION_BLOCKS[6][1:])
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule(*INCEPTION_BLOCKS[7][1:])
        self.Mixed_5c = InceptionModule(*INCEPTION_BLOCKS[8][1:])
        self.dropout = nn.Dropout(0.5)
        self.logits = Unit3D(FEATURE_DIM, num_classes, batch_norm=False, activation=False)

    ENDPOINTS = (
        "Conv3d_1a_7x7",
        "MaxPool3d_2a_3x3",
        "Conv3d_2b_1x1",
        "Conv3d_2c_3x3",
        "MaxPool3d_3a_3x3",
        "Mixed_3b",
        "Mixed_3c",
        "MaxPool3d_4a_3x3",
        "Mixed_4b",
        "Mixed_4c",
        "Mixed_4d",
        "Mixed_4e",
        "Mixed_4f",
        "MaxPool3d_5a_2x2",
        "Mixed_5b",
        "Mixed_5c",
    )

    def trunk(self, x: torch.Tensor, until: str = "Mixed_5c") -> torch.Tensor:
        """Activations at endpoint ``until`` ([B, C, T', H', W'])."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input B x {self.in_channels} x T x H x W, got {tuple(x.shape)}"
            )
        for name in self.ENDPOINTS:
            x = getattr(self, name)(x)
            if name == until:
                return x
        raise ValueError(f"unknown endpoint {until!r}; expected one of {self.ENDPOINTS}")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """One 1024-vector per clip: Mixed_5c averaged over time and space."""
        return self.trunk(x).mean(dim=(2, 3, 4))

    def replace_logits(self, num_classes: int) -> None:
        """A fresh classification layer for ``num_classes`` (fine-tuning on a new label set)."""
        self.num_classes = num_classes
        self.logits = Unit3D(FEATURE_DIM, num_classes, batch_norm=False, activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits [B, num_classes], averaged over time as DeepMind's I3D does."""
        x = self.trunk(x)
        if x.shape[2] >= 2 and x.shape[3] >= 7 and x.shape[4] >= 7:
            x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # the reference pool, VALID
        else:
            x = F.adaptive_avg_pool3d(x, 1)  # inputs too small for it
        x = self.logits(self.dropout(x))
        return x.mean(dim=(2, 3, 4))
