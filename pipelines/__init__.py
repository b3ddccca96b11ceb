"""Entry points and distributed jobs on Ray; each module runs as `python -m pipelines.X`."""
