"""Actions that change memory: trim a heap, evict file pages, drop caches.

Every action checks its target's identity (PID + start time) at the moment of acting, has a
timeout, reports before/after figures and appends one line to the audit log
(:mod:`memtop.actions.audit`). Nothing here imports Textual: the TUI and the CLI stand on top.
"""

from __future__ import annotations

import os
from pathlib import Path

from memtop.model.process import ProcessIdentity
from memtop.procfs import PROC, NoSuchProcess, ProcfsError
from memtop.procfs.process import read_stat

READ_ONLY_REASON = "memtop runs with --read-only: actions are disabled"


def identity_of(pid: int, root: Path = PROC) -> ProcessIdentity | None:
    """The identity of the process with this PID now, or None when there is none."""
    try:
        return ProcessIdentity(pid, read_stat(pid, root).start_ticks)
    except (NoSuchProcess, ProcfsError):
        return None


def unavailable_reason(action: str, *, read_only: bool = False, euid: int | None = None,
                       target_uid: int | None = None) -> str | None:
    """Why ``action`` ("trim", "evict", "drop-caches") cannot be done here, or None.

    ``euid`` defaults to this process's; ``target_uid`` is the owner of the target process
    (trim). Only what is known for sure before trying is said here; the action itself explains
    anything else the kernel refuses.
    """
    if read_only:
        return READ_ONLY_REASON
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return None
    if action == "drop-caches":
        return f"dropping caches writes /proc/sys/vm/drop_caches, which only root may do (you are uid {euid})"
    if action == "trim" and target_uid is not None and target_uid != euid:
        return (f"trimming calls malloc_trim inside the process through gdb (ptrace): a process of uid {target_uid} "
                f"needs root or CAP_SYS_PTRACE (you are uid {euid})")
    return None


def rss_change_text(released: int | None) -> str:
    """How RSS moved across an action, in words that never say "went down by -124 KiB": a
    release that gave nothing back while RSS grew a little (gdb's attach copies a page or two,
    the program kept running) says that."""
    from memtop.format import fmt_bytes

    if released is None:
        return "RSS after it unknown"
    if released > 0:
        return f"RSS went down by {fmt_bytes(released)}"
    if released == 0:
        return "RSS did not change"
    return f"RSS went up by {fmt_bytes(-released)} meanwhile (the program, or gdb's attach, touched more than came back)"


def trim_returned_text(value: str) -> str:
    """malloc_trim's return value in words (malloc(3): 1 if memory was released, else 0)."""
    # glibc's word, which counts pages it handed back even when RSS did not fall (a page touched
    # again, or one that was never resident): the RSS figures beside it say what came back.
    meaning = {"1": "glibc says it released memory", "0": "glibc says nothing to release"}.get(value.strip())
    return f"malloc_trim(0) returned {value.strip()}" + (f" ({meaning})" if meaning else "")
