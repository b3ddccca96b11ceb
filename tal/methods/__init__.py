"""Localization methods as plug-ins: one module per method, registered by name.

``model.name`` in an experiment config picks the method; its class (``tal.methods.base.
Method``) owns the ``model:`` section's schema, the network, the loss, the training step, the
decoding, the kind of supervision and whether a partner video is taken. Built in:
``actionformer``, ``i2net``, ``asl``, ``co2net``. A plug-in is one module that subclasses
``Method`` and decorates it with ``register_method``.
"""

from tal.config import ModelConfig
from tal.methods import actionformer, asl, co2net, i2net
from tal.methods.base import Method, PostprocessSettings, StepDetections
from tal.methods.registry import get_method, method_names, register_method


def build_method(config: ModelConfig) -> Method:
    """The method object for a validated ``model:`` section (its registered class)."""
    return get_method(config.name)(config)


__all__ = [
    "Method",
    "PostprocessSettings",
    "StepDetections",
    "actionformer",
    "asl",
    "build_method",
    "co2net",
    "get_method",
    "i2net",
    "method_names",
    "register_method",
]
