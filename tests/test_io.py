"""Atomic writes: complete files only, with the permissions the umask gives ordinary files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fedgen.core.io import atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "log.csv"
    atomic_write_text(target, "old\n")
    atomic_write_bytes(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert [p.name for p in target.parent.iterdir()] == ["log.csv"]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0o600


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "log.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]
