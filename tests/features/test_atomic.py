"""Atomic writes: the content lands whole, temp files are unique and cleaned up."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from features.atomic import atomic_path, atomic_write_bytes, atomic_write_text


def test_target_gets_the_content_and_parents_are_made(tmp_path):
    target = tmp_path / "a" / "b" / "out.json"
    assert atomic_write_text(target, '{"x": 1}\n') == target
    assert target.read_text(encoding="utf-8") == '{"x": 1}\n'
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_text_is_utf8_bytes_as_given(tmp_path):
    target = tmp_path / "t.txt"
    atomic_write_text(target, "é\nline\n")
    assert target.read_bytes() == "é\nline\n".encode()


def test_temp_file_lives_in_the_target_folder_hidden_and_unique(tmp_path):
    target = tmp_path / "sub" / "data.parquet"
    with atomic_path(target) as tmp, atomic_path(target) as other:
        assert tmp.parent == target.parent
        assert tmp.name.startswith(".data.parquet.") and tmp.name.endswith(".tmp")
        assert tmp.exists() and other.exists() and tmp != other
        assert not target.exists()  # nothing under the final name until the block ends
        tmp.write_bytes(b"first")
        other.write_bytes(b"second")
    assert target.read_bytes() == b"first"  # the outer block closes last and wins
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.parquet"]


def test_mode_follows_the_umask_like_open(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "m.txt", "x")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "m.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644


def test_exception_keeps_the_old_content_and_removes_the_temp_file(tmp_path):
    target = tmp_path / "keep.txt"
    atomic_write_text(target, "old\n")
    seen = []
    with pytest.raises(RuntimeError, match="writer failed"), atomic_path(target) as tmp:
        seen.append(tmp)
        tmp.write_text("half of the new")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old\n"
    assert not seen[0].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_exception_without_a_previous_target_leaves_nothing(tmp_path):
    target = tmp_path / "new.bin"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_removes_the_temp_file(tmp_path):
    target = tmp_path / "folder"
    (target / "inside").mkdir(parents=True)  # a non-empty folder cannot be replaced
    with pytest.raises(OSError), atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder"]
    assert (target / "inside").is_dir()


def test_concurrent_writers_never_share_a_temp_file(tmp_path):
    target = tmp_path / "shared.bin"
    writers, rounds, size = 8, 5, 1 << 18
    contents = [bytes([i]) * size for i in range(writers)]
    barrier = threading.Barrier(writers)
    temps: list[set] = [set() for _ in range(writers)]
    errors = []

    def write(i: int) -> None:
        try:
            for _ in range(rounds):
                barrier.wait()  # every writer inside atomic_path at the same time
                with atomic_path(target) as tmp:
                    temps[i].add(tmp)
                    barrier.wait()
                    with open(tmp, "wb") as handle:
                        for lo in range(0, size, 4096):  # slow, interleaved writes
                            handle.write(contents[i][lo : lo + 4096])
                # whatever is there now is one writer's whole content
                data = target.read_bytes()
                assert data in contents, f"mixed or partial content ({len(data)} bytes)"
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    every = [t for ts in temps for t in ts]
    assert len(every) == len(set(every)) == writers * rounds  # no temp name reused
    assert target.read_bytes() in contents
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.bin"]
