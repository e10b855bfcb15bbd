"""The Layers tab, driven as a user drives it (Pilot), on a live target and on fixed data."""

from __future__ import annotations

import sys

import pytest
from textual.widgets import ProgressBar, Static

from memtop.heap import native
from memtop.model.findings import Finding, Severity
from memtop.model.heap import ArenaReport, HeapReport, Layer, LayerReport, Pin, RuntimeInfo
from memtop.model.process import ProcessIdentity
from memtop.procfs.process import read_stat
from memtop.tui.app import MemtopApp
from memtop.tui.layers import LayerBar, LayersTab
from tests.heap_targets import HEAP_TARGET
from tests.support import IS_ROOT, compile_c

BIG_HEAP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static char inbuf[256], outbuf[256];
int main(void) {
    setvbuf(stdout, outbuf, _IOLBF, sizeof outbuf);
    setvbuf(stdin, inbuf, _IOLBF, sizeof inbuf);
    unsigned seed = 7;
    /* ~192 MiB of chunks of varied sizes: a walk of a few seconds */
    for (long used = 0; used < (192L << 20);) {
        size_t r = 24 + (rand_r(&seed) % 12) * 16;
        char *p = malloc(r); p[0] = 1; used += r + 8;
    }
    printf("READY\n");
    char line[64];
    while (fgets(line, sizeof line, stdin)) printf("pong\n");
    return 0;
}
"""


def identity_of(pid: int) -> ProcessIdentity:
    return ProcessIdentity(pid, read_stat(pid).start_ticks)


async def wait_for(pilot, predicate, steps: int = 600):
    for _ in range(steps):
        if predicate():
            return True
        await pilot.pause(0.05)
    return predicate()


@pytest.mark.live
@pytest.mark.skipif(not IS_ROOT, reason="reading another process's heap needs root (or CAP_SYS_PTRACE)")
async def test_layers_tab_shows_the_walk_of_the_selected_process(children):
    child = children.start([compile_c(HEAP_TARGET, name="heap_target"), "pinned"])
    app = MemtopApp(sample=False, part_workers=2)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        tab = app.query_one(LayersTab)
        assert "No process selected" in str(app.query_one("#layers-title", Static).render())
        app.tick()
        app.select(identity_of(child.pid))
        assert await wait_for(pilot, lambda: tab.report is not None)
        assert tab.report.heap.valid
        title = str(app.query_one("#layers-title", Static).render())
        assert f"PID {child.pid}" in title and "heap valid" in title
        heap_text = str(app.query_one("#layers-heap", Static).render())
        assert "malloc_trim(0) would release" in heap_text and "pin:" in heap_text
        # r walks again
        first = tab.report
        await pilot.press("r")
        assert await wait_for(pilot, lambda: tab.report is not first)


@pytest.mark.live

async def _layers_of(app, pilot, pid: int) -> LayersTab:
    """The Layers tab, shown after a first tick, with ``pid`` selected."""
    app.tick()
    await pilot.press("2")
    tab = app.query_one(LayersTab)
    app.select(identity_of(pid))
    return tab

async def test_a_selected_process_that_exits_is_still_named_by_its_pid(children):
    """The fresh-eyes report: once the process had exited the title read "PID ? [?] RSS ?"."""
    child = children.start([sys.executable, "-c", "print('READY', flush=True); input()"])
    app = MemtopApp(sample=False, part_workers=2)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await _layers_of(app, pilot, child.pid)
        assert await wait_for(pilot, lambda: tab.report is not None and tab.report.identity is not None)
        # WHEN it exits and its layers are read again
        child.close()
        first = tab.report
        app.collector.refresh("layers")
        assert await wait_for(pilot, lambda: tab.report is not first)
        await pilot.pause()
        title = str(app.query_one("#layers-title", Static).render())
        assert f"PID {child.pid} " in title and "no longer be read" in title and "PID ?" not in title, title


@pytest.mark.live
async def test_a_kernel_thread_shows_rss_0_not_unknown():
    # kthreadd (PID 2): no user address space, so 0 B as in the Processes tab, not "?"
    app = MemtopApp(sample=False, part_workers=2)
    async with app.run_test(size=(120, 40)) as pilot:
        app.tick()
        await pilot.press("2")
        tab = app.query_one(LayersTab)
        app.select(identity_of(2))
        assert await wait_for(pilot, lambda: tab.report is not None)
        await pilot.pause()
        title = str(app.query_one("#layers-title", Static).render())
        assert "RSS 0 B" in title and "RSS ?" not in title
        assert "kernel thread" in str(app.query_one(LayerBar).render())


@pytest.mark.live
@pytest.mark.skipif(not IS_ROOT, reason="reading another process's heap needs root (or CAP_SYS_PTRACE)")
async def test_a_large_walk_shows_progress_and_keys_still_work(children, monkeypatch):
    # The pure-Python loop (the fallback when gcc is missing): the compiled one can finish
    # 192 MiB before a progress bar would appear.
    monkeypatch.setattr(native, "enabled", False)
    child = children.start([compile_c(BIG_HEAP, name="heap_big")], timeout=120)
    app = MemtopApp(sample=False, part_workers=2)
    async with app.run_test(size=(120, 40)) as pilot:
        tab = await _layers_of(app, pilot, child.pid)
        progress = app.query_one("#layers-progress", ProgressBar)
        assert await wait_for(pilot, lambda: progress.display or tab.report is not None)
        walking = app.sample.result("layers")
        if walking is None or not walking.running:
            pytest.skip("the walk finished before it could be observed (machine much faster than expected)")
        assert progress.display and "walking the heap" in str(app.query_one("#layers-title", Static).render())
        await pilot.press("1")  # a key while the walk runs in its thread
        assert app.query_one("#tabs").active == "tab-processes"
        await pilot.press("2")
        # Selecting another process mid-walk cancels the big walk; only the new one is shown.
        small = children.start([compile_c(HEAP_TARGET, name="heap_target"), "inuse"])
        app.select(identity_of(small.pid))
        # the big walk's bar went with it (left shown, it sat under the new process's title)
        assert not progress.display
        assert await wait_for(pilot, lambda: tab.report is not None, steps=1200)
        assert tab.report.identity.pid == small.pid and tab.report.heap.valid
        assert app.sample.result("layers").key == app.target  # the big walk's result never shown
        assert f"PID {small.pid}" in str(app.query_one("#layers-title", Static).render())


def fixed_report() -> LayerReport:
    ident = ProcessIdentity(4242, 1000)
    arena = ArenaReport(address=0x7F00_0000_0C60, is_main=True, heaps=((0x5600_0000_0000, 96 << 20),),
                        system_bytes=96 << 20, in_use_bytes=3 << 20, free_bytes=92 << 20, fastbin_bytes=0,
                        tcache_bytes=4096, top_bytes=1 << 20, resident_bytes=95 << 20, attached_threads=1, mutex=0,
                        free_size_histogram=((96 << 20, 1, 92 << 20),), trim_release_bytes=91 << 20,
                        top_resident_bytes=0, free_resident_bytes=91 << 20)
    heap = HeapReport(identity=ident, allocator_kind="glibc", glibc_version="2.36", valid=True, status="valid",
                      reason=None, arenas=(arena,), mmapped_count=2, mmapped_bytes=400 << 10,
                      trim_release_bytes=91 << 20,
                      pin=Pin(address=0x5600_05F0_0000, size=3056, distance_below_top=1 << 20, pinned_bytes=92 << 20),
                      walk_seconds=0.25, chunks_walked=961, attempts=1, symbols="debug",
                      runtime=RuntimeInfo("cpython", "3.11", "libpython is mapped"))
    return LayerReport(
        identity=ident, comm="python3", cmdline="python3 server.py", rss_bytes=102 << 20, pss_bytes=97 << 20,
        private_dirty_bytes=96 << 20, lazyfree_bytes=0, swap_bytes=0, file_bytes=6 << 20, anon_bytes=96 << 20,
        shmem_bytes=0,
        anon_split=(Layer("brk", "brk heap [heap]", 95 << 20, "smaps Anonymous of [heap]"),
                    Layer("thread_heaps", "thread-arena heaps", 0, "smaps Anonymous of the heaps found by the walk"),
                    Layer("mmapped", "mmapped malloc chunks", 16 << 10, "resident pages (pagemap) of IS_MMAPPED chunks"),
                    Layer("stacks", "thread stacks", 32 << 10, "[stack]"),
                    Layer("other", "other anonymous", (1 << 20) - (48 << 10), "the rest")),
        heap_split=(Layer("in_use", "in use", 4 << 20, "x", parent="brk"),
                    Layer("free", "free (kept)", 91 << 20, "x", parent="brk"),
                    Layer("top", "top", 0, "x", parent="brk")),
        heap=heap, runtime=heap.runtime,
        findings=(Finding(Severity.WARNING, "glibc holds 93 MiB free against 3 MiB in use.", "`memtop trim 4242`"),
                  Finding(Severity.INFO, "Runtime: cpython 3.11.")),
    )


def test_layers_tab_snapshot(snap_compare):
    async def run_before(pilot):
        await pilot.press("2")
        tab = pilot.app.query_one(LayersTab)
        tab.target = fixed_report().identity
        tab._show(fixed_report())
        for _ in range(3):  # auto-height widgets settle over a few refreshes
            await pilot.pause()
        await pilot.wait_for_scheduled_animations()

    assert snap_compare(MemtopApp(sample=False), terminal_size=(120, 40), run_before=run_before)


@pytest.mark.live
async def test_memtop_itself_is_named_and_its_heap_not_walked():
    """Enter on memtop's own row (issue 19, item 7): Layers says plainly it is memtop, and does not
    walk memtop's own heap (the walk allocated while reading, so it was never consistent and each
    try grew memtop's RSS by the heap's size); the kernel's figures are still memtop's own."""
    import os

    app = MemtopApp(sample=False, part_workers=2)
    async with app.run_test(size=(120, 40)) as pilot:
        app.tick()
        await pilot.pause()
        # As a user finds it: filter the Processes tab by memtop's PID, Enter, Enter
        await pilot.press("slash", *str(os.getpid()), "enter")
        assert await wait_for(pilot, lambda: app.target is not None and app.target.pid == os.getpid())
        await pilot.press("enter")
        assert await wait_for(pilot, lambda: isinstance(app.active_tab(), LayersTab))
        tab = app.active_tab()
        assert await wait_for(pilot, lambda: tab.report is not None), (app.sample.result("layers"), app.target)
        await pilot.pause()
        report = tab.report
        assert report.identity == identity_of(os.getpid())
        assert report.heap.status == "self" and not report.heap.valid and not report.heap.chunks_walked
        assert report.rss_bytes and report.rss_bytes > 0  # the kernel's figures are there
        title = str(app.query_one("#layers-title", Static).render())
        assert f"PID {os.getpid()}" in title and "this is memtop itself: heap not walked" in title
        assert "changing" not in title
        heap_text = str(app.query_one("#layers-heap", Static).render())
        assert "self: this is memtop itself" in heap_text
        assert report.findings[0].text.startswith("This is memtop itself.")
        # r asks again: still not walked
        first = report
        await pilot.press("r")
        assert await wait_for(pilot, lambda: tab.report is not first)
        assert tab.report.heap.status == "self"
        # Arenas says so too
        await pilot.press("3")
        assert await wait_for(pilot, lambda: "this is memtop itself" in " ".join(
            str(w.render()) for w in app.query("ArenasTab Static")))
