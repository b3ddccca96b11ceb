"""Backbone training: fine-tune I3D for recognition on trimmed clips (plain PyTorch)."""

from tal.backbone.clips import BackboneError, ClipSet, ClipWindow, build_clip_set, plan_windows

__all__ = ["BackboneError", "ClipSet", "ClipWindow", "build_clip_set", "plan_windows"]
