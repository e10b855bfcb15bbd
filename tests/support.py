"""Helpers for tests that start real processes: compile C targets, spawn children, clean up.

A target speaks a tiny line protocol when it wants to be driven: it prints ``READY`` (optionally
followed by fields) on stdout once set up, then reads commands from stdin, one per line, and
answers each with one line. :class:`Child` wraps that.
"""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

TARGET_CACHE = Path(__file__).resolve().parent / ".targets"


def compile_c(source: str, *, name: str = "target", flags: tuple[str, ...] = ("-O1", "-g", "-pthread"),
              compiler: str = "gcc", libs: tuple[str, ...] = ()) -> Path:
    """Compile ``source`` with gcc (or ``compiler``, e.g. musl-gcc) during the run, linking
    ``libs`` after it; binaries are cached by content hash."""
    TARGET_CACHE.mkdir(exist_ok=True)
    extra = ("" if compiler == "gcc" else "\0" + compiler) + ("\0libs\0" + "\0".join(libs) if libs else "")
    digest = hashlib.sha256((source + "\0".join(flags) + extra).encode()).hexdigest()[:16]
    binary = TARGET_CACHE / f"{name}-{digest}"
    if not binary.exists():
        # make test runs two pytest workers (pytest-xdist): both may build the same binary at
        # once, so each writes its own files and renames them into place (same content).
        src = TARGET_CACHE / f"{name}-{digest}.c"
        mine = f".{os.getpid()}.tmp"
        src_tmp = src.with_name(src.name + mine)
        src_tmp.write_text(source)
        src_tmp.rename(src)
        tmp = binary.with_name(binary.name + mine)
        subprocess.run([compiler, *flags, "-o", str(tmp), str(src), *libs], check=True, capture_output=True, text=True)
        tmp.rename(binary)
    return binary


class Child:
    """A child process in its own process group, killed (group) at close."""

    def __init__(self, argv: list[str], *, env: dict | None = None, ready: bool = True, timeout: float = 20.0, **kw):
        self.proc = subprocess.Popen(
            [str(a) for a in argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=env,
            **kw,
        )
        self.pid = self.proc.pid
        self.ready_line = self.readline(timeout) if ready else None
        if ready and not (self.ready_line or "").startswith("READY"):
            err = self._stderr_now()
            self.close()
            raise RuntimeError(f"{argv[0]} did not get ready: {self.ready_line!r} {err}")

    def _stderr_now(self) -> str:
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read().decode(errors="replace")

    def readline(self, timeout: float = 20.0) -> str:
        # poll, not select: select() fails on fd numbers >= 1024.
        poller = select.poll()
        poller.register(self.proc.stdout.fileno(), select.POLLIN)
        if not poller.poll(timeout * 1000):
            raise TimeoutError(f"no answer from PID {self.pid} in {timeout} s")
        return self.proc.stdout.readline().decode().rstrip("\n")

    def ask(self, command: str, timeout: float = 30.0) -> str:
        """Send one command line, return the one-line answer."""
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self.readline(timeout)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def python_child(code: str, **kw) -> Child:
    """A Python child running ``code`` (which should print READY and flush)."""
    return Child([sys.executable, "-c", code], **kw)


def status_kb(pid: int, key: str) -> int:
    """An independent read of one /proc/PID/status line, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def rollup_kb(pid: int, key: str) -> int:
    """An independent read of one /proc/PID/smaps_rollup line, in bytes."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value; return it, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


def end_tmux_server(name: str, timeout: float = 10.0) -> None:
    """End the tmux server a test started with ``tmux -L name`` and remove its socket file, which
    kill-server leaves behind in $TMUX_TMPDIR/tmux-UID (/tmp by default)."""
    subprocess.run(["tmux", "-L", name, "kill-server"], capture_output=True, timeout=timeout)
    (Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / name).unlink(missing_ok=True)


IS_ROOT = os.geteuid() == 0


def run_as_user(uid: int, func, timeout: float = 30.0):
    """Run ``func()`` in a forked child that dropped to ``uid`` (root only); return its result.

    Forking (no exec) sidesteps interpreters that the unprivileged user cannot execute.
    """
    import pickle

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 0
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            payload = pickle.dumps(("ok", func()))
        except BaseException as e:  # report anything to the parent, then exit
            payload = pickle.dumps(("error", repr(e)))
            status = 1
        with os.fdopen(write_fd, "wb") as f:
            f.write(payload)
        os._exit(status)
    os.close(write_fd)
    try:
        poller = select.poll()
        poller.register(read_fd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            os.kill(pid, signal.SIGKILL)
            raise TimeoutError(f"child as uid {uid} did not answer in {timeout} s")
        with os.fdopen(read_fd, "rb") as f:
            kind, value = pickle.loads(f.read())
    finally:
        os.waitpid(pid, 0)
    if kind == "error":
        raise RuntimeError(f"in the child as uid {uid}: {value}")
    return value


def kill_and_remove_cgroup(directory: Path, deadline_s: float = 10.0) -> None:
    """Kill every process in the cgroup ``directory`` (SIGKILL) and remove it, retrying until
    it is empty (a killed process leaves cgroup.procs a moment later)."""
    deadline = time.monotonic() + deadline_s
    while directory.exists():
        try:
            pids = [int(x) for x in (directory / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            directory.rmdir()
        except FileNotFoundError:
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
