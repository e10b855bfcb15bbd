"""Helpers for the page cache tests: files with a known cached part, an independent count."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")


def write_file(path: Path, size: int, *, sync: bool = True) -> Path:
    """A file of ``size`` random-ish bytes (incompressible enough for any filesystem)."""
    block = os.urandom(1 << 16)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
        f.flush()
        if sync:
            os.fsync(f.fileno())
    return path


def drop_cache(path: Path) -> None:
    """Drop a (clean) file's pages: posix_fadvise(POSIX_FADV_DONTNEED) after fdatasync."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_part(path: Path, length: int, offset: int = 0) -> None:
    """Read exactly [offset, offset+length) into the cache, without readahead beyond it.

    POSIX_FADV_RANDOM sets FMODE_RANDOM on the open file: the kernel then reads only what is
    asked (mm/readahead.c), so the cached part is known to the page.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        chunk = 1 << 20
        pos = offset
        while pos < offset + length:
            n = min(chunk, offset + length - pos)
            os.pread(fd, n, pos)
            pos += n
    finally:
        os.close(fd)


def fincore_bytes(path: Path) -> int:
    """The cached bytes of a file as util-linux fincore counts them (an independent tool)."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    return int(out.split()[0])


def have_fincore() -> bool:
    return shutil.which("fincore") is not None


@contextmanager
def world_readable_tmpdir(prefix: str = "memtop-pc-"):
    """A temporary directory other users can traverse (pytest's tmp_path is mode 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        os.chmod(path, 0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def stable_reading(path: Path, length: int, measure, attempts: int = 4):
    """Read ``length`` bytes of ``path`` into the cache, then take ``measure()`` and util-linux
    fincore's count, and ``measure()`` again. Other sessions on this machine may evict pages (or
    drop caches) at any moment: when the two memtop readings differ, the cache moved under the
    test, so the reading is taken again. Returns (memtop reading, fincore bytes)."""
    for _ in range(attempts):
        read_part(path, length)
        first = measure()
        independent = fincore_bytes(path) if have_fincore() else None
        second = measure()
        if first == second:
            return first, independent
    raise AssertionError(f"the page cache of {path} kept changing under the test ({attempts} attempts)")
