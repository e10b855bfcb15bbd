"""The trim of a process whose malloc is not glibc's: the allocator's own release, predicted,
confirmed and proved like malloc_trim (memtop.actions.trim keeps the flow, the audit log and
the follow-up; this module does the prediction and the call for jemalloc, tcmalloc, mimalloc).

- prediction: the read-only reader of the allocator (memtop.heap.jemalloc, tcmalloc, mimalloc)
  says which resident pages its release gives back: jemalloc's dirty and muzzy extents
  (``arena.<all>.purge``), tcmalloc's page-heap free spans (``ReleaseFreeMemory``), mimalloc's
  pages under its collect rules (``mi_collect(true)``);
- the call: memtop.heap.allocator_calls, through memtop.heap.gdb's recipe;
- the proof: VmRSS before and after, and the resident pages of the ranges the prediction named
  (pagemap), as for glibc's heaps.
"""

from __future__ import annotations

from pathlib import Path

from memtop.model.allocator import KINDS_WITH_RELEASE
from memtop.model.process import ProcessIdentity
from memtop.procfs import PROC, NoSuchProcess, ProcfsError


def allocator_kind(pid: int, root: Path = PROC) -> str | None:
    """The allocator named by the shared objects mapped (cheap: maps only), or None."""
    from memtop.heap.detect import detect_allocator
    from memtop.heap.memory import read_maps

    try:
        return detect_allocator(read_maps(pid, root), None).kind
    except (NoSuchProcess, ProcfsError, OSError):
        return None


def predict(identity: ProcessIdentity, root: Path, threads: int | None, kind: str):
    """A TrimPrediction for the allocator's own release (memtop.actions.trim.TrimPrediction)."""
    from memtop.actions.trim import TrimPrediction, estimate_stop, refused_prediction
    from memtop.heap import analyze, gdb
    from memtop.heap.allocator_calls import allocator_library, release_call

    call = release_call(kind)
    try:
        gdb.check_traceable(identity, root)
        lib = allocator_library(identity.pid, root)
    except gdb.GdbError as e:
        return refused_prediction(str(e), threads)
    report = analyze(identity.pid, root)
    other = report.allocator
    if report.identity is not None and report.identity != identity:
        return refused_prediction(f"PID {identity.pid} is now another process", threads)
    release = reason = None
    ranges: tuple[tuple[int, int], ...] = ()
    if other is None or not other.valid:
        why = other.reason if other is not None else report.reason
        reason = f"{kind}'s state could not be read ({why}): no prediction"
    else:
        release = other.release_bytes
        ranges = other.release_ranges
        if release is None:
            reason = other.unknown_reason("release_bytes") or "the reader gives no release figure"
    stop = estimate_stop(threads, release)
    return TrimPrediction(release, reason, kind, tuple(lib.lock_addresses), threads,
                          stop.seconds, None, ranges, call=call, stop=stop)


def run(identity: ProcessIdentity, timeout: float, root: Path, prediction, fields: dict, notes: list[str]):
    """Run the release: (status, message) as memtop.actions.trim._run returns them; ``fields``
    gets the before/after figures, ``notes`` what happened."""
    from memtop.actions.trim import _error_text, _gdb_failure, _heap_resident, _rss_and_minflt, _same
    from memtop.heap import gdb
    from memtop.heap.allocator_calls import ReleaseOutcome, allocator_library, run_release

    pid = identity.pid
    outcome = ReleaseOutcome()
    call = prediction.call
    try:
        gdb.check_identity(identity, root)
        lib = allocator_library(pid, root)
        if lib.kind != prediction.allocator_kind:
            return "refused", f"PID {pid} now uses {lib.kind}, not {prediction.allocator_kind}: nothing was done"
        fields["heap_resident_before"] = _heap_resident(pid, prediction.heap_ranges, root)
        fields["rss_before"], _ = _rss_and_minflt(pid, root)
        run_release(identity, lib, timeout, outcome, root)
        fields["rss_after"], fields["minflt_after"] = _rss_and_minflt(pid, root)
        fields["heap_resident_after"] = _heap_resident(pid, prediction.heap_ranges, root)
        if outcome.returned is not None and outcome.returned.strip().lstrip("-").isdigit():
            fields["trim_returned"] = int(outcome.returned, 0)
        before, after = fields["rss_before"], fields["rss_after"]
        released = before - after if before is not None and after is not None else None
        if lib.kind == "jemalloc" and fields.get("trim_returned"):
            return "failed", f"{call} returned {fields['trim_returned']} (an errno): nothing was purged"
        from memtop.actions import rss_change_text

        return "ok", f"{call} done: {rss_change_text(released)}"
    except gdb.GdbError as e:
        return _gdb_failure(e, identity, root, fields, notes, "release")
    except (ProcfsError, OSError) as e:
        if not _same(identity, root):
            return "gone", f"PID {pid} exited during the release ({_error_text(e)})"
        return "failed", f"cannot read PID {pid}: {_error_text(e)}"
    finally:
        notes.extend(outcome.notes)
        if outcome.stopped_s is not None:
            fields["stopped_s"] = outcome.stopped_s
        if outcome.call_s is not None:
            fields["call_s"] = outcome.call_s


__all__ = ["KINDS_WITH_RELEASE", "allocator_kind", "predict", "run"]
