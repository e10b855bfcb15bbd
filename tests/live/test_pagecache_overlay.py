"""Page cache of files on a real overlayfs mount (issue 17), and pseudo filesystem files.

cachestat(2) on an overlay file answers 0 (it looks at the overlay inode, whose mapping stays
empty: the pages are the upper or lower file's). The truth is util-linux fincore run on the real
file in the layer, whatever fincore's own method is (2.38 counts by mincore, newer versions use
cachestat: both are right on the real inode).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memtop.model.pagecache import METHOD_CACHESTAT, METHOD_MINCORE
from memtop.procfs import OpenFiles
from memtop.procfs.cachestat import (
    NO_PAGE_CACHE,
    OVERLAYFS_SUPER_MAGIC,
    cachestat_supported,
    file_cache_stat,
    filesystem_type,
)
from memtop.procfs.filesources import process_cached_files, system_cached_files
from memtop.procfs.treescan import scan_tree
from tests.pagecache_support import PAGE, drop_cache, fincore_bytes, have_fincore, read_part, write_file
from tests.support import IS_ROOT

SIZE = 4 << 20

pytestmark = [
    pytest.mark.skipif(not IS_ROOT, reason="mounting an overlay needs root"),
]


@pytest.fixture
def filled_overlay(tmp_path: Path):
    """An overlay whose lower layer holds lower_only.bin and sub/deep.bin, whose upper layer
    holds written.bin (created through the overlay) and copied_up.bin (copied up by an append)."""
    if not have_fincore():
        pytest.fail("util-linux fincore is missing (it is the truth of these tests)")
    lower = tmp_path / "lower"
    lower.mkdir()
    write_file(lower / "lower_only.bin", SIZE)
    write_file(lower / "copied_up.bin", SIZE)
    (lower / "sub").mkdir()
    write_file(lower / "sub" / "deep.bin", SIZE)
    dirs = {name: tmp_path / name for name in ("upper", "work", "merged")}
    for d in dirs.values():
        d.mkdir()
    dirs["lower"] = lower
    options = f"lowerdir={lower},upperdir={dirs['upper']},workdir={dirs['work']}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(dirs["merged"])],
                   check=True, capture_output=True, text=True)
    try:
        merged = dirs["merged"]
        write_file(merged / "written.bin", SIZE)
        with open(merged / "copied_up.bin", "ab") as f:  # copy-up: the data moves to upper
            f.write(b"x" * PAGE)
            f.flush()
            os.fsync(f.fileno())
        yield dirs
    finally:
        done = subprocess.run(["umount", str(dirs["merged"])], capture_output=True, text=True)
        if done.returncode != 0:  # something still holds it (a child being torn down): detach
            subprocess.run(["umount", "-l", str(dirs["merged"])], check=True)


# name in the overlay -> the layer holding its data
FILES = {
    "lower_only.bin": "lower",
    "sub/deep.bin": "lower",
    "written.bin": "upper",
    "copied_up.bin": "upper",
}


def _half_read(dirs: dict, name: str) -> tuple[Path, Path]:
    merged, real = dirs["merged"] / name, dirs[FILES[name]] / name
    assert real.exists(), f"{name} is not in the {FILES[name]} layer: the fixture did not do what it says"
    drop_cache(real)
    read_part(merged, SIZE // 2)  # through the overlay: the real file's pages
    return merged, real


HALF = SIZE // 2 - 2 * PAGE  # what a half read leaves cached, give or take two pages


def _agreeing(measure, real: Path, merged: Path, attempts: int = 8):
    """memtop's reading of ``merged`` and fincore's of ``real``, taken when the cache held still
    and still held the half just read (another session may drop caches, and a busy machine's
    reclaim may evict a few just-read pages, at any moment)."""
    for _ in range(attempts):
        read_part(merged, SIZE // 2)
        first = measure()
        truth = fincore_bytes(real)
        second = measure()
        if first.cached_bytes == second.cached_bytes and truth >= HALF:
            return second, truth
    raise AssertionError(f"the page cache of {real} kept changing (or being reclaimed) under the test")


def test_the_overlay_is_an_overlay_and_cachestat_alone_is_blind(filled_overlay):
    # GIVEN a half-read file in the lower layer, seen through the overlay
    merged, real = _half_read(filled_overlay, "lower_only.bin")
    fd = os.open(merged, os.O_RDONLY)
    try:
        assert filesystem_type(fd) == OVERLAYFS_SUPER_MAGIC
    finally:
        os.close(fd)
    if not cachestat_supported():
        pytest.skip("kernel has no cachestat(2): the blind spot is cachestat's")
    # WHEN cachestat(2) alone is asked (the method memtop used before issue 17)
    raw = file_cache_stat(merged, method="cachestat")
    # THEN it answers 0 while fincore sees the real file half cached: the bug this guards against
    assert raw.method == METHOD_CACHESTAT
    assert raw.cached_bytes == 0
    assert fincore_bytes(real) >= SIZE // 4


@pytest.mark.parametrize("name", sorted(FILES))
def test_overlay_file_cached_bytes_equal_fincore_of_the_real_file(filled_overlay, name):
    # GIVEN a file of the overlay (lower only, created in upper, or copied up) half read
    merged, real = _half_read(filled_overlay, name)
    # WHEN memtop measures it by its overlay name
    result, truth = _agreeing(lambda: file_cache_stat(merged), real, merged)
    # THEN the figure equals fincore's on the real file within a page, and is about half
    assert result.cached_bytes is not None, result
    assert abs(result.cached_bytes - truth) <= PAGE, (result, truth)
    assert abs(result.cached_bytes - SIZE // 2) <= 2 * PAGE, (result, truth)
    # and the reason says how it was counted
    if result.method == METHOD_MINCORE:
        assert result.reason and "overlayfs" in result.reason or not cachestat_supported()


def test_tree_scan_of_an_overlay_equals_fincore(filled_overlay):
    # GIVEN every file of the overlay half read
    pairs = {name: _half_read(filled_overlay, name) for name in FILES}
    for _ in range(8):
        for merged, _real in pairs.values():
            read_part(merged, SIZE // 2)
        # WHEN the overlay's tree is scanned (source (c)), with fincore between two scans
        first, _ = scan_tree(filled_overlay["merged"], threads=1)
        truths = {name: fincore_bytes(real) for name, (_m, real) in pairs.items()}
        second, progress = scan_tree(filled_overlay["merged"], threads=1)
        if [f.cached_bytes for f in first] == [f.cached_bytes for f in second] \
                and min(truths.values()) >= HALF:
            break
    else:
        raise AssertionError("the page cache kept changing under the test")
    # THEN each file's figure equals fincore's on its real file
    found = {os.path.relpath(f.path, filled_overlay["merged"]): f for f in second}
    assert set(found) == set(FILES), found
    for name, truth in truths.items():
        assert found[name].cached_bytes is not None, found[name]
        assert abs(found[name].cached_bytes - truth) <= PAGE, (name, found[name], truth)
        assert found[name].cached_bytes >= HALF, found[name]


HOLDER = r"""
import sys
held = open(sys.argv[1], "rb")
print("READY", flush=True)
sys.stdin.readline()
"""


def test_a_process_holding_an_overlay_file_sees_its_real_pages(filled_overlay, children):
    # GIVEN a process holding a half-read lower file open through the overlay
    merged, real = _half_read(filled_overlay, "lower_only.bin")
    child = children.start([sys.executable, "-c", HOLDER, str(merged)])
    # WHEN memtop lists the files of that process (source (a))

    def measure():
        return {f.path: f for f in process_cached_files(child.pid)}[str(merged)].stat

    result, truth = _agreeing(measure, real, merged)
    # THEN the held overlay file is measured like fincore measures the real file
    assert abs(result.cached_bytes - truth) <= PAGE, (result, truth)
    assert result.cached_bytes >= HALF


PROC_HOLDER = r"""
import os, sys
held = [open(f"/proc/{os.getpid()}/status", "rb"), open("/sys/kernel/mm/transparent_hugepage/enabled", "rb"),
        open(sys.argv[1], "rb")]
