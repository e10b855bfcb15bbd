"""Plain-words findings for the allocators that are not glibc, from their reports
(:class:`memtop.model.allocator.AllocatorReport`): what the allocator keeps, why it keeps it, and
what the allocator's own settings or release would change, with the numbers. Pure functions.

Nothing here speaks of glibc's arenas, MALLOC_ARENA_MAX or malloc_trim: those do not apply.
"""

from __future__ import annotations

from memtop.format import MiB, fmt_bytes
from memtop.model.allocator import AllocatorReport
from memtop.model.findings import Finding, Severity


def _worth(value: int | None, rss: int | None, floor: int = 8 * MiB, share: float = 0.10) -> bool:
    """Large enough to mention: at least ``floor`` and, when RSS is known, ``share`` of it."""
    return value is not None and value >= floor and (rss is None or value >= share * rss)


def allocator_findings(report: AllocatorReport, rss: int | None, pid) -> list[Finding]:
    if not report.valid:
        if report.status in ("gone",):
            return []
        severity = Severity.WARNING if report.status == "denied" else Severity.INFO
        from memtop.procfs import denied_advice

        return [Finding(severity, f"Allocator: {report.kind}; its state could not be read ({report.status}: "
                                  f"{report.reason}).", denied_advice(pid if isinstance(pid, int) else None)
                        if report.status == "denied" else None)]
    out = {"jemalloc": _jemalloc, "tcmalloc": _tcmalloc, "mimalloc": _mimalloc, "musl": _musl}[report.kind](report, rss, pid)
    if not out:
        out.append(Finding(Severity.INFO, f"Nothing stands out: {report.kind} holds {fmt_bytes(report.allocated_bytes)} "
                                          f"allocated in {fmt_bytes(report.active_bytes)} of pages in use."))
    return out


def _setting(report: AllocatorReport, name: str) -> str | None:
    s = report.setting(name)
    return s.value if s is not None else None


def _jemalloc(r: AllocatorReport, rss: int | None, pid) -> list[Finding]:
    out = []
    dirty, muzzy = r.detail("dirty_resident_bytes") or 0, r.detail("muzzy_resident_bytes") or 0
    decay = _setting(r, "dirty_decay_ms")
    muzzy_decay = _setting(r, "muzzy_decay_ms")
    running = int(_setting(r, "background_threads_running") or 0)
    release = r.release_bytes or 0
    if _worth(release, rss):
        why = []
        if running == 0:
            why.append("no background thread runs (jemalloc purges only when the program calls into it, so an idle "
                       "program keeps them)")
        if decay not in (None, "0"):
            why.append(f"dirty pages wait dirty_decay_ms = {decay} ms before being purged")
        out.append(Finding(
            Severity.WARNING,
            f"jemalloc keeps {fmt_bytes(dirty + muzzy)} of freed pages resident ({fmt_bytes(dirty)} dirty, "
            f"{fmt_bytes(muzzy)} muzzy) beside {fmt_bytes(r.allocated_bytes)} allocated"
            + (f": {'; '.join(why)}" if why else "") + f". arena.<all>.purge would release {fmt_bytes(release)} now.",
            f"`memtop trim {pid}` purges them through jemalloc's mallctl; for good: MALLOC_CONF="
            "background_thread:true,dirty_decay_ms:1000 (redis: jemalloc-bg-thread yes)."))
    elif running == 0 and dirty >= 4 * MiB:
        out.append(Finding(Severity.INFO, f"jemalloc's background threads are off: {fmt_bytes(dirty)} of dirty pages "
                                          "wait for the program's next allocation to be purged.",
                           "MALLOC_CONF=background_thread:true"))
    if muzzy >= 4 * MiB:
        out.append(Finding(Severity.INFO, f"{fmt_bytes(muzzy)} of jemalloc's muzzy pages (given back with MADV_FREE) "
                                          "still count in RSS until the kernel needs the memory (LazyFree)"
                                          + (f"; muzzy_decay_ms = {muzzy_decay}" if muzzy_decay else "") + ".",
                           "Nothing to do: RSS overstates use; a purge drops them at once."))
    slab_free = r.detail("slab_free_bytes") or 0
    if r.active_bytes and slab_free >= max(16 * MiB, 0.3 * r.active_bytes):
        out.append(Finding(Severity.INFO, f"{fmt_bytes(slab_free)} is free inside jemalloc slabs that still hold live "
                                          f"regions ({fmt_bytes(r.active_bytes)} of pages in use for "
                                          f"{fmt_bytes(r.allocated_bytes)} allocated): fragmentation, which no purge "
                                          "returns.", "Only freeing or reallocating the long-lived objects helps "
                                          "(redis: activedefrag, with its bundled jemalloc)."))
    if r.retained_bytes and r.retained_bytes >= 64 * MiB:
        out.append(Finding(Severity.INFO, f"jemalloc retains {fmt_bytes(r.retained_bytes)} of address space it already "
                                          "gave back (opt.retain): it costs no RAM."))
    return out


