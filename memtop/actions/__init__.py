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
