"""cachestat(2) / mincore(2) residency of real files, checked against util-linux fincore."""

from __future__ import annotations

import functools
import os
import socket
import stat
import threading
from pathlib import Path

import pytest

from memtop.model.pagecache import METHOD_CACHESTAT, METHOD_MINCORE, METHOD_NONE
from memtop.procfs.cachestat import cachestat_supported, file_cache_stat, mincore_pages
from tests.pagecache_support import (
    PAGE,
    drop_cache,
    fincore_bytes,
    have_fincore,
    read_part,
    stable_reading,
    world_readable_tmpdir,
    write_file,
)
from tests.support import IS_ROOT, run_as_user

SIZE = 8 << 20
NOBODY = 65534

needs_cachestat = pytest.mark.skipif(not cachestat_supported(), reason="kernel has no cachestat(2) (Linux < 6.5)")


@pytest.fixture
def half_cached(tmp_path: Path) -> Path:
    path = write_file(tmp_path / "half.bin", SIZE)
    drop_cache(path)
    read_part(path, SIZE // 2)
    return path


@pytest.mark.parametrize("method", ["cachestat", "mincore"])
def test_half_read_file_matches_fincore_within_a_page(tmp_path: Path, method: str):
    if method == "cachestat" and not cachestat_supported():
        pytest.skip("kernel has no cachestat(2)")
    if not have_fincore():
        pytest.skip("util-linux fincore is not installed")
    # GIVEN a file of which exactly the first half was read
    path = write_file(tmp_path / "half.bin", SIZE)
    drop_cache(path)
    # WHEN memtop measures it (and util-linux fincore, between two memtop readings)
    results = []
    cached, independent = stable_reading(path, SIZE // 2, lambda: results.append(
        file_cache_stat(path, method=method)) or results[-1].cached_bytes)
    result = results[-1]
    # THEN its figure equals fincore's within a page, and is half the file
    assert result.method == method
    assert result.size_bytes == SIZE
    assert abs(cached - independent) <= PAGE, (result, independent)
    # Half the file, less what the kernel may have evicted already of pages read once (seen
    # under load: 10 pages, which cachestat counted as recently evicted); fincore above is the truth.
    assert SIZE // 2 - 32 * PAGE <= cached <= SIZE // 2 + PAGE, result
    assert result.cached_fraction == pytest.approx(cached / SIZE)


