"""/proc/pressure/{memory,io,cpu} and PSI triggers (Documentation/accounting/psi.rst).

The file format::

    some avg10=0.00 avg60=0.00 avg300=0.00 total=0
    full avg10=0.00 avg60=0.00 avg300=0.00 total=0

A trigger is the text ``<some|full> <threshold us> <window us>`` written to a pressure file
opened read-write; the kernel then signals POLLPRI on that open file each time the stall time
within a window passes the threshold (at most once per window), until the file is closed.
"""

from __future__ import annotations

import errno
import os
import select
import time
from pathlib import Path
from types import MappingProxyType

from memtop.model.pressure import PSI_RESOURCES, PressureSample, PsiLine, PsiResource, TriggerSpec
from memtop.procfs import PROC, NoSuchProcess, ParseError, ProcfsError, read_text

# kernel/sched/psi.c: a window is 500 ms .. 10 s; without CAP_SYS_RESOURCE it must be a
# multiple of 2 s (since Linux 6.5, "sched/psi: Allow unprivileged polling of N*2s period").
WINDOW_MIN_US = 500_000
WINDOW_MAX_US = 10_000_000
UNPRIVILEGED_WINDOW_US = 2_000_000
CAP_SYS_RESOURCE = 24  # include/uapi/linux/capability.h

DEFAULT_TRIGGER = "some 100000 1000000"


def _parse_line(fields: list[str], path: str) -> PsiLine:
    values: dict[str, str] = {}
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep:
            raise ParseError(path, f"expected key=value, got {item!r}")
        values[key] = value
    try:
        return PsiLine(float(values["avg10"]), float(values["avg60"]), float(values["avg300"]), int(values["total"]))
    except (KeyError, ValueError) as e:
        raise ParseError(path, f"bad PSI line {' '.join(fields)!r}") from e


def parse_pressure_file(text: str, path: str = "pressure") -> PsiResource:
    """Parse a PSI file (system or cgroup): a ``some`` line and, usually, a ``full`` line."""
    lines: dict[str, PsiLine] = {}
    for raw in text.splitlines():
        parts = raw.split()
        if not parts:
            continue
        if parts[0] not in ("some", "full"):
            raise ParseError(path, f"unexpected line {raw[:60]!r}")
        lines[parts[0]] = _parse_line(parts[1:], path)
    if "some" not in lines:
        raise ParseError(path, "no 'some' line")
    return PsiResource(some=lines["some"], full=lines.get("full"))


def pressure_unavailable_reason(root: Path = PROC) -> str | None:
    """Why there is no system PSI under ``root``, or None when /proc/pressure exists."""
    if os.path.isdir(f"{root}/pressure"):
        return None
    return (f"{root}/pressure does not exist: the kernel was built without CONFIG_PSI or booted "
            "with psi=0 (CONFIG_PSI_DEFAULT_DISABLED needs psi=1 on the kernel command line)")


def read_pressure(resource: str, root: Path = PROC) -> PsiResource:
    path = f"{root}/pressure/{resource}"
    try:
        text = read_text(path)
    except OSError as e:
        # EOPNOTSUPP: PSI compiled in but disabled at boot (psi=0).
        raise ProcfsError(f"cannot read {path}: {os.strerror(e.errno or 0)}") from e
    return parse_pressure_file(text, path)


def read_system_pressure(root: Path = PROC, now: float | None = None) -> PressureSample:
    """memory, io and cpu pressure; a resource that cannot be read is listed with its reason."""
    now = time.monotonic() if now is None else now
    resources: dict[str, PsiResource] = {}
    unknown: dict[str, str] = {}
    missing = pressure_unavailable_reason(root)
    for resource in PSI_RESOURCES:
        if missing is not None:
            unknown[resource] = missing
            continue
        try:
            resources[resource] = read_pressure(resource, root)
        except NoSuchProcess:
            unknown[resource] = f"{root}/pressure/{resource} does not exist on this kernel"
        except ProcfsError as e:
            unknown[resource] = str(e)
    return PressureSample(time=now, resources=MappingProxyType(resources), unknown=MappingProxyType(unknown))


# --- triggers ---------------------------------------------------------------------------------


def parse_trigger_spec(text: str) -> TriggerSpec:
    """``"some 100000 1000000"`` -> TriggerSpec; ValueError with a readable message otherwise."""
    parts = text.split()
    if len(parts) != 3 or parts[0] not in ("some", "full"):
        raise ValueError(f"a PSI trigger is 'some|full THRESHOLD_US WINDOW_US', e.g. '{DEFAULT_TRIGGER}'; got {text!r}")
    try:
        threshold, window = int(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"threshold and window are integers in microseconds; got {text!r}") from None
    if not WINDOW_MIN_US <= window <= WINDOW_MAX_US:
        raise ValueError(f"the window must be {WINDOW_MIN_US} to {WINDOW_MAX_US} µs (0.5 to 10 s); got {window}")
    if not 0 < threshold <= window:
        raise ValueError(f"the threshold must be more than 0 and at most the window ({window} µs); got {threshold}")
    return TriggerSpec(parts[0], threshold, window)


