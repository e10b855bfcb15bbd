"""Helpers for the page cache tests: files with a known cached part, an independent count."""

from __future__ import annotations

import json
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


def run_as(uid: int, func, *args, timeout: float = 20.0):
    """Run ``func(*args)`` in a forked child that dropped privileges to ``uid``; return its JSON.

    The child calls os.setgroups([]), os.setgid and os.setuid, so the kernel checks are those
    of an ordinary user, then sends ``func``'s JSON-able result back through a pipe.
    """
    import select
    import signal

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 0
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            payload = json.dumps({"ok": func(*args)})
        except BaseException as e:  # report everything to the parent, then exit
            payload = json.dumps({"error": repr(e)})
            status = 1
        try:
            os.write(write_fd, payload.encode())
        finally:
            os._exit(status)
    os.close(write_fd)
    try:
        chunks = []
        while True:
            ready, _, _ = select.select([read_fd], [], [], timeout)
            if not ready:
                raise TimeoutError(f"child {pid} gave no answer in {timeout} s")
            data = os.read(read_fd, 65536)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(read_fd)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    answer = json.loads(b"".join(chunks) or b'{"error": "no output"}')
    if "error" in answer:
        raise RuntimeError(f"child failed: {answer['error']}")
    return answer["ok"]
