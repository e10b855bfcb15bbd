"""/proc/PID/environ: the environment a process was started with (man 5 proc_pid_environ).

The file shows the initial environment block; a process that calls setenv() later does not
change it, and mallopt() calls never show here. It is readable by the process's owner (and
root): a ptrace "read" access check, like smaps.
"""

from __future__ import annotations

from pathlib import Path

from memtop.procfs import PROC, read_bytes


def parse_environ_file(data: bytes) -> dict[str, str]:
    """NUL-separated NAME=value entries; entries without '=' are skipped, the first of a name wins
    (glibc's getenv() returns the first match)."""
    env: dict[str, str] = {}
    for entry in data.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if not sep or not name:
            continue
        key = name.decode("utf-8", "surrogateescape")
        env.setdefault(key, value.decode("utf-8", "surrogateescape"))
    return env


def read_environ(pid: int, root: Path = PROC) -> dict[str, str]:
    """Raises AccessDenied (not the owner, not root) or NoSuchProcess."""
    return parse_environ_file(read_bytes(f"{root}/{pid}/environ"))
