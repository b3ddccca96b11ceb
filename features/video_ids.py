"""The one rule for video ids: what the feature store can hold as an array and file name.

A video id becomes a Zarr array name (``STORE/rgb/<id>``), a folder (``STORE/_done/<id>``)
and a file name (``STORE/_manifest/<id>.json``). Annotation files, importers, extraction
and the store all check ids with ``check_video_id``, so an id that an annotation file
accepts is one the store can hold.
"""

from __future__ import annotations

from typing import Any

from features.errors import UserInputError

__all__ = ["MAX_VIDEO_ID_BYTES", "VideoIdError", "check_video_id"]

MAX_VIDEO_ID_BYTES = 200
"""Longest id in UTF-8 bytes: ``.<id>.json.<random>.tmp`` must fit in a 255-byte file name."""

EXPECTED = (
    f"expected a non-empty name of at most {MAX_VIDEO_ID_BYTES} bytes, without '/', '\\', "
    "'..', control characters or a leading '.', and not 'zarr.json'"
)


class VideoIdError(UserInputError):
    """A video id the feature store cannot hold; the message names the id and its source."""


def _problem(video_id: Any) -> str | None:
    if not isinstance(video_id, str):
        return f"it is not a string but {type(video_id).__name__}"
    if video_id.strip() == "":
        return "it is empty"
    if "/" in video_id or "\\" in video_id:
        return "it contains a path separator ('/' or '\\')"
    if video_id.startswith("."):  # ".", ".." and hidden files
        return "it must not start with '.'"
    if ".." in video_id:
        return "it contains '..'"
    if video_id == "zarr.json":
        return "the name is reserved by zarr"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in video_id):
        return "it contains control characters"
    try:
        size = len(video_id.encode("utf-8"))
    except UnicodeEncodeError:
        return "it is not valid Unicode text (a lone surrogate)"
    if size > MAX_VIDEO_ID_BYTES:
        return f"it is {size} bytes long in UTF-8"
    return None


def check_video_id(video_id: Any, source: str = "") -> str:
    """``video_id`` if the feature store can hold it, else a one-line VideoIdError.

    ``source`` (a file, a file and row) starts the message, so the user knows where the id
    came from.
    """
    problem = _problem(video_id)
    if problem is None:
        return video_id
    prefix = f"{source}: " if source else ""
    raise VideoIdError(
        f"{prefix}video id {video_id!r} is not usable as a store key: {problem}; {EXPECTED}"
    )
