"""The synthetic action video benchmark (`tal synth`)."""

from tal.synth.generate import SynthSummary, generate_dataset

__all__ = ["SynthSummary", "generate_dataset"]