def _tcmalloc(r: AllocatorReport, rss: int | None, pid) -> list[Finding]:
    out = []
    rate = _setting(r, "release_rate")
    release = r.release_bytes or 0
    if _worth(release, rss):
        slow = ""
        if rate is not None:
            slow = (" TCMALLOC_RELEASE_RATE is 0: tcmalloc never gives free pages back by itself." if rate == "0"
                    else f" The release rate is {rate} (TCMALLOC_RELEASE_RATE; higher returns free pages sooner).")
        out.append(Finding(
            Severity.WARNING,
            f"tcmalloc's page heap keeps {fmt_bytes(release)} of free pages resident ({fmt_bytes(r.free_kept_bytes)} "
            f"free in all) beside {fmt_bytes(r.allocated_bytes)} allocated.{slow} MallocExtension_ReleaseFreeMemory "
            f"would release {fmt_bytes(release)} now.",
            f"`memtop trim {pid}` calls it; for good: TCMALLOC_RELEASE_RATE=10 (or the program calls "
            "MallocExtension::ReleaseFreeMemory after a peak)."))
    caches = sum(r.detail(k) or 0 for k in ("central_cache_free_bytes", "transfer_cache_free_bytes",
                                           "thread_cache_free_bytes"))
    if r.active_bytes and caches >= max(16 * MiB, 0.2 * r.active_bytes):
        out.append(Finding(Severity.INFO, f"{fmt_bytes(caches)} of freed objects sit in tcmalloc's caches (central "
                                          f"{fmt_bytes(r.detail('central_cache_free_bytes'))}, transfer "
                                          f"{fmt_bytes(r.detail('transfer_cache_free_bytes'))}, threads "
                                          f"{fmt_bytes(r.detail('thread_cache_free_bytes'))}): ReleaseFreeMemory does not "
                                          "touch them.", "TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES caps the thread caches."))
    return out


def _mimalloc(r: AllocatorReport, rss: int | None, pid) -> list[Finding]:
    out = []
    pending = r.detail("pending_decommit_resident_bytes") or 0
    if _worth(pending, rss):
        out.append(Finding(
            Severity.WARNING,
            f"mimalloc keeps {fmt_bytes(pending)} of freed pages committed, waiting for a delayed decommit: mimalloc 2.0 "
            "runs it only when the owning thread frees or allocates again, so an idle thread keeps them. "
            f"mi_collect(true) would release {fmt_bytes(r.release_bytes)} now.",
            "MIMALLOC_DECOMMIT_DELAY=0 decommits at once (more system calls)."))
    elif _worth(r.release_bytes, rss):
        out.append(Finding(Severity.INFO, f"mi_collect(true) would release {fmt_bytes(r.release_bytes)} of RSS now.",
                           f"`memtop trim {pid}`"))
    return out


def _musl(r: AllocatorReport, rss: int | None, pid) -> list[Finding]:
    out = []
    free = r.free_kept_bytes or 0
    if free >= max(8 * MiB, r.allocated_bytes or 0):
        out.append(Finding(Severity.INFO, f"musl keeps {fmt_bytes(free)} in free slots of groups that still hold a live "
                                          f"allocation, beside {fmt_bytes(r.allocated_bytes)} allocated: fragmentation. "
                                          "musl has no call that gives it back (no malloc_trim).",
                           "Freeing the last live slot of a group returns the whole group; long-lived small objects "
                           "allocated early keep groups alive."))
    out.append(Finding(Severity.INFO, "musl: " + "; ".join(r.notes) + "."))
    return out
