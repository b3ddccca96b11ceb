"""Reference baselines that need no training: floors that a learned localizer must beat."""
