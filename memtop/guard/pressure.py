"""Where the guard reads memory pressure, and what wakes it.

The source is the system's ``/proc/pressure/memory``, or with ``--pressure-cgroup PATH`` the
``memory.pressure`` file of that cgroup in the cgroup v2 hierarchy (Documentation/accounting/
psi.rst, "Cgroup2 interface"). On a host whose memory controller is on cgroup v1, v1 cgroups have
no memory.pressure; when a cgroup2 hierarchy is mounted beside them (the "hybrid" layout, e.g.
/sys/fs/cgroup/unified) its cgroups still account PSI for their tasks, whatever controllers they
have, so a cgroup's stall can be read there (its processes must be in that v2 cgroup too).
Without any cgroup2 mount only the system file is left, and the guard says so.

:class:`PressureSource` owns the PSI trigger (:class:`memtop.procfs.pressure.PsiTrigger`: the
kernel signals POLLPRI each time the stall within a window passes the threshold) and waits on it
together with a stop pipe (written by the signal handlers) and, for tests only, an "inject" pipe
whose every byte counts as one trigger event (``--inject-events-fd``, hidden; see the README).
"""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass
from pathlib import Path

from memtop.model.pressure import PsiResource, TriggerSpec
from memtop.procfs import PROC, ProcfsError, read_text
from memtop.procfs.pressure import PsiTrigger, TriggerError, parse_pressure_file


class PressureSourceError(Exception):
    """The pressure file or its trigger cannot be used; one line says why."""


@dataclass(frozen=True, slots=True)
class PressureReading:
    """One read of the pressure file: monotonic time and the parsed lines."""

    time: float
    psi: PsiResource

    def as_json(self) -> dict:
        full = self.psi.full
        return {"some_avg10": self.psi.some.avg10, "some_total_us": self.psi.some.total_us,
                "full_avg10": full.avg10 if full else None, "full_total_us": full.total_us if full else None}


def cgroup2_mount(root: Path = PROC) -> Path | None:
    """Where the cgroup2 hierarchy is mounted (from /proc/self/mountinfo), or None."""
    from memtop.procfs.cgroup import host_path, parse_mountinfo_cgroups

    try:
        mounts = parse_mountinfo_cgroups(read_text(f"{root}/self/mountinfo"))
    except (ProcfsError, OSError):
        return None
    for mount in mounts:
        if mount.fstype == "cgroup2" and mount.root in ("/", ""):
            return host_path(root, mount.mount_point)
    return None


def pressure_file(cgroup: str | None, root: Path = PROC) -> tuple[str, str | None]:
    """(path of the memory pressure file, a note for the log or None). PressureSourceError if
    the cgroup's file cannot exist here."""
    if cgroup is None:
        from memtop.procfs.pressure import pressure_unavailable_reason

        reason = pressure_unavailable_reason(root)
        if reason:
            raise PressureSourceError(reason)
        note = None
        try:
            from memtop.procfs.cgroup import locate_memory_hierarchy

            if locate_memory_hierarchy(root).version == 1:
                note = ("the memory controller is on cgroup v1, whose cgroups have no memory.pressure: "
                        "the guard watches the system's /proc/pressure/memory")
        except (ProcfsError, OSError):
            pass
        return f"{root}/pressure/memory", note
    mount = cgroup2_mount(root)
    if mount is None:
        raise PressureSourceError(f"--pressure-cgroup {cgroup}: no cgroup2 hierarchy is mounted, and cgroup v1 has no "
                                  "per-cgroup memory.pressure: watch the system pressure instead (omit --pressure-cgroup)")
    directory = mount / cgroup.strip("/")
    path = directory / "memory.pressure"
    if not directory.is_dir():
        raise PressureSourceError(f"--pressure-cgroup {cgroup}: no such cgroup under {mount}")
    if not path.exists():
        raise PressureSourceError(f"{path} does not exist (the kernel accounts no PSI for cgroups: "
                                  "CONFIG_PSI off, psi=0 or cgroup_disable=pressure)")
    note = None
    try:
        if "memory" not in read_text(mount / "cgroup.controllers").split():
            note = (f"the memory controller is not on the cgroup2 hierarchy at {mount} (it is on cgroup v1): "
                    f"{path} counts the stall of the processes in that v2 cgroup, whose limit is set in v1")
    except (ProcfsError, OSError):
        pass
    return str(path), note


class PressureSource:
    """The pressure file, its trigger, and the waiting (see the module doc)."""

    def __init__(self, spec: TriggerSpec, *, cgroup: str | None = None, inject_fd: int | None = None,
                 root: Path = PROC):
        self.path, self.note = pressure_file(cgroup, root)
        self.cgroup = cgroup
        try:
            self.trigger = PsiTrigger(spec, path=self.path) if cgroup else PsiTrigger(spec, root=root)
        except TriggerError as e:
            raise PressureSourceError(str(e)) from None
        self.spec = self.trigger.spec  # what the kernel accepted (windows of 2 s without CAP_SYS_RESOURCE)
        self.adjusted = self.trigger.adjusted
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._inject_fd = inject_fd
        self._poll = select.poll()
        self._poll.register(self.trigger.fileno(), select.POLLPRI)
        self._poll.register(self._stop_r, select.POLLIN)
        if inject_fd is not None:
            os.set_blocking(inject_fd, False)
            self._poll.register(inject_fd, select.POLLIN)
        self.stopping = False

    # --- reading ---
    def read(self) -> PressureReading | None:
        """The pressure file now, or None if it cannot be read (the cgroup was removed)."""
        try:
            return PressureReading(time.monotonic(), parse_pressure_file(read_text(self.path), self.path))
        except (ProcfsError, OSError):
            return None

    # --- waiting ---
    def request_stop(self) -> None:
        """Async-signal-safe enough for a Python signal handler: a flag and one byte to a pipe."""
        self.stopping = True
        try:
            os.write(self._stop_w, b"x")
        except OSError:
            pass  # the pipe is full: a stop is already pending

    def wait(self, timeout_s: float) -> tuple[int, int]:
        """Block up to ``timeout_s`` (returns early on a trigger event, an injected event or a stop).
        Returns (kernel trigger events, injected events)."""
        if self.stopping:
            return 0, 0
        try:
            ready = self._poll.poll(max(0, int(timeout_s * 1000)))
        except InterruptedError:  # pragma: no cover - PEP 475 retries poll
            ready = []
        fired = injected = 0
        for fd, mask in ready:
            if fd == self.trigger.fileno():
                if mask & select.POLLERR:
                    raise PressureSourceError(f"{self.path} signalled an error (was the cgroup removed?)")
                if mask & select.POLLPRI:
                    fired += 1
            elif fd == self._inject_fd:
                if mask & select.POLLIN:
                    try:
                        injected += len(os.read(fd, 4096))
                    except BlockingIOError:
                        pass
                if mask & (select.POLLHUP | select.POLLERR) and not mask & select.POLLIN:
                    self._poll.unregister(fd)  # the test closed its end
                    self._inject_fd = None
            elif fd == self._stop_r:
                try:
                    os.read(self._stop_r, 4096)
                except BlockingIOError:
                    pass
        return fired, injected

    def close(self) -> None:
        self.trigger.close()
        for fd in (self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass
