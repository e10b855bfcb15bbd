"""The audit log: one JSON line per action, appended and flushed.

``$XDG_STATE_HOME/memtop/actions.log`` (XDG Base Directory spec: state data, default
``~/.local/state``). Each record is written with a single ``write(2)`` on an ``O_APPEND`` file
descriptor, so lines from two memtop processes never interleave, and fsync'd: an action on a
production box is worth a disk flush.

memtop runs as root, and ``XDG_STATE_HOME`` may be a user's (``sudo -E``): nothing here may follow
a link planted by another user or write into a directory another user controls (issue 15, item 3).
So the state directory and its ``memtop/`` subdirectory are opened with O_NOFOLLOW (neither may
be a symbolic link), checked by fstat on the open descriptor (owned by this user, not writable
by group or others), and the log is opened relative to that descriptor with O_NOFOLLOW and
checked to be a regular file of this user with one link. What is opened is what was checked:
renaming things in an ancestor directory afterwards changes nothing.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import stat as stat_mod
import time
from datetime import datetime, timezone
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeLogPath(OSError):
    """The state directory or the log is not safe to write as this user: the message says why,
    in one line."""

    def __init__(self, message: str):
        super().__init__(errno.EPERM, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


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


def _shown(path) -> str:
    from memtop.text import printable

    return printable(os.fspath(path))


def _check_owned(fd: int, path, what: str) -> os.stat_result:
    """fstat ``fd``: owned by this user and not writable by group or others, or UnsafeLogPath."""
    st = os.fstat(fd)
    euid = os.geteuid()
    if st.st_uid != euid:
        raise UnsafeLogPath(f"{what} {_shown(path)} is owned by uid {st.st_uid}, not by you (uid {euid})")
    if st.st_mode & 0o022:
        who = "group and others" if st.st_mode & 0o022 == 0o022 else ("group" if st.st_mode & 0o020 else "others")
        raise UnsafeLogPath(f"{what} {_shown(path)} is writable by {who} (mode {stat_mod.S_IMODE(st.st_mode):04o})")
    return st


def _open_dir(path, what: str, *, dir_fd: int | None = None, create: bool = False) -> int:
    """Open a directory without following a symbolic link (created 0700 when missing and
    ``create``), checked by :func:`_check_owned`. Returns the descriptor."""
    name = os.fspath(path) if dir_fd is None else os.path.basename(os.fspath(path))
    for attempt in (0, 1):
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            break
        except FileNotFoundError:
            if not create or attempt:
                raise
            try:
                if dir_fd is None:
                    os.makedirs(name, mode=0o700)
                else:
                    os.mkdir(name, 0o700, dir_fd=dir_fd)
            except FileExistsError:
                pass  # made by another memtop meanwhile: open it (and check it) now
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                try:
                    is_link = stat_mod.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
                except OSError:
                    is_link = False
                if is_link:
                    raise UnsafeLogPath(f"{what} {_shown(path)} is a symbolic link") from None
            raise
    try:
        _check_owned(fd, path, what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_log(path: Path, flags: int, *, create: bool) -> int:
    """Open the log (``state/memtop/actions.log``) after checking its two directories, without
    following a symbolic link anywhere in those last three names. Raises OSError (UnsafeLogPath
    for what is unsafe, FileNotFoundError when there is no log and not ``create``)."""
    memtop_dir = path.parent
    state_fd = _open_dir(memtop_dir.parent, "the state directory", create=create)
    try:
        memtop_fd = _open_dir(memtop_dir, "the state directory", dir_fd=state_fd, create=create)
    finally:
        os.close(state_fd)
    try:
        try:
            fd = os.open(path.name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, 0o600,
                         dir_fd=memtop_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafeLogPath(f"{_shown(path)} is a symbolic link") from None
            raise
    finally:
        os.close(memtop_fd)
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise UnsafeLogPath(f"{_shown(path)} is not a regular file")
        if st.st_uid != os.geteuid() or st.st_nlink != 1:
            raise UnsafeLogPath(f"{_shown(path)} is owned by uid {st.st_uid} or has other names "
                                f"({st.st_nlink} links)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def append(record: dict, path: Path | None = None) -> Path:
    """Append one record as one line; returns the log's path. Raises OSError if it cannot
    (UnsafeLogPath when a directory or the file is not safe to write: see the module doc)."""
    path = Path(path or log_path())
    line = (json.dumps(record, separators=(",", ":"), sort_keys=False) + "\n").encode()
    fd = _open_log(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, create=True)
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
    except UnsafeLogPath as e:
        return f"did not write the audit log: {e}"
    except OSError as e:
        return f"could not write the audit log {_shown(log_path())}: {e.strerror or e}"
    return None


def read_log(path: Path | None = None, limit: int = 500) -> tuple[list[dict], list[str]]:
    """The last ``limit`` records, oldest first, and a list of problems (unparsable lines, or
    why the log was not read: the same checks as for writing it)."""
    path = Path(path or log_path())
    try:
        fd = _open_log(path, os.O_RDONLY, create=False)
    except FileNotFoundError:
        return [], []
    except UnsafeLogPath as e:
        return [], [f"the audit log was not read: {e}"]
    except OSError as e:
        return [], [f"could not read {_shown(path)}: {e.strerror or e}"]
    try:
        with os.fdopen(fd, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4 * 1024 * 1024))  # the tail is enough for a view
            data = f.read()
    except OSError as e:
        return [], [f"could not read {_shown(path)}: {e.strerror or e}"]
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
