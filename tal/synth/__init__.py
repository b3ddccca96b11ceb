"""The synthetic action video benchmark (`tal synth`)."""
