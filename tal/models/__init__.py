"""Localization models: the ActionFormer / I2Net / ASL localizer, CO2-Net, their blocks."""

from torch import nn

from tal.config import ModelConfig
from tal.models.co2net import CO2Net
from tal.models.localizer import Localizer, divisible_by


def build_model(config: ModelConfig, in_dim: int, num_classes: int) -> nn.Module:
    """The network of ``config.name``: CO2-Net, else the one-stage localizer (I2Net,
    ActionFormer-style, ASL)."""
    if config.name == "co2net":
        return CO2Net(config, in_dim=in_dim, num_classes=num_classes)
    return Localizer(config, in_dim=in_dim, num_classes=num_classes)


__all__ = ["CO2Net", "Localizer", "build_model", "divisible_by"]
