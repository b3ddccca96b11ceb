"""The synthetic action video benchmark (`tal synth`).

``generate_dataset`` and ``SynthSummary`` load on first use, so importing
``tal.synth.presets`` (the CLI's help, the config schema) loads neither numpy nor the encoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tal.synth.generate import SynthSummary, generate_dataset

__all__ = ["SynthSummary", "generate_dataset"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tal.synth import generate

        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
