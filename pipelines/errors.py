"""Errors the pipelines raise for input that cannot be used; `tal` prints them and exits 2."""

from features.errors import UserInputError


class PipelineInputError(UserInputError):
    """A videos folder, store, or setting that a pipeline cannot work with; names it and why."""
