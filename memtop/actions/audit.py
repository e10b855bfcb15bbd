"""The audit log: one JSON line per action, appended and flushed.

``$XDG_STATE_HOME/memtop/actions.log`` (XDG Base Directory spec: state data, default
``~/.local/state``). Each record is written with a single ``write(2)`` on an ``O_APPEND`` file
descriptor, so lines from two memtop processes never interleave, and fsync'd: an action on a
production box is worth a disk flush.
"""

from __future__ import annotations

import json
import os
import pwd
import time
from datetime import datetime, timezone
from pathlib import Path


def log_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME")
    base = Path(state) if state and os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "memtop" / "actions.log"


def current_user() -> str:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def make_record(action: str, target, *, prediction, result: dict, duration_s: float | None,
                when: float | None = None) -> dict:
    """The shape of one line: time, user, action, target, prediction, result, duration."""
    when = time.time() if when is None else when
    return {
        "time": datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds"),
        "user": current_user(),
        "action": action,
        "target": target,
        "prediction": prediction,
        "result": result,
        "duration_s": None if duration_s is None else round(duration_s, 4),
    }


def append(record: dict, path: Path | None = None) -> Path:
    """Append one record as one line; returns the log's path. Raises OSError if it cannot."""
    path = path or log_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    line = (json.dumps(record, separators=(",", ":"), sort_keys=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def log_action(action: str, target, *, prediction, result: dict, duration_s: float | None) -> str | None:
    """Append a record; returns None, or a one-line warning if the log could not be written
    (the action happened either way: the caller shows the warning)."""
    try:
        append(make_record(action, target, prediction=prediction, result=result, duration_s=duration_s))
    except OSError as e:
        return f"could not write the audit log {log_path()}: {e.strerror or e}"
    return None


def read_log(path: Path | None = None, limit: int = 500) -> tuple[list[dict], list[str]]:
    """The last ``limit`` records, oldest first, and a list of problems (unparsable lines)."""
    path = path or log_path()
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * 1024 * 1024))  # the tail is enough for a view
            data = f.read()
    except FileNotFoundError:
        return [], []
    lines = data.decode("utf-8", "replace").splitlines()
    if size > 4 * 1024 * 1024 and lines:
        lines = lines[1:]  # the first line may be cut
    records, problems = [], []
    for number, line in enumerate(lines[-limit:], 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"line {number} of the tail is not JSON")
            continue
        if isinstance(record, dict):
            records.append(record)
    return records, problems
