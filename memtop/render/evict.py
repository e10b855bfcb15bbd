"""The results of an eviction as text: ``memtop evict`` and the TUI's evict dialog."""

from __future__ import annotations

from memtop.format import counted, fmt_bytes
from memtop.text import printable


def summarize(results) -> str:
    """One line: how many files were evicted completely, partly, not at all, and the bytes dropped."""
    in_memory = sum(1 for r in results if r.ok and r.memory_fs and r.outcome == "partial")
    count = {k: sum(r.outcome == k for r in results) for k in ("complete", "partial", "failed", "refused", "unknown")}
    count["partial"] -= in_memory
    parts = [f"{count['complete']} of {counted(len(results), 'file')} evicted completely"]
    if count["partial"]:
        parts.append(f"{count['partial']} partly (pages stayed cached, see above)")
    if in_memory:
        parts.append(f"{in_memory} in memory-only filesystems (delete the files to free that memory)")
    if count["unknown"]:
        parts.append(f"{count['unknown']} advised, outcome unknown")
    if count["failed"]:
        parts.append(f"{count['failed']} not evicted")
    if count["refused"]:
        parts.append(f"{count['refused']} refused (changed since checked)")
    dropped = sum(r.dropped_bytes or 0 for r in results if r.ok)
    return "; ".join(parts) + f"; {fmt_bytes(dropped)} dropped from the page cache"


def describe(r) -> str:
    """One line for a terminal: the path (any user's choice of bytes) goes through printable()."""
    path = printable(r.path)
    if not r.ok:
        return f"{path}: not evicted: {printable(r.error)}"
    if r.dropped_bytes is None:
        return f"{path}: evicted; cached before/after unknown ({printable(r.unknown_reason)})"
    text = (f"{path}: cached {fmt_bytes(r.before.cached_bytes)} -> {fmt_bytes(r.after.cached_bytes)}: "
            f"dropped {fmt_bytes(r.dropped_bytes)} clean")
    if r.memory_fs and r.outcome == "partial":
        # tmpfs/ramfs/hugetlbfs: no disk behind the pages, so no "cache" to drop (mm/shmem.c has
        # no fadvise eviction); never blame a mapping, a lock or a reader.
        return (f"{path}: a {r.memory_fs} file: its {fmt_bytes(r.after.cached_bytes)} in memory are the file itself "
                "(there is no disk copy), not page cache: they cannot be evicted. Deleting or truncating the file "
                "frees them (a deleted file's memory goes when its last holder closes it).")
    kept = r.kept_dirty_bytes
    if kept:
        text += f"; kept {fmt_bytes(kept)} dirty or under writeback, which could not be dropped (try --sync)"
    other = r.kept_other_bytes
    if other:
        text += f"; {fmt_bytes(other)} stayed cached for other reasons (mapped by a process, locked, or read again)"
    if r.outcome == "partial":
        text += " [partly evicted]"
    return text
