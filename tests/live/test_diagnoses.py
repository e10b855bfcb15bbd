"""Diagnoses that must not contradict themselves (issue 19, item 3), on real processes and files:
a kernel thread and a zombie have no heap (not "possibly a static binary", not an empty
Findings list), a refusal says what to do for who runs memtop, an eviction of a tmpfs file says
tmpfs pages cannot be evicted, a trim that gave nothing back does not say "went down by -124 KiB"."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from memtop.actions import rss_change_text, trim_returned_text
from memtop.collect.layers import explain
from memtop.commands.explain import render_text
from memtop.output.arenas import analysis_lines, explain_arenas
from memtop.procfs import denied_advice
from memtop.procfs.process import read_stat
from memtop.tui.app import MemtopApp
from tests.support import IS_ROOT, run_as_user, wait_until

pytestmark = pytest.mark.live

# A parent that keeps one child unreaped: the child is a zombie until the parent exits.
ZOMBIE_PARENT = r"""
import os, sys, time
pid = os.fork()
if pid == 0:
    os._exit(0)
print("READY", pid, flush=True)
sys.stdin.read()
"""


def kernel_thread_pid() -> int:
    """kthreadd is PID 2 on Linux; find a kernel thread however the machine numbers them."""
    for name in sorted(os.listdir("/proc"), key=lambda n: (len(n), n)):
        if name.isdigit():
            try:
                if read_stat(int(name)).is_kernel_thread:
                    return int(name)
            except Exception:  # noqa: BLE001 - a process that vanished
                continue
    pytest.skip("no kernel thread visible (a PID namespace without them)")


def explain_text(pid: int) -> str:
    report = explain(pid)
    return render_text(report, explain_arenas(pid, Path("/proc"), report.heap))


def test_a_kernel_thread_is_a_kernel_thread():
    pid = kernel_thread_pid()
    text = explain_text(pid)
    assert "static binary" not in text and "environment: unknown" not in text and "arena_max unset" not in text
    assert "Allocator: none (a kernel thread has no user-space heap)" in text
    assert "Runtime: none (a kernel thread)" in text
    assert "a kernel thread: no user-space memory, so no malloc arenas" in text
    findings = text.split("\nFindings\n", 1)[1]
    assert findings.strip() and "[info] A kernel thread" in findings  # never an empty Findings list


def test_a_zombie_is_a_zombie(children):
    parent = children.start([sys.executable, "-c", ZOMBIE_PARENT])
    zombie = int(parent.ready_line.split()[1])
    wait_until(lambda: read_stat(zombie).is_zombie, timeout=10)
    text = explain_text(zombie)
    assert "static binary" not in text and "environment: unknown" not in text
    assert "Allocator: none" in text and "a zombie" in text
    findings = text.split("\nFindings\n", 1)[1]
    assert "[info] A zombie: the process has exited and its memory is freed" in findings
    assert "parent reaps it" in findings


@pytest.mark.skipif(not IS_ROOT, reason="drops to another user: root")
def test_refused_heap_advice_depends_on_who_runs_memtop(children):
    # GIVEN a process of root: memtop running as nobody may not read its heap
    child = children.start([sys.executable, "-c", "import sys; print('READY', flush=True); sys.stdin.read()"])
    text = run_as_user(65534, lambda: explain_text(child.pid))
    assert "The heap cannot be read" in text
    assert "next: Run memtop as root (or with CAP_SYS_PTRACE)." in text
    # and as root, the advice never tells root to run as root
    advice = denied_advice(child.pid)
    assert "Run memtop as root" not in advice and "already runs as root" in advice


def test_rss_change_in_words():
    assert rss_change_text(300 * 2**20) == "RSS went down by 300 MiB"
    assert rss_change_text(0) == "RSS did not change"
    text = rss_change_text(-124 * 1024)
    assert text.startswith("RSS went up by 124 KiB") and "-" not in text
    assert rss_change_text(None) == "RSS after it unknown"
    assert trim_returned_text("0") == "malloc_trim(0) returned 0 (glibc says nothing to release)"
    assert trim_returned_text("1") == "malloc_trim(0) returned 1 (glibc says it released memory)"


def test_evicting_a_tmpfs_file_says_tmpfs_cannot_be_evicted(tmp_path):
    import subprocess

    shm = Path("/dev/shm")
    if not shm.is_dir() or os.statvfs(shm).f_bsize == 0:
        pytest.skip("no /dev/shm")
    path = shm / f"memtop-evict-{os.getpid()}.bin"
    path.write_bytes(os.urandom(256 * 1024))
    try:
        done = subprocess.run([sys.executable, "-m", "memtop", "evict", str(path)], capture_output=True, text=True,
                              timeout=60, cwd=Path(__file__).resolve().parents[2])
        assert done.returncode == 1  # not evicted
        assert "a tmpfs file" in done.stdout and "cannot be evicted" in done.stdout and "Deleting" in done.stdout
        assert "mapped by a process, locked, or read again" not in done.stdout
        assert "1 in memory-only filesystems" in done.stdout
    finally:
        path.unlink()


async def test_arenas_tab_for_a_kernel_thread_and_a_refused_walk(children):
    """The Arenas tab says what a kernel thread is, and never "walked 3s ago" for a walk that
    did not happen."""
    from memtop.model.process import ProcessIdentity
    from memtop.tui.arenas import ArenasTab

    pid = kernel_thread_pid()
    app = MemtopApp(sample=False)
    async with app.run_test(size=(120, 40)) as pilot:
        app.tick()
        await pilot.press("3")
        app.select(ProcessIdentity(pid, read_stat(pid).start_ticks))
        app.tick()
        await pilot.pause()
        tab = app.query_one(ArenasTab)
        summary = str(tab.query_one("#arenas-summary").render())
        notes = str(tab.query_one("#arenas-notes").render())
        assert "a kernel thread: no user-space memory" in summary
        assert "walked" not in summary and not re.search(r"cap (\d|\?|unknown)", summary)
        assert "static binary" not in notes and "MALLOC_ARENA_MAX" not in summary and "census" not in notes


def test_explain_arenas_line_without_heap_or_environment_says_the_cap_is_unknown(children):
    """Arenas of a process whose heap and environment memtop may not read (nobody looking at
    root's child): the cap is unknown, not "arena_max unset"."""
    if not IS_ROOT:
        pytest.skip("drops to another user: root")
    child = children.start([sys.executable, "-c", "import sys; print('READY', flush=True); sys.stdin.read()"])

    def lines():
        report = explain(child.pid)
        return analysis_lines(explain_arenas(child.pid, Path("/proc"), report.heap))

    text = "\n".join(run_as_user(65534, lines))
    assert "arena_max unset" not in text and "cap unknown: neither the heap" in text
    assert "glibc's default here is" in text


@pytest.mark.skipif(not IS_ROOT, reason="drops to another user: root")
def test_arenas_tab_of_a_refused_walk_is_not_walked(children):
    """memtop as nobody, Arenas of root's process: the walk is refused; the tab says so and never
    "walked 3s ago" nor "arena_max unset"."""
    import asyncio

    from memtop.procfs.process import read_stat as stat_of

    child = children.start([sys.executable, "-c", "import sys; print('READY', flush=True); sys.stdin.read()"])
    identity = (child.pid, stat_of(child.pid).start_ticks)

    def summary_as_nobody() -> tuple[str, str]:
        from memtop.model.process import ProcessIdentity
        from memtop.tui.arenas import ArenasTab

        async def run():
            app = MemtopApp(sample=False)
            async with app.run_test(size=(120, 40)) as pilot:
                app.tick()
                await pilot.press("3")
                app.select(ProcessIdentity(*identity))
                app.tick()
                await pilot.pause()
                tab = app.query_one(ArenasTab)
                return str(tab.query_one("#arenas-summary").render()), str(tab.query_one("#arenas-notes").render())

        return asyncio.run(run())

    summary, notes = run_as_user(65534, summary_as_nobody, timeout=60)
    assert "heap walk denied" in summary and "r tries again" in summary and "walked" not in summary
    assert "arena_max unset" not in summary and "cap unknown: neither the heap" in summary
