"""Trim a process's glibc heap: predict, run malloc_trim(0) through gdb, report, follow up.

malloc_trim(0) (glibc malloc/malloc.c: ``__malloc_trim`` -> ``mtrim``) consolidates fastbins,
madvise(MADV_DONTNEED)s the whole free pages inside free chunks of every arena and shrinks the
main arena's top with brk. The prediction comes from memtop's read-only heap walk
(:func:`memtop.heap.analyze`); the call goes through :mod:`memtop.heap.gdb`, which holds the
safety recipe. Afterwards RSS is followed for a minute: memory that comes straight back means
the program reuses it, and trimming will not help for long.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from memtop.actions import audit
from memtop.format import fmt_bytes
from memtop.heap import analyze, gdb
from memtop.model.process import ProcessIdentity
from memtop.procfs import PAGE_SIZE, PROC, NoSuchProcess, ProcfsError, read_bytes
from memtop.procfs.process import read_stat, read_status

TRIM_EXPRESSION = "((int (*)(unsigned long))malloc_trim)(0)"
DEFAULT_TIMEOUT_S = 5.0

# The stop estimate shown before a trim (estimate_stop). What stops the process is gdb: the
# attach (ptrace-stopping every thread, reading /proc/PID/maps), the safety checks (every thread's
# innermost frames unwound, the arena locks read), the call, and the detach. Costs measured with
# bench/stop_estimate.py on this machine (2 CPUs, gdb 13.1, CPUs free), from 2 to 257 threads,
# 16 MiB to 1 GiB heaps, 20,000 mappings:
STOP_BASE_S = 0.012  # attach, thread list, lock check and detach of a two-thread process
STOP_PER_THREAD_S = 0.0009  # ptrace stop + unwinding its frames + detach, per thread
STOP_PER_MAPPING_S = 0.3e-6  # gdb reads the process's maps at attach
TRIM_BASE_S = 0.002
TRIM_PER_MIB_RELEASED_S = 0.0004  # malloc_trim's madvise(MADV_DONTNEED) of resident pages
TRIM_PER_FREE_CHUNK_S = 0.05e-6  # mtrim visits every free chunk in the bins of every arena
# When the CPUs are busy, gdb's part (a long chain of short steps, each waiting for a CPU) takes
# longer by the slowdown a CPU-bound task of memtop sees right now (cpu_slowdown: wall time over
# CPU time of short busy loops; gdb is memtop's child, in its scheduling group). Measured with
# 4 busy loops on 2 CPUs: probe 5.6-6.2, 65 and 257-thread stops 5-7 times their idle cost. The
# call runs in one of the target's threads, which the scheduler favours after its sleep:
# measured at most 1.5 times slower.
TRIM_MAX_SLOWDOWN = 1.5
PROBE_SAMPLES = 8  # busy loops of 4 ms CPU each, at most 0.3 s of wall time in all
PROBE_CPU_S = 0.004
PROBE_MAX_WALL_S = 0.3
# A busy program is often caught with a thread inside malloc: gdb detaches and attaches again,
# up to gdb.ATTEMPTS windows, which the estimate's upper figure counts.

# "Came straight back": at least this share of what was released is resident again.
CAME_BACK_FRACTION = 0.5
# Free bytes kept in the heap above which "nothing would be released" is said to be fragmentation.
FRAGMENTED_FREE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class TrimPrediction:
    """What the read-only heap walk says a trim would do, before anything is stopped."""

    release_bytes: int | None  # expected RSS drop; None when the walk could not tell
    reason: str | None  # why release_bytes is None, or a caveat
    allocator_kind: str | None
    mutex_addresses: tuple[int, ...]  # each arena's malloc_state (its mutex is the int at offset 0)
    threads: int | None
    estimated_stop_s: float
    refusal: str | None = None  # the target cannot be trimmed (not glibc, static, corrupt heap...): why
    heap_ranges: tuple[tuple[int, int], ...] = ()  # (start, end) of every heap, to measure the actual drop
    # The read-only walk never validated (the heap changed under every walk): the trim walks it
    # again with the process stopped and calls malloc_trim only if that walk is valid.
    validate_when_stopped: bool = False
    call: str = "malloc_trim(0)"  # the allocator's release that is called (memtop.actions.release for others)
    stop: StopEstimate | None = None  # how estimated_stop_s was made

    def as_json(self) -> dict:
        return {
            "release_bytes": self.release_bytes,
            "reason": self.reason,
            "allocator_kind": self.allocator_kind,
            "arenas": len(self.mutex_addresses),
            "threads": self.threads,
            "estimated_stop_ms": round(self.estimated_stop_s * 1000),
            "estimated_stop_max_ms": round(self.stop.max_seconds * 1000) if self.stop is not None else None,
            "stop_estimate_basis": self.stop.basis if self.stop is not None else None,
            "refusal": self.refusal,
            "validate_when_stopped": self.validate_when_stopped,
            "call": self.call,
        }


@dataclass(frozen=True, slots=True)
class TrimResult:
    identity: ProcessIdentity
    comm: str
    status: str  # "ok", "refused" (nothing done), "failed", "gone", "unavailable"
    message: str
    prediction: TrimPrediction | None
    rss_before: int | None = None
    rss_after: int | None = None
    minflt_after: int | None = None  # stat field 10 right after the trim, for the follow-up
    # Resident bytes of the heaps (pagemap) before and after: what the trim itself released.
    # RSS moves by a few pages more: gdb's breakpoints copy a page or two, its reads fault
    # some file pages in.
    heap_resident_before: int | None = None
    heap_resident_after: int | None = None
    stopped_s: float | None = None  # measured: gdb's attach to its detach, every window summed
    call_s: float | None = None
    attach_s: float | None = None  # the last window's -target-attach (every thread stopped)
    detach_s: float | None = None
    windows: int | None = None  # gdb attached this many times (a retry when a thread was inside malloc)
    stopped_walk_s: float | None = None  # the walk made with the process stopped, if one was
    trim_returned: int | None = None  # malloc_trim's value: 1 if memory was released
    interrupted: bool = False
    duration_s: float = 0.0
    notes: tuple[str, ...] = ()
    log_warning: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def released_bytes(self) -> int | None:
        """The drop of RSS (VmRSS), what a user sees."""
        if self.rss_before is None or self.rss_after is None:
            return None
        return self.rss_before - self.rss_after

    @property
    def heap_released_bytes(self) -> int | None:
        """The drop of the heaps' resident pages: what to compare with the prediction."""
        if self.heap_resident_before is None or self.heap_resident_after is None:
            return None
        return self.heap_resident_before - self.heap_resident_after

    def as_json(self) -> dict:
        return {
            "pid": self.identity.pid,
            "start_ticks": self.identity.start_ticks,
            "comm": self.comm,
            "status": self.status,
            "message": self.message,
            "prediction": self.prediction.as_json() if self.prediction else None,
            "rss_before_bytes": self.rss_before,
            "rss_after_bytes": self.rss_after,
            "released_bytes": self.released_bytes,
            "heap_resident_before_bytes": self.heap_resident_before,
            "heap_resident_after_bytes": self.heap_resident_after,
            "heap_released_bytes": self.heap_released_bytes,
            "stopped_ms": None if self.stopped_s is None else round(self.stopped_s * 1000, 1),
            "estimated_stop_ms": round(self.prediction.estimated_stop_s * 1000) if self.prediction else None,
            "call_ms": None if self.call_s is None else round(self.call_s * 1000, 1),
            "attach_ms": None if self.attach_s is None else round(self.attach_s * 1000, 1),
            "detach_ms": None if self.detach_s is None else round(self.detach_s * 1000, 1),
            "stopped_walk_ms": None if self.stopped_walk_s is None else round(self.stopped_walk_s * 1000, 1),
            "gdb_windows": self.windows,
            "malloc_trim_returned": self.trim_returned,
            "interrupted": self.interrupted,
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class StopEstimate:
    """How long a trim would stop the process: one gdb window (``seconds``), and with every retry
    the recipe allows (``max_seconds``); ``basis`` says what it was computed from."""

    seconds: float
    max_seconds: float
    slowdown: float  # the CPU slowdown the estimate assumed (1: free CPUs)
    basis: str


def cpu_slowdown(samples: int = PROBE_SAMPLES, cpu_s: float = PROBE_CPU_S, max_wall_s: float = PROBE_MAX_WALL_S) -> float:
    """How much longer than its CPU time a CPU-bound task of memtop takes right now: wall time
    over thread CPU time of ``samples`` busy loops of ``cpu_s`` CPU seconds (1 on free CPUs),
    summed over them all so that one lucky slice does not decide; it stops after
    ``max_wall_s``. It measures what the scheduler gives memtop's group, other cgroups'
    weights included, which counting runnable tasks cannot."""
    wall_total = cpu_total = 0.0
    for _ in range(samples):
        wall, cpu = time.perf_counter(), time.thread_time()
        while time.thread_time() - cpu < cpu_s:
            pass
        wall_total += time.perf_counter() - wall
        cpu_total += time.thread_time() - cpu
        if wall_total >= max_wall_s:
            break
    return max(1.0, wall_total / max(1e-9, cpu_total))


def estimate_stop(threads: int | None, release_bytes: int | None, *, mappings: int | None = None,
                  free_chunks: int | None = None, stopped_walk_s: float | None = None,
                  slowdown: float | None = None) -> StopEstimate:
    """The stop a trim would cause: gdb's attach, checks and detach (per thread and mapping),
    the call (malloc_trim: per free chunk visited and per MiB given back), and a walk made with
    the process stopped when no walk validated while it ran, at the CPU slowdown measured now
    (``slowdown``; cpu_slowdown() when None)."""
    threads = threads or 1
    measured = slowdown is None
    slower = cpu_slowdown() if measured else max(1.0, slowdown)
    window = slower * (STOP_BASE_S + STOP_PER_THREAD_S * threads + STOP_PER_MAPPING_S * (mappings or 0))
    call = min(TRIM_MAX_SLOWDOWN, slower) * (TRIM_BASE_S + TRIM_PER_MIB_RELEASED_S * (release_bytes or 0) / 2**20
                                             + TRIM_PER_FREE_CHUNK_S * (free_chunks or 0))
    walk = slower * (stopped_walk_s or 0.0)
    seconds = window + walk + call
    max_seconds = gdb.ATTEMPTS * window + walk + call
    parts = [f"{threads} thread{'s' if threads != 1 else ''} x {STOP_PER_THREAD_S * 1000:.1f} ms"]
    if mappings:
        parts.append(f"{mappings} mappings")
    parts.append(f"{STOP_BASE_S * 1000:.0f} ms for attach and detach")
    words = (f"gdb {window * 1000:.0f} ms ({' + '.join(parts)}, measured on free CPUs, x {slower:.1f}: "
             f"the CPU slowdown {'measured now' if measured else 'given'}) + the call {call * 1000:.0f} ms")
    if walk:
        words += f" + a walk with the process stopped {walk * 1000:.0f} ms"
    basis = (f"{words}; up to {max_seconds * 1000:.0f} ms if gdb catches a thread inside malloc and attaches "
             f"again ({gdb.ATTEMPTS} tries); costs: bench/stop_estimate.py")
    return StopEstimate(seconds, max_seconds, slower, basis)


def refused_prediction(reason: str, threads: int | None = None) -> TrimPrediction:
    """A prediction that says the trim cannot be done, and why."""
    stop = estimate_stop(threads, None, slowdown=1.0)
    return TrimPrediction(None, reason, None, (), threads, stop.seconds, reason, stop=stop)


def predict(identity: ProcessIdentity, root: Path = PROC, *, cancel=None) -> TrimPrediction:
    """Read-only: allocator, arenas (for the mutex check) and the expected RSS drop.

    ``cancel``: passed to the heap walk (:func:`memtop.heap.analyze`), which raises
    :class:`memtop.heap.Cancelled` when it returns True (the guard bounds each walk's time)."""
    threads = None
    try:
        threads = read_stat(identity.pid, root).num_threads
    except (NoSuchProcess, ProcfsError):
        pass
    from memtop.actions import release

    kind = release.allocator_kind(identity.pid, root)
    if kind in release.KINDS_WITH_RELEASE:  # jemalloc, tcmalloc, mimalloc: their own release
        return release.predict(identity, root, threads, kind)
    refusal = None
    try:
        gdb.check_traceable(identity, root)  # itself, stopped, traced, kernel thread, permission
        gdb.find_libc(identity.pid, root)  # static, musl, jemalloc...
    except gdb.GdbError as e:
        refusal = str(e)
    except (ProcfsError, OSError) as e:  # whatever the kernel refuses becomes a refusal, never a traceback
        refusal = f"cannot read PID {identity.pid}: {_error_text(e)}"
    if refusal is not None:
        # Nothing can be done: skip the walk (it would fail on the same file, or waste seconds).
        return refused_prediction(refusal, threads)
    reason = None
    report = analyze(identity.pid, root, cancel=cancel)
    kind = report.allocator_kind
    if report.status == "corrupt":
        # malloc_trim walks the same chunks (malloc_consolidate, mtrim): on a damaged heap it can
        # crash the process or damage it further. memtop never trims a heap it calls corrupt.
        return refused_prediction(f"memtop's heap walk finds the heap of PID {identity.pid} corrupt "
                                  f"({report.reason}): malloc_trim on a damaged heap could crash the process, so "
                                  "memtop does not trim it", threads)
    if not report.valid and report.status not in ("changing",):
        # gone, denied, unsupported, not-glibc, zombie, kernel-thread: the walk says why.
        return refused_prediction(f"PID {identity.pid}: {report.reason or report.status}", threads)
    # Arenas never move or go away once created, so a previous valid walk still names them.
    known = report.arenas or (report.last_valid.arenas if report.last_valid is not None else ())
    arenas = tuple(a.address for a in known)
    if not arenas and refusal is None:
        # No walk ever validated (a heap changing fast): the arena list alone is cheap to read,
        # and the lock check must not be skipped for want of it.
        try:
            arenas = tuple(gdb.arena_mutexes(identity.pid, root))
        except gdb.GdbError as e:
            refusal = str(e)  # without the arenas the lock check cannot be made: do not trim
    release = report.trim_release_bytes if report.valid else None
    kept = report.free_bytes + report.fastbin_bytes
    if release == 0 and kept >= FRAGMENTED_FREE_BYTES:
        # Free memory kept and nothing to release: either no free chunk spans a whole page (holes
        # between chunks in use), or their whole pages are not resident any more.
        if not any(size >= 2 * PAGE_SIZE for arena in known for size, _, _ in arena.free_size_histogram):
            reason = (f"the {fmt_bytes(kept)} glibc keeps free lies in holes between chunks in use, none spanning "
                      "a whole free page (fragmentation): malloc_trim gives back only whole free pages; what frees "
                      "it is the program releasing the chunks around them")
        else:
            reason = (f"the whole pages inside the {fmt_bytes(kept)} glibc keeps free are not resident: given back "
                      "already (e.g. by an earlier trim) or swapped out")
    validate = not report.valid  # "changing": no walk could be validated while the process ran
    if validate:
        walk = report.reason or "the heap walk was not consistent"
        reason = (f"{walk}; memtop will walk the heap again with the process stopped and call malloc_trim only if "
                  "that walk is valid (the stop lasts longer by the time of the walk)")
    if refusal is None and kind not in (None, "glibc"):
        refusal = f"PID {identity.pid} does not use glibc malloc ({kind}): {report.reason or 'malloc_trim would not help'}"
    ranges = tuple((start, start + size) for arena in known for start, size in arena.heaps)
    stop = estimate_stop(threads, release, mappings=_mapping_count(identity.pid, root),
                         free_chunks=sum(a.free_count + a.fastbin_count for a in known),
                         stopped_walk_s=report.walk_seconds / max(1, report.attempts) if validate else None)
    return TrimPrediction(release, reason, kind, arenas, threads, stop.seconds, refusal, ranges,
                          validate_when_stopped=validate, stop=stop)


def _mapping_count(pid: int, root: Path) -> int | None:
    try:
        return read_bytes(f"{root}/{pid}/maps").count(b"\n")
    except (ProcfsError, OSError):
        return None


def _error_text(e: BaseException) -> str:
    """One line for an OSError or a ProcfsError (AccessDenied carries the kernel's reason)."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return str(e) or type(e).__name__


def _comm(pid: int, root: Path) -> str:
    try:
        return read_stat(pid, root).comm
    except (NoSuchProcess, ProcfsError):
        return "?"


def _rss_and_minflt(pid: int, root: Path) -> tuple[int | None, int | None]:
    try:
        return read_status(pid, root).rss, read_stat(pid, root).minflt
    except (NoSuchProcess, ProcfsError):
        return None, None


def trim(identity: ProcessIdentity, *, timeout: float = DEFAULT_TIMEOUT_S, root: Path = PROC,
         prediction: TrimPrediction | None = None, log: bool = True) -> TrimResult:
    """Run malloc_trim(0) in the process, safely (memtop.heap.gdb's recipe); never raises for
    a problem with the target. The result says what happened; one audit line is written."""
    root = Path(root)
    started = time.monotonic()
    comm = _comm(identity.pid, root)
    fields: dict = {}
    notes: list[str] = []
    if prediction is None:
        prediction = predict(identity, root)
    from memtop.actions import release

    if prediction.refusal:
        status, message = "refused", prediction.refusal
    elif prediction.allocator_kind in release.KINDS_WITH_RELEASE:
        status, message = release.run(identity, timeout, root, prediction, fields, notes)
    else:
        status, message = _run(identity, timeout, root, prediction, fields, notes)
    result = TrimResult(identity=identity, comm=comm, status=status, message=message, prediction=prediction,
                        duration_s=time.monotonic() - started, notes=tuple(notes), **fields)
    if log:
        warning = audit.log_action(
            "trim", {"pid": identity.pid, "start_ticks": identity.start_ticks, "comm": comm},
            prediction=prediction.as_json(), result={k: v for k, v in result.as_json().items() if k != "prediction"},
            duration_s=result.duration_s)
        if warning:
            result = _replace(result, log_warning=warning)
    return result


def _replace(result: TrimResult, **changes) -> TrimResult:
    from dataclasses import replace

    return replace(result, **changes)


def _run(identity, timeout, root, prediction, fields, notes) -> tuple[str, str]:
    pid = identity.pid
    session = None
    try:
        gdb.check_identity(identity, root)
        fields["heap_resident_before"] = _heap_resident(pid, prediction.heap_ranges, root)
        fields["rss_before"], _ = _rss_and_minflt(pid, root)
        deadline = time.monotonic() + timeout
        stopped = gdb.open_session(identity, mutex_addresses=list(prediction.mutex_addresses), timeout=timeout,
                                   root=root)
        session = stopped.session
        if prediction.validate_when_stopped:
            walk_started = time.monotonic()
            try:
                _validate_stopped(identity, root, deadline, notes)
                fields["stopped_walk_s"] = time.monotonic() - walk_started
            except BaseException:
                gdb.finish_session(session)
                raise
        call_started = time.monotonic()
        try:
            value = session.call(TRIM_EXPRESSION, stopped.calling_thread, timeout)
        finally:
            fields["call_s"] = time.monotonic() - call_started
            gdb.finish_session(session)
        fields["trim_returned"] = int(value, 0) if value.strip().lstrip("-").isdigit() else None
        fields["rss_after"], fields["minflt_after"] = _rss_and_minflt(pid, root)
        fields["heap_resident_after"] = _heap_resident(pid, prediction.heap_ranges, root)
        released = (fields["rss_before"] - fields["rss_after"]) if fields["rss_before"] is not None and fields["rss_after"] is not None else None
        from memtop.actions import rss_change_text, trim_returned_text

        return "ok", f"{trim_returned_text(value)}: {rss_change_text(released)}"
    except gdb.GdbError as e:
        return _gdb_failure(e, identity, root, fields, notes, "trim", session is not None and session.exited)
    except (ProcfsError, OSError) as e:
        # A /proc file the kernel refused (or a vanished one) inside the recipe. open_session
        # detaches before it lets anything through, and the call path finishes the session.
        if not _same(identity, root):
            return "gone", f"PID {pid} exited during the trim ({_error_text(e)})"
        if session is None:
            return "refused", f"nothing was done: cannot read PID {pid}: {_error_text(e)}"
        return "failed", f"cannot read PID {pid} after the call: {_error_text(e)}"
    finally:
        if session is not None:
            fields["stopped_s"] = session.stopped_s
            fields["attach_s"] = session.times.attach_s
            fields["detach_s"] = session.times.detach_s
            fields["windows"] = sum(1 for note in session.notes if note.startswith("attached to"))
            notes.extend(session.notes)


def _validate_stopped(identity: ProcessIdentity, root: Path, deadline: float, notes: list[str]) -> None:
    """With the process stopped by gdb (no thread inside the allocator, every arena lock free)
    the heap cannot change: one walk must now be valid, or nothing is called (gdb.Refused)."""
    from memtop.heap import Cancelled

    started = time.monotonic()
    try:
        report = analyze(identity.pid, root, retries=1, cancel=lambda: time.monotonic() > deadline)
    except Cancelled:
        raise gdb.Refused(f"the heap walk with PID {identity.pid} stopped did not finish within the timeout: "
                          "nothing was done (a larger --timeout allows a longer stop)") from None
    if not report.valid:
        raise gdb.Refused(f"the heap of PID {identity.pid} could not be validated even with the process stopped "
                          f"({report.reason}): memtop does not trim a heap it cannot validate; nothing was done")
    notes.append(f"heap walked with the process stopped: valid ({report.chunks_walked} chunks, "
                 f"{(time.monotonic() - started) * 1000:.0f} ms)")


def _gdb_failure(error: gdb.GdbError, identity: ProcessIdentity, root: Path, fields: dict, notes: list[str],
                 what: str, exited: bool = False) -> tuple[str, str]:
    """(status, message) for a gdb error raised during an action on ``identity`` (the trim, an
    allocator's release): a refusal, the target gone, no gdb, a call that failed (the figures
    after it are read), or another gdb error (gone when the process exited, ``exited`` when gdb
    saw it exit, else failed)."""
    pid = identity.pid
    if isinstance(error, (gdb.Refused, gdb.TargetGone, gdb.GdbUnavailable)):
        _carry(error, fields, notes)
        status = "refused" if isinstance(error, gdb.Refused) else "gone" if isinstance(error, gdb.TargetGone) else "unavailable"
        return status, str(error)
    if isinstance(error, gdb.CallFailed):
        fields["interrupted"] = error.interrupted
        fields["rss_after"], fields["minflt_after"] = _rss_and_minflt(pid, root)
        return "failed", str(error)
    if exited or not _same(identity, root):
        return "gone", f"PID {pid} exited during the {what} ({error})"
    return "failed", str(error)


def _carry(error: gdb.GdbError, fields: dict, notes: list[str]) -> None:
    """A refusal from inside open_session: keep what happened before it."""
    notes.extend(error.notes)
    if error.stopped_s is not None:
        fields["stopped_s"] = error.stopped_s


def _heap_resident(pid: int, ranges, root: Path) -> int | None:
    """Present pages (pagemap bit 63, the zero page excluded) in the heaps' ranges."""
    if not ranges:
        return None
    from memtop.heap.memory import TargetMemory

    try:
        with TargetMemory(pid, root) as mem:
            return sum(mem.resident_bytes(start, end) for start, end in ranges)
    except (ProcfsError, OSError):
        return None


def _same(identity: ProcessIdentity, root: Path) -> bool:
    try:
        gdb.check_identity(identity, root)
        return True
    except gdb.TargetGone:
        return False
    except gdb.GdbError:
        return True  # could not tell (e.g. refused): do not claim it is gone


# --- after the trim -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FollowPoint:
    seconds_after: float
    rss_bytes: int | None
    minflt_per_s: float | None


@dataclass(frozen=True, slots=True)
class FollowSummary:
    seconds: float
    regrowth_bytes: int | None  # RSS now minus RSS right after the trim
    minflt_per_s: float | None  # average since the trim
    came_back: bool
    finding: str
    points: tuple[FollowPoint, ...] = field(default=())


def follow(result: TrimResult, *, duration_s: float = 60.0, interval_s: float = 1.0, root: Path = PROC,
           should_stop=lambda: False) -> Iterator[FollowPoint]:
    """RSS and the minor-fault rate of the trimmed process, every ``interval_s`` for
    ``duration_s``; stops early when the process is gone (or its PID reused) or ``should_stop()``."""
    pid = result.identity.pid
    start = time.monotonic()
    prev_time, prev_minflt = start, result.minflt_after
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= duration_s or should_stop():
            return
        time.sleep(min(interval_s, max(0.0, duration_s - elapsed)))
        if should_stop():
            return
        try:
            stat = read_stat(pid, root)
            status = read_status(pid, root)
        except (NoSuchProcess, ProcfsError):
            return
        if stat.start_ticks != result.identity.start_ticks:
            return
        now = time.monotonic()
        rate = None
        if prev_minflt is not None and now > prev_time:
            rate = (stat.minflt - prev_minflt) / (now - prev_time)
        prev_time, prev_minflt = now, stat.minflt
        yield FollowPoint(now - start, status.rss, rate)


def summarize_follow(result: TrimResult, points: list[FollowPoint] | tuple[FollowPoint, ...]) -> FollowSummary:
    """The finding after a follow-up: did the memory come straight back?"""
    from memtop.format import fmt_bytes, fmt_duration, fmt_rate

    points = tuple(points)
    if not points or result.rss_after is None or points[-1].rss_bytes is None:
        return FollowSummary(0.0, None, None, False, "no follow-up: the process is gone or was not trimmed", points)
    last = points[-1]
    seconds = last.seconds_after
    regrowth = last.rss_bytes - result.rss_after
    rates = [p.minflt_per_s for p in points if p.minflt_per_s is not None]
    rate = sum(rates) / len(rates) if rates else None
    released = result.released_bytes or 0
    came_back = released > 0 and regrowth >= CAME_BACK_FRACTION * released
    span = fmt_duration(seconds)
    if came_back:
        finding = (f"the memory came straight back: RSS regrew by {fmt_bytes(regrowth)} of the {fmt_bytes(released)} "
                   f"released within {span} ({fmt_rate(rate)} minor faults): the program reuses it, so trimming "
                   "only moves the cost to page faults")
    elif released <= 0:
        finding = f"nothing was released; RSS changed by {fmt_bytes(regrowth, signed=True)} in {span}"
    else:
        finding = (f"RSS stayed down: {fmt_bytes(max(regrowth, 0))} of the {fmt_bytes(released)} released came back "
                   f"in {span} ({fmt_rate(rate)} minor faults)")
    return FollowSummary(seconds, regrowth, rate, came_back, finding, points)
