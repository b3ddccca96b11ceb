"""Training-side machinery of the one-stage localizer: label assignment and losses."""