def has_cap_sys_resource(status_text: str | None = None) -> bool:
    """Whether this process has CAP_SYS_RESOURCE (CapEff in /proc/self/status)."""
    if status_text is None:
        try:
            status_text = read_text("/proc/self/status")
        except ProcfsError:
            return False
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


def unprivileged_spec(spec: TriggerSpec) -> TriggerSpec:
    """The nearest trigger an unprivileged writer may register: the window rounded up to a
    multiple of 2 s, the threshold scaled so the stall share stays the same."""
    window = -(-spec.window_us // UNPRIVILEGED_WINDOW_US) * UNPRIVILEGED_WINDOW_US
    window = min(window, WINDOW_MAX_US)
    threshold = max(1, min(window, round(spec.threshold_us * window / spec.window_us)))
    return TriggerSpec(spec.kind, threshold, window)


class TriggerError(Exception):
    """The trigger could not be registered; the message says why in one line."""


class PsiTrigger:
    """A PSI trigger kept registered on an open pressure file.

    ``wait(timeout)`` blocks in poll() and returns True when the kernel signalled a stall
    (POLLPRI). Only one trigger may be written per open file, so each instance owns its fd.
    The kernel may refuse the asked window (EINVAL) when this process lacks CAP_SYS_RESOURCE;
    the trigger is then registered with :func:`unprivileged_spec` and ``adjusted`` says so.
    """

    def __init__(self, spec: TriggerSpec, resource: str = "memory", root: Path = PROC, *, path: str | None = None):
        """``path``: a cgroup's pressure file (cgroup v2 ``memory.pressure``) instead of the
        system's ``<root>/pressure/<resource>``."""
        self.asked = spec
        self.spec = spec
        self.adjusted: str | None = None
        if path is not None:
            self.path = str(path)
        else:
            self.path = f"{root}/pressure/{resource}"
            if not is_live_proc(root):
                raise TriggerError(f"triggers need the live /proc; {root} is a captured tree")
            reason = pressure_unavailable_reason(root)
            if reason is not None:
                raise TriggerError(reason)
        self._fd = self._register(spec)
        if self._fd is None:
            if has_cap_sys_resource():
                raise TriggerError(f"the kernel refused the trigger {spec.text()!r} on {self.path} (EINVAL)")
            fallback = unprivileged_spec(spec)
            self._fd = self._register(fallback)
            if self._fd is None:
                raise TriggerError(f"the kernel refused the trigger {spec.text()!r} and {fallback.text()!r} on {self.path}")
            self.spec = fallback
            self.adjusted = (f"asked {spec.describe()}; without CAP_SYS_RESOURCE the kernel only accepts windows "
                             f"that are multiples of 2 s, so {fallback.describe()} is registered")
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLPRI)

    def _register(self, spec: TriggerSpec) -> int | None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise TriggerError(f"{self.path} does not exist") from e
        except PermissionError as e:
            raise TriggerError(f"cannot open {self.path} for writing (needs root)") from e
        except OSError as e:
            raise TriggerError(f"cannot open {self.path}: {os.strerror(e.errno or 0)}") from e
        try:
            # The kernel reads up to 128 bytes and NUL-terminates them itself (psi_write).
            os.write(fd, spec.text().encode() + b"\0")
        except OSError as e:
            os.close(fd)
            if e.errno == errno.EINVAL:
                return None
            if e.errno == errno.EOPNOTSUPP:
                raise TriggerError(f"PSI is disabled on this kernel (psi=0): {self.path}") from e
            if e.errno == errno.EBUSY:
                raise TriggerError(f"{self.path} already has a trigger on this file") from e
            raise TriggerError(f"cannot write a trigger to {self.path}: {os.strerror(e.errno or 0)}") from e
        return fd

    def fileno(self) -> int:
        if self._fd is None:
            raise ValueError("trigger closed")
        return self._fd

    def wait(self, timeout_s: float | None) -> bool:
        """Block until the trigger fires (True) or ``timeout_s`` passes (False).

        POLLERR means the pressure file went away (a cgroup file whose cgroup was removed).
        """
        if self._fd is None:
            raise ValueError("trigger closed")
        events = self._poll.poll(None if timeout_s is None else max(0, int(timeout_s * 1000)))
        for _, mask in events:
            if mask & select.POLLERR:
                raise TriggerError(f"{self.path} signalled an error (file removed?)")
            if mask & select.POLLPRI:
                return True
        return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file unregisters the trigger
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def is_live_proc(root: Path) -> bool:
    """Whether ``root`` is a mounted proc filesystem (never write a trigger into a plain file)."""
    try:
        return os.path.samefile(root, PROC) or Path(root).resolve() == PROC
    except OSError:
        return False