print("READY", flush=True)
sys.stdin.readline()
"""


def test_any_process_source_lists_no_proc_or_sys_files(tmp_path: Path, children):
    # GIVEN memtop holding /proc/PID/stat open for processes (as its sampler does), and a child
    # holding a /proc file, a /sys file and a real file
    real = write_file(tmp_path / "held.bin", 4 * PAGE)
    child = children.start([sys.executable, "-c", PROC_HOLDER, str(real)])
    stat_files = OpenFiles("stat")  # what memtop's sampler keeps open for every process
    # (and one of a process that exits while memtop still holds its stat: the name is gone)
    short = children.start([sys.executable, "-c", "print('READY', flush=True); input()"])
    try:
        for pid in (child.pid, os.getpid(), 1, short.pid):
            stat_files.read(pid)
        short.close()
        assert any(os.readlink(f"/proc/self/fd/{fd}").startswith("/proc/") for fd in os.listdir("/proc/self/fd")
                   if _link_or_none(fd)), "the test does not hold /proc files: it would prove nothing"
        # WHEN the "any process" source (b) lists the files every process holds
        files, held = system_cached_files()
    finally:
        stat_files.close()
    paths = {f.path for f in files}
    # THEN the real file is listed with its holder, and no procfs/sysfs file is
    assert str(real) in paths
    assert not [p for p in paths if p.startswith(("/proc/", "/sys/"))], sorted(p for p in paths if p.startswith(("/proc/", "/sys/")))
    # although the holders' references were seen (the filter is on the filesystem, not the name)
    assert f"/proc/{child.pid}/status" in held.files
    # and asked directly, such a file says why it has no figure
    direct = file_cache_stat(f"/proc/{child.pid}/status")
    assert direct.cached_bytes is None and direct.reason.endswith(NO_PAGE_CACHE), direct


def _link_or_none(fd: str) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def test_memtop_cache_command_on_an_overlay_file(filled_overlay):
    # GIVEN a half-read lower file seen through the overlay
    merged, real = _half_read(filled_overlay, "lower_only.bin")
    for _ in range(8):
        read_part(merged, SIZE // 2)
        # WHEN `memtop cache --json` and the text output measure it by its overlay name
        done = subprocess.run([sys.executable, "-m", "memtop", "cache", "--json", str(merged)],
                              capture_output=True, text=True, timeout=60)
        text = subprocess.run([sys.executable, "-m", "memtop", "cache", str(merged)],
                              capture_output=True, text=True, timeout=60)
        truth = fincore_bytes(real)
        assert done.returncode == 0 and text.returncode == 0, (done.stderr, text.stderr)
        doc = json.loads(done.stdout)["files"][0]
        if doc["cached_bytes"] == truth and truth >= HALF:  # agreed, and nothing was reclaimed
            break
    # THEN the figure is fincore's on the real file, and the text says how it was counted
    assert abs(doc["cached_bytes"] - truth) <= PAGE and truth >= HALF, (doc, truth)
    if cachestat_supported():
        assert "overlayfs" in text.stdout, text.stdout
        assert "this kernel has only mincore" not in text.stdout