@needs_cachestat
def test_after_dontneed_no_clean_pages_remain(half_cached: Path):
    read_part(half_cached, SIZE // 2)  # (again: another session may have dropped caches)
    before = file_cache_stat(half_cached)
    assert before.cached_bytes > 0
    fd = os.open(half_cached, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    after = file_cache_stat(half_cached)
    assert after.cached_bytes == 0, after
    assert after.dirty_bytes == 0


@needs_cachestat
def test_dirty_file_reports_dirty_pages(tmp_path: Path):
    # GIVEN a file written without fsync (its pages are dirty until writeback)
    path = tmp_path / "dirty.bin"
    write_file(path, 1 << 20, sync=False)
    result = file_cache_stat(path)
    # THEN cachestat sees dirty (or already under writeback) pages, all of them cached.
    # (Should the flusher have written it all back in between, write it again once.)
    if result.dirty_bytes + result.writeback_bytes == 0:
        write_file(path, 1 << 20, sync=False)
        result = file_cache_stat(path)
    assert result.method == METHOD_CACHESTAT
    assert result.cached_bytes == 1 << 20
    assert 0 < result.dirty_bytes + result.writeback_bytes <= result.cached_bytes
    # AND after fsync nothing is dirty any more
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    synced = file_cache_stat(path)
    assert synced.dirty_bytes == 0 and synced.cached_bytes == 1 << 20


def test_mincore_fallback_says_what_it_cannot_know(half_cached: Path):
    result = file_cache_stat(half_cached, method="mincore")
    assert result.method == METHOD_MINCORE
    assert result.dirty_bytes is None and result.recently_evicted_bytes is None
    assert "mincore" in result.reason


def test_empty_file_is_zero_cached(tmp_path: Path):
    path = tmp_path / "empty"
    path.touch()
    for method in ("auto", "mincore"):
        result = file_cache_stat(path, method=method)
        assert result.size_bytes == 0 and result.cached_bytes == 0 and result.cached_fraction == 0.0


def _stat_in_child(path: str, method: str) -> dict:
    result = file_cache_stat(path, method=method)
    fd = os.open(path, os.O_RDONLY)
    try:
        raw_mincore = mincore_pages(fd, os.fstat(fd).st_size) * PAGE
    finally:
        os.close(fd)
    return {"euid": os.geteuid(), "result": result.as_json(), "raw_mincore_bytes": raw_mincore}


@pytest.mark.skipif(not IS_ROOT, reason="needs root to drop privileges to nobody in a child")
@pytest.mark.parametrize("method", ["auto", "mincore"])
def test_non_root_on_unwritable_file_is_unknown_not_wrong(method: str):
    with world_readable_tmpdir() as tmp:
        # GIVEN a root-owned 0644 file, half cached
        path = write_file(tmp / "rootfile.bin", SIZE)
        os.chmod(path, 0o644)
        drop_cache(path)
        read_part(path, SIZE // 2)
        # WHEN a child running as nobody (uid 65534) measures it
        answer = run_as_user(NOBODY, functools.partial(_stat_in_child, str(path), method))
        result = answer["result"]
        # THEN the figures are unknown, with the reason, rather than mincore's "all cached"
        assert answer["euid"] == NOBODY
        assert result["cached_bytes"] is None, answer
        assert result["dirty_bytes"] is None
        assert result["method"] == METHOD_NONE
        assert "write" in result["reason"] and result["reason"]
        # (the trap itself: raw mincore as nobody claims more than the half that is cached)
        assert answer["raw_mincore_bytes"] >= SIZE // 2


@pytest.mark.skipif(not IS_ROOT, reason="needs root to drop privileges to nobody in a child")
def test_non_root_owner_gets_real_figures():
    with world_readable_tmpdir() as tmp:
        path = write_file(tmp / "nobodyfile.bin", SIZE)
        os.chown(path, NOBODY, NOBODY)
        drop_cache(path)
        for _ in range(3):  # (pages evicted by another session meanwhile: read again)
            read_part(path, SIZE // 2)
            answer = run_as_user(NOBODY, functools.partial(_stat_in_child, str(path), "auto"))
            result = answer["result"]
            assert result["cached_bytes"] is not None, answer
            if abs(result["cached_bytes"] - SIZE // 2) <= PAGE:
                break
        assert abs(result["cached_bytes"] - SIZE // 2) <= PAGE


def _not_blocking(func, *args, timeout: float = 5.0, **kwargs):
    """Run func in a thread; fail (instead of hanging the suite) if it blocks."""
    box = {}

    def target():
        box["result"] = func(*args, **kwargs)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{func.__name__}{args} blocked for {timeout} s"
    return box["result"]


def test_fifo_socket_device_symlink_are_unknown_and_never_opened(tmp_path: Path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(sock_path))
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    link = tmp_path / "link"
    target = write_file(tmp_path / "target", 4096)
    os.symlink(target, link)
    try:
        assert "FIFO" in _not_blocking(file_cache_stat, str(fifo)).reason
        assert "socket" in _not_blocking(file_cache_stat, str(sock_path)).reason
        assert "character device" in _not_blocking(file_cache_stat, "/dev/null").reason
        assert _not_blocking(file_cache_stat, str(loop)).cached_bytes is None
        assert "symbolic link" in _not_blocking(file_cache_stat, str(link), follow_symlinks=False).reason
        assert _not_blocking(file_cache_stat, str(link)).size_bytes == 4096
        assert file_cache_stat(tmp_path / "missing").reason == "no such file"
        assert "directory" in file_cache_stat(tmp_path).reason
    finally:
        sock.close()
