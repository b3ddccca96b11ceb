"""Prefect flows that compose the pipelines."""
