"""Helpers for the guard's tests and its benchmark: a memory cgroup with its own PSI, and a
``memtop guard`` child whose JSON log lines are collected as they come.

The cgroup: a v1 memory cgroup with a limit (this host's memory controller is on cgroup v1) and,
when a cgroup2 hierarchy is mounted beside it (the hybrid layout, /sys/fs/cgroup/unified), a v2
cgroup of the same name: its ``memory.pressure`` counts the stall of exactly the processes put in
both, whatever else runs on the machine. Everything is removed at close, its tasks killed first,
even when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from memtop.guard.pressure import cgroup2_mount
from tests.pressure_support import V1Cgroup, v1_memory_available
from tests.support import Child, kill_and_remove_cgroup

REPO = Path(__file__).resolve().parent.parent


class PressureCgroup:
    """A v1 memory cgroup limited to ``limit_bytes`` and, if possible, a v2 cgroup for its PSI."""

    def __init__(self, limit_bytes: int):
        reason = v1_memory_available()
        if reason:
            raise RuntimeError(reason)
        self.v1 = V1Cgroup(limit_bytes)
        self.name = self.v1.path.name
        self.memory_path = self.v1.cgroup_path  # as /proc/PID/cgroup's memory line writes it
        self.v2_dir: Path | None = None
        mount = cgroup2_mount()
        if mount is not None:
            try:
                (mount / self.name).mkdir()
                self.v2_dir = mount / self.name
            except OSError:
                self.v2_dir = None
        self.pressure_cgroup = "/" + self.name if self.v2_dir is not None else None

    def pressure_file(self) -> Path:
        return self.v2_dir / "memory.pressure" if self.v2_dir is not None else Path("/proc/pressure/memory")

    def stall_us(self) -> tuple[int, int]:
        """(some, full) total stall in µs of this cgroup's PSI (the system's without a v2 cgroup)."""
        some = full = 0
        for line in self.pressure_file().read_text().splitlines():
            kind, *fields = line.split()
            total = int(dict(f.split("=") for f in fields)["total"])
            if kind == "some":
                some = total
            elif kind == "full":
                full = total
        return some, full

    def argv(self, argv: list) -> list[str]:
        """``argv`` run by a shell that first joins this cgroup (both hierarchies), then execs it."""
        joins = [str(self.v1.path / "cgroup.procs")]
        if self.v2_dir is not None:
            joins.append(str(self.v2_dir / "cgroup.procs"))
        script = "".join(f'echo $$ > "${i + 1}" && ' for i in range(len(joins))) + f'shift {len(joins)} && exec "$@"'
        return ["sh", "-c", script, "sh", *joins, *[str(a) for a in argv]]

    def start(self, argv: list, **kw) -> Child:
        return Child(self.argv(argv), **kw)

    def start_python(self, code: str, *args: str, **kw) -> Child:
        return self.start([sys.executable, "-c", code, *args], **kw)

    def read(self, name: str) -> str:
        return self.v1.read(name)

    def oom_kills(self) -> int:
        for line in self.read("memory.oom_control").splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def close(self) -> None:
        try:
            self.v1.close()
        finally:
            if self.v2_dir is not None:
                kill_and_remove_cgroup(self.v2_dir)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def status_bytes(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:  # bytes: a name need not be UTF-8
        for line in f:
            if line.startswith(key.encode() + b":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


class GuardProcess:
    """``memtop guard --json ARGS`` as a child; its log lines are parsed into ``events`` as they
    arrive. ``inject()`` writes trigger events into the test hook's pipe (``--inject-events-fd``)."""

    def __init__(self, *args: str, inject: bool = False, env: dict | None = None, python: list | None = None):
        self._inject_w = None
        pass_fds = ()
        argv = [*(python or [sys.executable]), "-m", "memtop", "guard", "--json", *args]
        if inject:
            read_fd, self._inject_w = os.pipe()
            argv += ["--inject-events-fd", str(read_fd)]
            pass_fds = (read_fd,)
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, pass_fds=pass_fds, env=env or dict(os.environ),
                                     start_new_session=True)
        if inject:
            os.close(read_fd)
        self.events: list[dict] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.raw.append(line)
                try:
                    self.events.append(json.loads(line))
                except json.JSONDecodeError:
                    self.events.append({"event": "unparsed", "line": line})
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def inject(self, n: int = 1) -> None:
        os.write(self._inject_w, b"x" * n)

    def of(self, kind: str) -> list[dict]:
        with self._cond:
            return [e for e in self.events if e.get("event") == kind]

    def wait_for(self, predicate, timeout: float = 60.0):
        """Wait until ``predicate(events)`` is truthy; return it. TimeoutError with the log if not."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(list(self.events))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise TimeoutError(f"guard log did not show it in time; rc={self.proc.poll()}\n"
                                       + "\n".join(self.raw[-40:]) + "\nstderr: " + self._stderr_now())
                self._cond.wait(min(left, 0.5))

    def wait_event(self, kind: str, count: int = 1, timeout: float = 60.0) -> list[dict]:
        return self.wait_for(lambda events: (found := [e for e in events if e.get("event") == kind])[count - 1:]
                             and found, timeout)

    def _stderr_now(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read().decode("utf-8", "replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Ask it to stop; its exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        rc = self.proc.wait(timeout)
        self._reader.join(timeout=10)
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        if self._inject_w is not None:
            try:
                os.close(self._inject_w)
            except OSError:
                pass
            self._inject_w = None
        self._reader.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
