"""Atomic file writes: readers see the old file or the new one, never a partial one.

The one way this project writes a file that others may read while it is written (manifests,
annotations, predictions, pairs, weights): write a temporary file in the target's folder,
flush it to disk, then ``os.replace`` it onto the target. The temporary file has a unique
name, so two writers of the same target never write into each other's file (a fixed
``NAME.tmp`` is unsafe then: one writer renames the other's half-written file into place).
The last complete write wins.

Use::

    atomic_write_text(path, text)
    with atomic_path(path) as tmp:     # for writers that want a path (torch.save, pyarrow)
        pq.write_table(table, tmp)
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


def _create_temp(target: Path) -> Path:
    """A new empty file ``.NAME.RANDOM.tmp`` beside ``target`` (hidden, unique, umask mode)."""
    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
        try:  # O_EXCL: never reuse a file another writer made; 0o666 & ~umask like open()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it becomes ``path``.

    Write the whole content to the yielded path inside the block. On a clean exit the file
    is flushed to disk, renamed onto ``path`` (atomic on one file system) and the folder is
    flushed, so the new name survives a crash. On an exception the temporary file is
    removed and an existing ``path`` is left as it was. Parent folders are created.

    The temporary name is random: give writers that record their file's name (``torch.save``
    of a path) an open file instead, ``open(tmp, "wb")``, so equal content gives equal bytes.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(target)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # Some file systems cannot fsync a folder (EINVAL); the rename itself is done.
    with contextlib.suppress(OSError):
        _fsync(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see ``atomic_path``); returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see ``atomic_path``); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))
