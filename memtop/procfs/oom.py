"""OOM readers: /proc/PID/oom_score and oom_score_adj, the counters of OOM kills, and the kernel's
own report of each kill read from /dev/kmsg.

/dev/kmsg (Documentation/ABI/testing/dev-kmsg): each read() returns one record
``<prio>,<seq>,<µs since boot>,<flags>[,...];<message>\\n`` followed by optional `` KEY=value``
lines; non-printable bytes in the message are escaped as ``\\xNN`` by the kernel. Every open file
has its own position: memtop seeks to the end when it opens it (only kills from then on are
reported) and reads non-blocking, at most ``max_records`` per call, so that a flood of kernel
messages costs a bounded amount per tick. Reading needs CAP_SYSLOG when
kernel.dmesg_restrict is 1; without it the victim is named from the processes that vanished.

An OOM kill prints, in order (mm/oom_kill.c dump_header, dump_tasks, dump_oom_summary,
__oom_kill_process): "<comm> invoked oom-killer: ...", the "Tasks state (memory values in pages):"
table (when vm.oom_dump_tasks is 1, the default), the "oom-kill:constraint=...,task=...,pid=N,uid=U"
summary, then "<Out of memory|Memory cgroup out of memory>: Killed process N (comm) total-vm:...kB,
anon-rss:...kB, file-rss:...kB, shmem-rss:...kB, UID:U pgtables:...kB oom_score_adj:A".
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

from memtop.model.oom import (
    CgroupCounters,
    KernelOomReport,
    OomTick,
    ProcessBrief,
    memcg_totalpages,
)
from memtop.procfs import PAGE_SIZE, PROC, AccessDenied, NoSuchProcess, ParseError, ProcfsError, read_bytes
from memtop.procfs.system import read_meminfo
from memtop.procfs.vmstat import read_vmstat

# --- per process ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OomFields:
    """A process's OOM figures (bytes): the kernel's score and adjustment, and the status counters
    oom_badness() weighs. None where unknown, with ``reason``."""

    oom_score: int | None
    oom_score_adj: int | None
    rss: int | None
    swap: int | None
    pgtables: int | None
    reason: str | None = None


_STATUS_OOM = re.compile(rb"^(VmRSS|VmSwap|VmPTE):[ \t]*(\d+) kB$", re.M)


def parse_oom_status(data: bytes) -> dict[str, int]:
    """VmRSS, VmSwap and VmPTE of /proc/PID/status, in bytes (absent for kernel threads, zombies)."""
    return {key.decode(): int(value) * 1024 for key, value in _STATUS_OOM.findall(data)}


def parse_int_file(data: bytes, path: str) -> int:
    try:
        return int(data.strip())
    except ValueError:
        raise ParseError(path, f"expected an integer, got {data[:40]!r}") from None


def read_oom_fields(pid: int, root: Path = PROC) -> OomFields:
    """/proc/PID/oom_score, oom_score_adj and status. Raises NoSuchProcess when the process is gone.

    oom_score and oom_score_adj are readable by anyone (mode 0444 and 0644): no permission problem
    is expected; status likewise.
    """
    base = f"{root}/{pid}"
    reason = None
    try:
        score = parse_int_file(read_bytes(f"{base}/oom_score"), f"{base}/oom_score")
        adj = parse_int_file(read_bytes(f"{base}/oom_score_adj"), f"{base}/oom_score_adj")
        status = parse_oom_status(read_bytes(f"{base}/status"))
    except AccessDenied as e:
        return OomFields(None, None, None, None, None, e.reason)
    except ParseError as e:
        return OomFields(None, None, None, None, None, str(e))
    if "VmRSS" not in status:
        reason = "no VmRSS in status: a zombie or kernel thread has no memory to weigh"
    return OomFields(score, adj, status.get("VmRSS"), status.get("VmSwap"), status.get("VmPTE"), reason)


# --- /dev/kmsg ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KmsgRecord:
    level: int
    facility: int
    seq: int
    usec: int
    text: str


def parse_kmsg_record(data: bytes) -> KmsgRecord | None:
    """One /dev/kmsg record; None for a record that is not in the documented format."""
    head, sep, rest = data.partition(b";")
    if not sep:
        return None
    fields = head.split(b",")
    try:
        prio, seq, usec = int(fields[0]), int(fields[1]), int(fields[2])
    except (IndexError, ValueError):
        return None
    message = rest.split(b"\n", 1)[0]
    return KmsgRecord(prio & 7, prio >> 3, seq, usec, message.decode("utf-8", "surrogateescape"))


_KILLED_RE = re.compile(
    r"^(?P<why>.*?): Killed process (?P<pid>\d+) \((?P<comm>.*)\) total-vm:(?P<vm>\d+)kB, anon-rss:(?P<anon>\d+)kB, "
    r"file-rss:(?P<file>\d+)kB, shmem-rss:(?P<shmem>\d+)kB(?:, UID:(?P<uid>\d+) pgtables:(?P<pgt>\d+)kB "
    r"oom_score_adj:(?P<adj>-?\d+))?")
_SUMMARY_RE = re.compile(
    r"^oom-kill:constraint=(?P<constraint>\w+),.*?(?:,oom_memcg=(?P<oom_memcg>.*?)|,global_oom)"
    r"(?:,task_memcg=(?P<task_memcg>.*))?,task=(?P<task>.*),pid=(?P<pid>\d+),uid=(?P<uid>\d+)$")
_TASKS_HEADER = "Tasks state (memory values in pages):"


def parse_killed_line(text: str) -> dict | None:
    """The "... Killed process N (comm) ..." line, as a dict of its fields (bytes), or None."""
    m = _KILLED_RE.match(text)
    if m is None:
        return None
    kb = lambda name: int(m.group(name)) * 1024 if m.group(name) is not None else None  # noqa: E731
    return {"why": m.group("why"), "pid": int(m.group("pid")), "comm": m.group("comm"), "total_vm": kb("vm"),
            "anon_rss": kb("anon"), "file_rss": kb("file"), "shmem_rss": kb("shmem"),
            "uid": int(m.group("uid")) if m.group("uid") is not None else None, "pgtables": kb("pgt"),
            "oom_score_adj": int(m.group("adj")) if m.group("adj") is not None else None}


def parse_oom_summary(text: str) -> dict | None:
    """The "oom-kill:constraint=..." line (dump_oom_summary), or None."""
    m = _SUMMARY_RE.match(text)
    if m is None:
        return None
    return {"constraint": m.group("constraint"), "oom_memcg": m.group("oom_memcg"),
            "task_memcg": m.group("task_memcg"), "task": m.group("task"), "pid": int(m.group("pid")),
            "uid": int(m.group("uid"))}


def parse_task_header(text: str) -> tuple[str, ...] | None:
    """The column names of the tasks table ("[  pid  ]   uid  tgid total_vm ..."), or None."""
    if not text.startswith("[  pid  ]"):
        return None
    return tuple(text[len("[  pid  ]"):].split())


def parse_task_row(text: str, columns: tuple[str, ...]) -> tuple | None:
    """One row of the tasks table as (pid, uid, tgid, total_vm, rss, pgtables_bytes, swapents,
    oom_score_adj, name); None when it does not fit ``columns``."""
    if not text.startswith("[") or "]" not in text:
        return None
    pid_text, _, rest = text[1:].partition("]")
    values = rest.split(None, len(columns) - 1)
    if len(values) != len(columns) or columns[-1] != "name":
        return None
    row = dict(zip(columns, values))
    try:
        return (int(pid_text), int(row["uid"]), int(row["tgid"]), int(row["total_vm"]), int(row["rss"]),
                int(row["pgtables_bytes"]), int(row["swapents"]), int(row["oom_score_adj"]), row["name"])
    except (KeyError, ValueError):
        return None


class OomReportParser:
    """Assembles KernelOomReports from consecutive kmsg records (a report may span two reads)."""

    MAX_TASKS = 100000

    def __init__(self):
        self._columns: tuple[str, ...] | None = None
        self._tasks: list[tuple] = []
        self._in_table = False
        self._summary: dict | None = None

    def feed(self, record: KmsgRecord) -> KernelOomReport | None:
        text = record.text
        if text.startswith(_TASKS_HEADER):
            self._in_table, self._tasks, self._columns = True, [], None
            return None
        if self._in_table:
            if self._columns is None:
                self._columns = parse_task_header(text)
                if self._columns is not None:
                    return None
            elif text.startswith("["):
                row = parse_task_row(text, self._columns)
                if row is not None and len(self._tasks) < self.MAX_TASKS:
                    self._tasks.append(row)
                    return None
            self._in_table = False
        if text.startswith("oom-kill:"):
            self._summary = parse_oom_summary(text)
            return None
        if "Killed process" not in text:
            return None
        killed = parse_killed_line(text)
        if killed is None:
            return None
        summary = self._summary if self._summary is not None and self._summary["pid"] == killed["pid"] else None
        constraint = summary["constraint"] if summary else (
            "CONSTRAINT_MEMCG" if killed["why"].startswith("Memory cgroup") else None)
        report = KernelOomReport(
            seq=record.seq, usec=record.usec, pid=killed["pid"], comm=killed["comm"], constraint=constraint,
            oom_memcg=summary["oom_memcg"] if summary else None, task_memcg=summary["task_memcg"] if summary else None,
            uid=killed["uid"], total_vm=killed["total_vm"], anon_rss=killed["anon_rss"], file_rss=killed["file_rss"],
            shmem_rss=killed["shmem_rss"], pgtables=killed["pgtables"], oom_score_adj=killed["oom_score_adj"],
            text=text, tasks=tuple(self._tasks))
        self._summary, self._tasks = None, []
        return report


class KernelLog:
    """/dev/kmsg, opened at its end, read non-blocking for OOM reports (see the module doc).

    ``reason`` says why it is not available (not root, no such device); :meth:`read` then
    returns nothing. Close it with :meth:`close`.
    """

    def __init__(self, path: str = "/dev/kmsg", *, max_records: int = 20000):
        self.path = path
        self.max_records = max_records
        self.reason: str | None = None
        self.lost = 0  # records overwritten before they were read (EPIPE)
        self._parser = OomReportParser()
        self._fd: int | None = None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except PermissionError:
            self.reason = f"cannot read {path}: reading the kernel log needs CAP_SYSLOG (kernel.dmesg_restrict)"
            return
        except OSError as e:
            self.reason = f"cannot open {path}: {os.strerror(e.errno or 0)}"
            return
        try:
            os.lseek(fd, 0, os.SEEK_END)
        except OSError as e:
            os.close(fd)
            self.reason = f"cannot seek {path}: {os.strerror(e.errno or 0)}"
            return
        self._fd = fd

    def read(self) -> list[KernelOomReport]:
        """The OOM reports completed since the last call (at most ``max_records`` records read)."""
        if self._fd is None:
            return []
        out = []
        for _ in range(self.max_records):
            try:
                data = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:  # the ring buffer overwrote records we had not read
                    self.lost += 1
                    continue
                if e.errno == errno.EINTR:
                    continue
                self.reason = f"reading {self.path}: {os.strerror(e.errno or 0)}"
                self.close()
                break
            if not data:
                break
            record = parse_kmsg_record(data)
            if record is None:
                continue
            report = self._parser.feed(record)
            if report is not None:
                out.append(report)
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- one tick -------------------------------------------------------------------------------------


def _counters(path: str, version: int, events: Mapping[str, int], current, limit, totalpages) -> CgroupCounters:
    v2 = version == 2
    return CgroupCounters(path, version, events.get("oom_kill"), events.get("oom") if v2 else None,
                          events.get("max") if v2 else None, None if v2 else events.get("failcnt"),
                          current, limit, totalpages)


def read_oom_tick(processes: Iterable, containers, *, root: Path = PROC, kernel_log: KernelLog | None = None,
                  meminfo: Mapping[str, int] | None = None, vmstat: Mapping[str, int] | None = None,
                  clock=time.monotonic, wall_clock=time.time) -> OomTick:
    """Build the OomWatch's input for one tick.

    ``processes``: this tick's ProcessSamples; ``containers``: the tick's ContainersSample (its
    memory paths per PID and each container cgroup's counters). Reads, per process,
    oom_score, oom_score_adj and status; and /proc/vmstat, /proc/meminfo unless given.
    """
    unknown: dict[str, str] = {}
    if meminfo is None:
        try:
            meminfo = read_meminfo(root)
        except ProcfsError as e:
            meminfo, unknown["meminfo"] = {}, str(e)
    if vmstat is None:
        try:
            vmstat = read_vmstat(root)
        except ProcfsError as e:
            vmstat, unknown["vmstat"] = {}, str(e)
    oom_kill = vmstat.get("oom_kill")
    if oom_kill is None:
        unknown.setdefault("vmstat_oom_kill", "/proc/vmstat has no oom_kill line (Linux 4.13+)")
    paths = containers.memory_path_by_pid if containers is not None else {}
    briefs: dict[int, ProcessBrief] = {}
    for sample in processes:
        if sample.kernel_thread:
            continue
        try:
            fields = read_oom_fields(sample.pid, root)
        except NoSuchProcess:
            continue
        rollup = sample.rollup
        briefs[sample.pid] = ProcessBrief(
            sample.pid, sample.identity.start_ticks, sample.name, paths.get(sample.pid),
            fields.rss if fields.rss is not None else sample.rss_bytes,
            rollup.pss if rollup is not None else None,
            fields.swap if fields.swap is not None else sample.swap_bytes, sample.state,
            fields.oom_score, fields.oom_score_adj, fields.pgtables)
    swap_total = meminfo.get("SwapTotal", 0)
    cgroups: dict[str, CgroupCounters] = {}
    for entry in (containers.containers if containers is not None else ()):
        events = entry.events
        totalpages = None
        if entry.limit is not None:
            totalpages = memcg_totalpages(entry.limit, PAGE_SIZE, swap_limit=entry.swap.limit, swap_total=swap_total,
                                          swappiness=entry.swap.swappiness)
        cgroups[entry.memory_path] = _counters(entry.memory_path, entry.version, events, entry.current, entry.limit,
                                               totalpages)
        if entry.limit_from is not None and entry.limit_from not in cgroups and entry.limit_events:
            # The cgroup whose limit applies (a pod, a parent slice): its counters say the limit was hit.
            cgroups[entry.limit_from] = _counters(entry.limit_from, entry.version, entry.limit_events, None,
                                                  entry.limit, totalpages)
    total = meminfo.get("MemTotal")
    reports = tuple(kernel_log.read()) if kernel_log is not None else ()
    if kernel_log is not None and kernel_log.reason:
        unknown["kernel_log"] = kernel_log.reason
    elif kernel_log is None:
        unknown["kernel_log"] = "the kernel log is not read: victims are named from the processes that vanished"
    return OomTick(
        time=clock(), wall_time=wall_clock(), vmstat_oom_kill=oom_kill, mem_available=meminfo.get("MemAvailable"),
        system_totalpages=(total + swap_total) // PAGE_SIZE if total is not None else None, page_size=PAGE_SIZE,
        cgroups=MappingProxyType(cgroups), processes=MappingProxyType(briefs), kernel_reports=reports,
        unknown=MappingProxyType(unknown))
