"""Localization models: the ActionFormer / I2Net localizer and its building blocks."""

from tal.models.localizer import Localizer, divisible_by

__all__ = ["Localizer", "divisible_by"]
