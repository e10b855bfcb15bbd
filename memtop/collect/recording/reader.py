"""Reading a record file for ``memtop replay``: schema 1 and 2, every value checked.

A record file may come from anywhere (a colleague's machine, a bug report, a user who crafted
it): opening it checks the metadata (the interval is a number of seconds memtop records at, the
clock tick rate is positive, times are dates a clock can show, ...), listing the ticks checks
their rows, and every section is decoded against the types its fields declare, within bounded
decompression (memtop.collect.recording.codec). Whatever is wrong becomes one
:class:`~memtop.collect.recording.codec.RecordFileError` with a one-line, printable message.
"""

from __future__ import annotations

import bisect
import math
import os
import sqlite3
import stat as stat_module
import struct
import threading
import zlib
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from memtop.collect.sampler import HISTORY_LEN, SYSTEM_HISTORY_LEN
from memtop.collect.kernel import CHART_CACHES
from memtop.model.kernel import FileNr, KernelView, NetNamespace, fd_growers, meminfo_categories
from memtop.model.pressure import CgroupMemory, PressureSample
from memtop.model.process import History, ProcessIdentity, ProcessSample, ProcessView, Rollup, runs_of
from memtop.model.snapshot import Snapshot, SystemSample
from memtop.collect.recording.codec import (
    APPLICATION_ID,
    MAX_INFO_BYTES,
    MAX_SECTION_BYTES,
    READABLE_VERSIONS,
    RecordDataError,
    RecordFileError,
    V1_FIELDS,
    column,
    decode,
    field_hints,
    inflate,
    loads,
    mapping,
    scalar,
    section_doc,
    slab_rows,
    text_of,
    unpack_parts,
    TAKEN_LOOKBACK,
    TAKEN_SECTIONS,
)
from memtop.collect.parts import VMSTAT_HISTORY
from memtop.model.arenas import ArenaAnalysis
from memtop.model.containers import ContainersView
from memtop.model.heap import LayerReport
from memtop.model.pagecache import FilesView, VmstatRates
from memtop.model.tmpfs import TmpfsReport
from memtop.procfs import CLOCK_TICKS

# The record each taken section decodes into.
TAKEN_TYPES = {"files": FilesView, "tmpfs": TmpfsReport, "layers": LayerReport, "arenas": ArenaAnalysis,
               "containers": ContainersView}

SQLITE_MAGIC = b"SQLite format 3\x00"
# What decoding a damaged section can raise: all of it becomes one RecordFileError. (Exception at
# the outer boundary too: a file crafted in a way nothing here foresaw must still be one line.)
_DECODE_ERRORS = (sqlite3.Error, zlib.error, struct.error, ValueError, KeyError, TypeError, IndexError,
                  AttributeError, ArithmeticError, RecursionError, MemoryError)
_SLAB_TOTAL_PARTS = frozenset({"slabs", "slabs.name", "slabs.num_slabs", "slabs.pagesperslab", "slabs.page_size"})
ALL_PARTS = frozenset({"kernel", "pressure", "vmstat_rates", *TAKEN_SECTIONS})
REPLAY_SLAB_CHART_TICKS = 60  # the Kernel tab's chart in replay: this many ticks back
REPLAY_PSI_TICKS = 300  # the Pressure tab's charts: as many readings as the live tab keeps
REPLAY_VMSTAT_TICKS = VMSTAT_HISTORY  # the Page cache tab's thrashing charts: as many rates as the live tab keeps
# Times a recording may hold: seconds since the epoch that a clock can show (time.localtime
# works up to the year 9999), monotonic and uptime seconds below a thousand years.
MAX_WALL_TIME = 253402300799.0
MAX_MONOTONIC = 1000 * 365 * 86400.0

# The process columns: name in the file -> (ProcessSample field, its type). Written by both
# schema versions under these names.
_PROCESS_COLUMNS = {
    "ppid": int, "comm": str, "user": str | None, "state": str, "rss": int | None, "anon": int | None,
    "file": int | None, "shmem": int | None, "swap": int | None, "threads": int, "minflt": int, "majflt": int,
    "fds": int | None, "fd_reason": str | None, "rollup_reason": str | None, "rollup_time": float | None,
}


@dataclass(frozen=True)
class RecordedPressure:
    """The Pressure tab's figures at one recorded tick."""

    samples: tuple[PressureSample, ...]  # system PSI up to this tick, oldest first (charts, ms/s)
    unavailable_reason: str | None
    tree: tuple[CgroupMemory, ...] | None  # None: cgroups not recorded (reason in cgroup_error)
    details: Mapping[str, CgroupMemory]
    baselines: Mapping[str, Mapping[str, int]]  # each cgroup's events at the first tick of the file
    proc_cgroups: Mapping[int, str | None]  # PID -> memory cgroup path, for this tick's processes
    cgroup_version: int | None
    cgroup_mount: str | None
    cgroup_error: str | None


@dataclass(frozen=True)
class RecordedTick:
    """One tick of a record file, rebuilt into the records the tabs draw."""

    index: int  # position among the ticks the file holds now (0 = oldest)
    count: int  # ticks in the file
    seq: int  # the tick's number since recording started (ticks dropped by the bound are gone)
    snapshot: Snapshot
    kernel: KernelView | None
    pressure: RecordedPressure | None
    vmstat: Mapping[str, int] | None
    sections: frozenset[str] = field(default_factory=frozenset)  # the sections the file holds for it
    # what the tick was loaded with: which of "kernel", "pressure" and the taken sections
    parts: frozenset[str] = field(default_factory=frozenset)
    # Sections stored when taken (TAKEN_SECTIONS): the latest at or before this tick, with the
    # monotonic time of the tick it was taken at; absent when none was in the last TAKEN_LOOKBACK.
    taken: Mapping[str, tuple[int, object]] = field(default_factory=lambda: MappingProxyType({}))
    target: ProcessIdentity | None = None  # the process whose heap reports were recorded (--pid)
    # With "vmstat_rates": /proc/vmstat's rates between consecutive recorded ticks up to this
    # one (the Page cache tab's thrashing charts), oldest first.
    vmstat_rates: tuple[VmstatRates, ...] = ()

    @property
    def wall_time(self) -> float:
        return self.snapshot.system.wall_time


class _Lru(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value

    def hit(self, key):
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value


def check_readable_path(path: Path) -> None:
    """One line on why ``path`` is no record file, before SQLite sees it (SQLite would create a
    missing file, and opening a FIFO blocks)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise RecordFileError(f"{path}: no such file") from None
    except OSError as e:
        raise RecordFileError(f"{path}: {e.strerror}") from None
    if stat_module.S_ISDIR(st.st_mode):
        raise RecordFileError(f"{path} is a directory, not a record file")
    if not stat_module.S_ISREG(st.st_mode):
        raise RecordFileError(f"{path} is not a regular file (a FIFO, socket or device), not a record file")
    if st.st_size == 0:
        raise RecordFileError(f"{path} is empty: not a memtop recording (or `memtop record` has not written it yet)")
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise RecordFileError(f"{path}: {e.strerror}") from None
    if head != SQLITE_MAGIC:
        raise RecordFileError(f"{path} is not a memtop recording (not an SQLite database)")


# --- the metadata ------------------------------------------------------------------------------------

def _number(low: float, high: float, *, whole: bool = False):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
            raise RecordDataError(f"{value!r:.40} is not a {'whole ' if whole else ''}number")
        if not (math.isfinite(value) and low <= value <= high):
            raise RecordDataError(f"{value!r:.40} is not between {low:g} and {high:g}")
        return value
    return check


def _text(limit: int = 4096, optional: bool = False):
    def check(value):
        if value is None and optional:
            return None
        value = text_of(value) if isinstance(value, list) else value
        if not isinstance(value, str) or len(value) > limit:
            raise RecordDataError(f"{value!r:.40} is not a string of at most {limit} characters")
        return value
    return check


def _one_of(*allowed):
    def check(value):
        if value not in allowed or isinstance(value, bool):
            raise RecordDataError(f"{value!r:.40} is none of {', '.join(map(repr, allowed))}")
        return value
    return check


def _optional(check):
    return lambda value: None if value is None else check(value)


# What replay relies on in the metadata: key -> (check, default when absent; no default: required).
_META = {
    "schema_version": (_number(1, 1 << 31, whole=True), None),
    "hostname": (_text(), None),
    "kernel": (_text(), None),
    "interval_s": (_number(0.5, 3600), None),  # what `memtop record --interval` accepts
    "start_time": (_number(0, MAX_WALL_TIME), None),
    "clock_ticks": (_number(1, 1_000_000, whole=True), CLOCK_TICKS),
    "page_size": (_number(512, 1 << 30, whole=True), 4096),
    "recorder_pid": (_optional(_number(0, 1 << 31, whole=True)), None),
    "cgroup_version": (_optional(_one_of(1, 2)), None),
    "cgroup_mount": (_text(optional=True), None),
    "cgroup_error": (_text(optional=True), None),
    "psi_unavailable_reason": (_text(optional=True), None),
    "max_bytes": (_optional(_number(0, 1 << 62, whole=True)), None),
    "memtop_version": (_text(64, optional=True), None),
    # `memtop record --pid`: [pid, start_ticks] of the process whose heap reports were taken.
    "target": (_optional(lambda v: _target(v)), None),
}


def _target(value):
    if not (isinstance(value, list) and len(value) == 2):
        raise RecordDataError(f"expected [pid, start_ticks], got {str(value)[:40]!r}")
    pid = _number(1, 1 << 31, whole=True)(value[0])
    start = _number(0, 1 << 62, whole=True)(value[1])
    return ProcessIdentity(pid, start)
_REQUIRED = ("schema_version", "hostname", "kernel", "interval_s", "start_time")


def check_meta(raw: dict, version: int) -> dict:
    """The metadata with every value replay uses checked (RecordDataError names the key)."""
    meta = dict(raw)
    for key in _REQUIRED:
        if key not in meta:
            raise RecordDataError(f"the recording's metadata lacks {key}")
    for key, (check, default) in _META.items():
        if key not in meta:
            meta[key] = default
            continue
        try:
            meta[key] = check(meta[key])
        except RecordDataError as e:
            raise RecordDataError(f"the recording's {key} is not valid: {e}") from None
    if meta["schema_version"] != version:
        raise RecordDataError(f"the recording says schema version {meta['schema_version']}, its database "
                              f"{version}")
    return meta


class RecordReader:
    """Reads a record file for ``memtop replay``; safe to use from one worker thread at a time
    (a lock serializes the connection). A file still being written is read as far as it is
    committed; :meth:`refresh` picks up new ticks (and forgets the ones the bound dropped).
    """

    def __init__(self, path: Path, *, check: bool = True):
        self.path = Path(path)
        check_readable_path(self.path)
        self._lock = threading.RLock()
        self.conn = None
        try:
            self._open(check)
        except RecordFileError:
            self._close_quietly()
            raise
        except RecordDataError as e:
            self._close_quietly()
            raise RecordFileError(f"{self.path} is damaged: {e}") from None
        except Exception as e:  # noqa: BLE001 - see _DECODE_ERRORS
            self._close_quietly()
            raise RecordFileError(f"{self.path} is damaged (truncated or corrupted): {_why(e)}") from None
        if not self.seqs:
            self._close_quietly()
            raise RecordFileError(f"{self.path} holds no ticks yet")
        self._processes = _Lru(8)
        self._rss = _Lru(HISTORY_LEN + 64)
        self._slab_totals = _Lru(REPLAY_SLAB_CHART_TICKS + 16)
        self._psi = _Lru(REPLAY_PSI_TICKS + 32)
        self._vmstat = _Lru(REPLAY_VMSTAT_TICKS + 32)
        self._baselines: tuple[int, Mapping] | None = None
        self.damaged: set[int] = set()  # ticks found damaged while reading their neighbours

    def _open(self, check: bool) -> None:
        # No -wal beside it: the recorder closed it (it checkpoints and removes the WAL), and
        # it never reopens a file, so the file cannot change: immutable=1 reads it without
        # locks and without leaving -wal/-shm files behind. Otherwise a recorder is writing it
        # (or was killed): read it the WAL way, seeing each committed tick.
        self.live = os.path.exists(f"{self.path}-wal")
        uri = self.path.resolve().as_uri() + ("?mode=ro" if self.live else "?mode=ro&immutable=1")
        self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA query_only=1")
        self.conn.execute("PRAGMA temp_store=MEMORY")
        application_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
        if application_id != APPLICATION_ID:
            raise RecordFileError(f"{self.path} is an SQLite database but not a memtop recording")
        self.version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if self.version not in READABLE_VERSIONS:
            raise RecordFileError(f"{self.path} is a memtop recording of schema version {self.version}; "
                                  f"this memtop reads versions {' and '.join(map(str, READABLE_VERSIONS))}")
        if check:
            problems = [row[0] for row in self.conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                lines = [line for p in problems for line in str(p).splitlines() if line.strip() and "***" not in line]
                raise RecordFileError(f"{self.path} is damaged (truncated or corrupted): "
                                      f"{lines[0] if lines else problems[0]}")
        raw = {}
        for key, value in self.conn.execute("SELECT key, value FROM meta"):
            if not isinstance(key, str) or not isinstance(value, str):
                raise RecordDataError("a metadata row is not text")
            raw[key] = loads(value.encode("utf-8", "surrogatepass"))
        self.meta = check_meta(raw, self.version)
        self.target: ProcessIdentity | None = self.meta["target"]
        self.seqs: list[int] = []
        self.walls: list[float] = []
        self.monos: list[float] = []
        self.uptimes: list[float | None] = []
        self.available: list[int | None] = []
        self.used: list[int | None] = []
        self.procs: dict[int, tuple[int, int, str, bool, str | None]] = {}
        self.keyframe_of: dict[int, int] = {}  # tick -> the keyframe its sections are compressed against
        self._keys = _Lru(16)  # (keyframe, section) -> raw JSON of its parts
        self.refresh()

    def _close_quietly(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:
                pass

    @property
    def interval_s(self) -> float:
        return float(self.meta["interval_s"])

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __len__(self) -> int:
        return len(self.seqs)

    def refresh(self) -> bool:
        """Read the ticks written since the last call, and drop the ones the bound evicted.
        Returns True when anything changed."""
        with self._lock:
            try:
                return self._refresh()
            except RecordFileError:
                raise
            except RecordDataError as e:
                raise RecordFileError(f"{self.path} is damaged: {e}") from None
            except Exception as e:  # noqa: BLE001 - see _DECODE_ERRORS
                raise RecordFileError(f"{self.path} is damaged (truncated or corrupted): {_why(e)}") from None

    def _refresh(self) -> bool:
        last = self.seqs[-1] if self.seqs else -1
        self.conn.execute("BEGIN")
        try:
            rows = self.conn.execute(
                "SELECT seq, wall_time, monotonic, uptime_s, mem_available, mem_used, keyframe FROM ticks "
                "WHERE seq > ? ORDER BY seq", (last,)).fetchall()
            oldest = self.conn.execute("SELECT min(seq) FROM ticks").fetchone()[0]
            top = max(self.procs, default=0)
            if self.version == 1:
                query = "SELECT id, pid, start_ticks, cmdline, kernel_thread, cgroup FROM procs WHERE id > ? ORDER BY id"
            else:
                query = "SELECT id, pid, start_ticks, info FROM procs WHERE id > ? ORDER BY id"
            procs = [self._proc_row(row) for row in self.conn.execute(query, (top,))]
        finally:
            self.conn.execute("COMMIT")
        for proc_id, proc in procs:
            self.procs[proc_id] = proc
        changed = bool(rows)
        for seq, wall, mono, uptime, available, used, keyframe in rows:
            where = f"tick {seq!r:.20}"
            seq = scalar(seq, int, where)
            wall = _number(0, MAX_WALL_TIME)(scalar(wall, float, f"{where} wall_time"))
            mono = _number(0, MAX_MONOTONIC)(scalar(mono, float, f"{where} monotonic"))
            uptime = scalar(uptime, float | None, f"{where} uptime")
            available = scalar(available, int | None, f"{where} mem_available")
            used = scalar(used, int | None, f"{where} mem_used")
            keyframe = scalar(keyframe, int, f"{where} keyframe")
            if not (0 <= keyframe <= seq) or (keyframe != seq and keyframe not in self.keyframe_of):
                raise RecordDataError(f"tick {seq}: its keyframe {keyframe} is not in the file")
            self.keyframe_of[seq] = keyframe
            self.seqs.append(seq)
            self.walls.append(wall)
            self.monos.append(mono)
            self.uptimes.append(uptime)
            self.available.append(available)
            self.used.append(used)
        if oldest is not None and self.seqs and self.seqs[0] < oldest:
            cut = bisect.bisect_left(self.seqs, oldest)
            for seq in self.seqs[:cut]:
                self.keyframe_of.pop(seq, None)
            for values in (self.seqs, self.walls, self.monos, self.uptimes, self.available, self.used):
                del values[:cut]
            changed = True
        return changed

    def _proc_row(self, row) -> tuple[int, tuple[int, int, str, bool, str | None]]:
        proc_id = scalar(row[0], int, "a process row")
        where = f"process {proc_id}"
        pid = scalar(row[1], int, f"{where} pid")
        start_ticks = scalar(row[2], int, f"{where} start_ticks")
        if self.version == 1:
            cmdline = scalar(row[3], str, f"{where} cmdline")
            kernel_thread = scalar(row[4], int, f"{where} kernel_thread") != 0
            cgroup = scalar(row[5], str | None, f"{where} cgroup")
        else:
            if not isinstance(row[3], bytes):
                raise RecordDataError(f"{where}: its info is not a compressed object")
            info = loads(inflate(row[3], limit=MAX_INFO_BYTES))
            if not isinstance(info, dict):
                raise RecordDataError(f"{where}: its info is not an object")
            cmdline = scalar(info.get("cmdline", ""), str, f"{where} cmdline")
            kernel_thread = scalar(info.get("kernel_thread", False), bool, f"{where} kernel_thread")
            cgroup = scalar(info.get("cgroup"), str | None, f"{where} cgroup")
        return proc_id, (pid, start_ticks, cmdline, kernel_thread, cgroup)

    # --- sections ------------------------------------------------------------------------------
    def _section(self, seq: int, name: str) -> bytes | None:
        row = self.conn.execute("SELECT length(data), CASE WHEN length(data) <= ? THEN data END FROM sections "
                                "WHERE name = ? AND seq = ?", (MAX_SECTION_BYTES, name, seq)).fetchone()
        if row is None:
            return None
        if row[1] is None:
            raise RecordDataError(f"the {name} section of tick {seq} is {row[0]} bytes, more than memtop writes")
        if not isinstance(row[1], bytes):
            raise RecordDataError(f"the {name} section of tick {seq} is not binary")
        return row[1]

    def _keyframe_parts(self, key: int, name: str) -> dict[str, bytes] | None:
        """The keyframe's parts of section ``name``; None when the keyframe has no such section
        (a section written only when taken): a part that needs it is then damaged."""
        found = self._keys.hit((key, name))
        if found is None:
            blob = self._section(key, name)
            if blob is None:
                return None
            found = self._keys.put((key, name), unpack_parts(blob, None))
        return found

    def _raw_parts(self, seq: int, name: str, only=None) -> dict[str, bytes] | None:
        blob = self._section(seq, name)
        if blob is None:
            return None
        key = self.keyframe_of[seq]
        base = self._keyframe_parts(key, name) if key != seq else None
        return unpack_parts(blob, base, only)

    def _parts(self, seq: int, name: str, only=None) -> dict | None:
        """The parts of one section of one tick, decoded; None when the tick has no such section."""
        raw = self._raw_parts(seq, name, only)
        return None if raw is None else {k: loads(v) for k, v in raw.items()}

    def _doc(self, seq: int, name: str):
        parts = self._parts(seq, name)
        return None if parts is None else section_doc(name, parts)

    def _object(self, seq: int, name: str) -> dict | None:
        doc = self._doc(seq, name)
        if doc is not None and not isinstance(doc, dict):
            raise RecordDataError(f"the {name} section of tick {seq} is not an object")
        return doc

    def _process_columns(self, seq: int) -> dict | None:
        """The process table of one tick, checked: each column a list of values of its type."""
        columns = self._processes.hit(seq)
        if columns is None:
            doc = self._object(seq, "processes")
            if doc is None:
                return None
            columns = self._processes.put(seq, _process_table(doc, self.version))
        return columns

    def _rss_map(self, seq: int) -> dict[int, tuple[int | None, int | None]]:
        found = self._rss.hit(seq)
        if found is None:
            found = {}
            if self.version == 1:
                blob = self._section(seq, "rss")
                if blob is not None:
                    values = _int64s(inflate(blob))
                    procs, rss, fds = values[0::3], values[1::3], values[2::3]
                    procs = procs[:len(fds)]
                else:
                    procs = rss = fds = ()
            else:
                parts = self._raw_parts(seq, "rss") or {}
                procs, rss, fds = (_int64s(parts.get(k, b"")) for k in ("proc", "rss", "fds"))
                if not (len(procs) == len(rss) == len(fds)):
                    raise RecordDataError(f"the rss section of tick {seq} has columns of different lengths")
            for proc_id, r, f in zip(procs, rss, fds):
                found[proc_id] = (None if r < 0 else r, None if f < 0 else f)
            self._rss.put(seq, found)
        return found

    def rss_series(self, pid: int, start_ticks: int) -> list[tuple[int, int | None]]:
        """(index, RSS) of one process at every tick the file holds it, for the jump keys."""
        ids = {i for i, p in self.procs.items() if p[0] == pid and p[1] == start_ticks}
        out = []
        with self._lock:
            try:
                for index, seq in enumerate(list(self.seqs)):
                    row = self._rss_map(seq)
                    for i in ids:
                        if i in row:
                            out.append((index, row[i][0]))
            except Exception as e:  # noqa: BLE001 - see _DECODE_ERRORS
                raise RecordFileError(f"{self.path}: a tick is damaged: {_why(e)}") from None
        return out

    def _history_part(self, read, seq: int, default):
        """A section of a tick before the one shown (chart, rates): a damaged one is left out
        (that tick itself reports the damage when shown), so it never hides its neighbours."""
        try:
            return read(seq)
        except _DECODE_ERRORS:
            self.damaged.add(seq)
            return default

    def _slab_totals_at(self, seq: int) -> dict[str, int]:
        found = self._slab_totals.hit(seq)
        if found is None:
            parts = self._parts(seq, "kernel", only=_SLAB_TOTAL_PARTS)
            found = {}
            if parts is not None and "slabs" not in parts:
                doc = {k[6:]: v for k, v in parts.items()}
                count = len(doc.get("name") or [])
                names = column(doc, "name", str, count, "slabs")
                slabs, pages, page_size = (column(doc, k, int, count, "slabs")
                                           for k in ("num_slabs", "pagesperslab", "page_size"))
                for name, s, p, size in zip(names, slabs, pages, page_size):
                    found[name] = s * p * size  # SlabCache.total_bytes
            self._slab_totals.put(seq, found)
        return found

    def _vmstat_at(self, seq: int) -> Mapping[str, int] | None:
        found = self._vmstat.hit(seq)
        if found is None:
            doc = self._object(seq, "vmstat")
            found = self._vmstat.put(seq, mapping(doc, int, where="vmstat") if doc is not None else {})
        return found or None

    def _vmstat_rates(self, index: int) -> tuple[VmstatRates, ...]:
        """Rates between each two consecutive ticks of the last REPLAY_VMSTAT_TICKS that hold
        /proc/vmstat (a damaged or missing one leaves a gap, as a missed live read does)."""
        from memtop.procfs.vmstat import vmstat_rates

        out = []
        before = None
        for j in range(max(0, index - REPLAY_VMSTAT_TICKS), index + 1):
            counters = self._history_part(self._vmstat_at, self.seqs[j], None)
            if counters is not None and before is not None:  # before: the tick just before, if it holds vmstat
                out.append(vmstat_rates(before, counters, self.monos[j] - self.monos[j - 1], self.monos[j]))
            before = counters
        return tuple(out)

    def _psi_at(self, seq: int) -> PressureSample | None:
        found = self._psi.hit(seq)
        if found is None:
            doc = self._doc(seq, "psi")
            if doc is None:
                return None
            found = self._psi.put(seq, decode(doc, PressureSample, version=self.version, where="psi"))
        return found

    # --- one tick ---------------------------------------------------------------------------------
    def load(self, index: int, parts=ALL_PARTS) -> RecordedTick:
        """The tick at ``index`` (0 = the oldest the file holds), rebuilt. RecordFileError if damaged.

        ``parts``: which of "kernel" and "pressure" to rebuild too (each costs a few decodes of
        the ticks before, and the fd growth of every process), and which of the sections stored
        when taken (TAKEN_SECTIONS) to decode; the snapshot always is.
        """
        with self._lock:
            if not self.seqs:
                raise RecordFileError(f"{self.path} holds no ticks")
            index = max(0, min(len(self.seqs) - 1, index))
            seq = self.seqs[index]
            try:
                self.conn.execute("BEGIN")
                try:
                    return self._load(index, seq, frozenset(parts))
                finally:
                    self.conn.execute("COMMIT")
            except RecordFileError:
                raise
            except Exception as e:  # noqa: BLE001 - see _DECODE_ERRORS
                raise RecordFileError(f"{self.path}: tick {seq} is damaged ({_why(e)})") from None

    def _load(self, index: int, seq: int, parts: frozenset[str]) -> RecordedTick:
        present = {row[0] for row in self.conn.execute("SELECT name FROM sections WHERE seq = ?", (seq,))}
        if "processes" not in present:
            raise RecordFileError(f"{self.path}: tick {seq} is no longer in the file (dropped by the size bound)")
        snapshot = self._snapshot(index, seq)
        kernel = self._kernel(index, seq, snapshot) if "kernel" in present and "kernel" in parts else None
        pressure = None
        if "pressure" in parts and ("psi" in present or "cgroups" in present):
            pressure = self._pressure(index, seq, snapshot)
        vmstat = None
        if "vmstat" in present:
            vmstat = self._vmstat_at(seq)
        rates = self._vmstat_rates(index) if "vmstat_rates" in parts and vmstat is not None else ()
        taken = {}
        for name in TAKEN_SECTIONS:
            if name not in parts:
                continue
            row = self.conn.execute("SELECT max(seq) FROM sections WHERE name = ? AND seq <= ? AND seq > ?",
                                    (name, seq, seq - TAKEN_LOOKBACK)).fetchone()
            if row is not None and row[0] is not None:
                taken_seq = row[0]
                at = self.monos[self.index_at_or_before(taken_seq)]
                taken[name] = (at, decode(self._doc(taken_seq, name), TAKEN_TYPES[name], where=name))
        return RecordedTick(index, len(self.seqs), seq, snapshot, kernel, pressure, vmstat,
                            frozenset(p for p in present if isinstance(p, str)), parts, MappingProxyType(taken),
                            self.target, rates)

    def _system(self, seq: int) -> dict:
        doc = self._object(seq, "system")
        if doc is None:
            raise RecordDataError(f"tick {seq} has no system section")
        return {
            "meminfo": mapping(doc.get("meminfo", {}), int, where="meminfo"),
            "warnings": decode(doc.get("warnings", []), tuple[str, ...], where="warnings"),
            "rollups_read": scalar(doc.get("rollups_read", 0), int, "rollups_read"),
            "sample_cpu_s": scalar(doc.get("sample_cpu_s", 0.0), float, "sample_cpu_s"),
        }

    def _snapshot(self, index: int, seq: int) -> Snapshot:
        columns = self._process_columns(seq)
        system_doc = self._system(seq)
        mono = self.monos[index]
        first = max(0, index - HISTORY_LEN + 1)
        history_maps = [(self.monos[j], self._history_part(self._rss_map, self.seqs[j], {}))
                        for j in range(first, index)]
        history_maps.append((mono, self._rss_map(seq)))
        window = tuple(t for t, _ in history_maps)  # the views' ticks: 0 is the window's first

        prev_faults: dict[int, tuple[int, int]] = {}
        dt = None
        if index > 0:
            prev = self._history_part(self._process_columns, self.seqs[index - 1], None)
            if prev is not None:
                prev_faults = dict(zip(prev["proc"], zip(prev["minflt"], prev["majflt"])))
                dt = mono - self.monos[index - 1]
        views = []
        for i, proc_id in enumerate(columns["proc"]):
            proc = self.procs.get(proc_id)
            if proc is None:
                raise RecordDataError(f"process {proc_id} of tick {seq} is not in the process table")
            pid, start_ticks, cmdline, kernel_thread, _ = proc
            values = {name: columns[name][i] for name in _PROCESS_COLUMNS}
            sample = ProcessSample(
                identity=ProcessIdentity(pid, start_ticks), ppid=values["ppid"], comm=values["comm"], cmdline=cmdline,
                user=values["user"], state=values["state"], kernel_thread=kernel_thread, rss_bytes=values["rss"],
                anon_bytes=values["anon"], file_bytes=values["file"], shmem_bytes=values["shmem"],
                swap_bytes=values["swap"], threads=values["threads"], minflt=values["minflt"],
                majflt=values["majflt"], fd_count=values["fds"], fd_reason=values["fd_reason"],
                rollup=columns["rollup"][i], rollup_reason=values["rollup_reason"],
                rollup_time=values["rollup_time"])
            since, runs = runs_of((j, *m[proc_id]) for j, (_, m) in enumerate(history_maps) if proc_id in m)
            minflt_rate = majflt_rate = None
            before = prev_faults.get(proc_id)
            if before is not None and dt is not None and dt > 0:
                minflt_rate = (sample.minflt - before[0]) / dt
                majflt_rate = (sample.majflt - before[1]) / dt
            views.append(ProcessView(
                sample=sample, minflt_per_s=minflt_rate, majflt_per_s=majflt_rate,
                rss_change_per_min=History(window, 0, since, runs).rss_change_per_min(),
                since=since, runs=runs, rollup_current=columns["rollup_current"][i]))
        system = SystemSample(
            wall_time=self.walls[index], monotonic=mono, hostname=self.meta["hostname"],
            kernel=self.meta["kernel"], uptime_s=self.uptimes[index], meminfo=system_doc["meminfo"])
        sys_first = max(0, index - SYSTEM_HISTORY_LEN + 1)
        return Snapshot(
            tick=seq, interval_s=self.interval_s, system=system, processes=tuple(views),
            history_times=tuple(self.monos[sys_first:index + 1]),
            available_history=tuple(self.available[sys_first:index + 1]),
            rollups_read=system_doc["rollups_read"], sample_cpu_s=system_doc["sample_cpu_s"],
            warnings=system_doc["warnings"], tick_times=window, tick0=0)

    def _kernel(self, index: int, seq: int, snapshot: Snapshot) -> KernelView:
        doc = self._object(seq, "kernel")
        v = self.version
        slabs = slab_rows(doc.get("slabs"))
        chart: dict[str, tuple[int | None, ...]] = {}
        times: tuple[float, ...] = ()
        if slabs is not None:
            first = max(0, index - REPLAY_SLAB_CHART_TICKS + 1)
            totals = [self._history_part(self._slab_totals_at, self.seqs[j], {}) for j in range(first, index + 1)]
            times = tuple(self.monos[first:index + 1])
            largest = sorted(slabs, key=lambda r: -r.cache.total_bytes)[:CHART_CACHES]
            chart = {r.cache.name: tuple(t.get(r.cache.name) for t in totals) for r in largest}
        recorder = self.meta.get("recorder_pid")
        others = [view for view in snapshot.processes if view.pid != recorder]  # its fds follow the process count
        meminfo = snapshot.system.meminfo  # read at this tick, unless the view says otherwise
        if doc.get("meminfo") is not None:
            meminfo = mapping(doc["meminfo"], int, where="kernel meminfo")
        return KernelView(
            tick=seq, meminfo=meminfo, categories=meminfo_categories(meminfo), slabs=slabs,
            slab_reason=scalar(doc.get("slab_reason"), str | None, "slab_reason"),
            slab_version=scalar(doc.get("slab_version"), str | None, "slab_version"),
            slab_history_times=times, slab_history=MappingProxyType(chart),
            namespaces=decode(doc.get("namespaces", []), tuple[NetNamespace, ...], version=v, where="namespaces"),
            namespaces_unreadable=scalar(doc.get("namespaces_unreadable", 0), int, "namespaces_unreadable"),
            file_nr=decode(doc.get("file_nr"), FileNr | None, version=v, where="file_nr"),
            file_nr_reason=scalar(doc.get("file_nr_reason"), str | None, "file_nr_reason"),
            growers=fd_growers(others, snapshot.history, uptime_s=snapshot.system.uptime_s,
                               clock_ticks=self.meta["clock_ticks"])[:20],
            target_pid=None, fd_breakdown=None, fd_breakdown_reason=None)

    def _cgroups(self, seq: int):
        doc = self._object(seq, "cgroups")
        if doc is None:
            return None, MappingProxyType({})
        tree = decode(doc.get("tree"), tuple[CgroupMemory, ...], version=self.version, where="cgroups")
        details = decode(doc.get("details", {"m": {}}), Mapping[str, CgroupMemory], version=self.version,
                         where="cgroup details")
        return tree, details

    def _pressure(self, index: int, seq: int, snapshot: Snapshot) -> RecordedPressure:
        first = max(0, index - REPLAY_PSI_TICKS + 1)
        samples = tuple(s for s in (self._history_part(self._psi_at, self.seqs[j], None) for j in range(first, index))
                        if s is not None)
        current = self._psi_at(seq)
        if current is not None:
            samples += (current,)
        tree, details = self._cgroups(seq)
        if self._baselines is None or self._baselines[0] != self.seqs[0]:
            # "events since the recording started": the oldest tick the file still holds.
            def first_tree(first_seq):
                return self._cgroups(first_seq)[0] or ()

            first_tree = self._history_part(first_tree, self.seqs[0], ())
            self._baselines = (self.seqs[0], MappingProxyType({cg.path: dict(cg.events) for cg in first_tree}))
        proc_cgroups = {}
        columns = self._process_columns(seq)
        for proc_id in columns["proc"]:
            pid, _, _, _, cgroup = self.procs[proc_id]
            proc_cgroups[pid] = cgroup
        return RecordedPressure(
            samples=samples, unavailable_reason=self.meta.get("psi_unavailable_reason"), tree=tree, details=details,
            baselines=self._baselines[1], proc_cgroups=MappingProxyType(proc_cgroups),
            cgroup_version=self.meta.get("cgroup_version"), cgroup_mount=self.meta.get("cgroup_mount"),
            cgroup_error=self.meta.get("cgroup_error"))

    def verify(self) -> int:
        """Decompress every section of every tick and check every value against its type
        (zlib's checksum catches damaged bytes that SQLite's quick_check cannot see; the types,
        values no memtop writes); returns how many sections were read."""
        count = 0
        seq = name = None
        with self._lock:
            self.refresh()
            self.conn.execute("BEGIN")
            try:
                # The ticks listed now: a recorder may be adding more meanwhile.
                names = self.conn.execute("SELECT seq, name FROM sections WHERE seq <= ? ORDER BY seq",
                                          (self.seqs[-1],)).fetchall()
                for seq, name in names:
                    if seq not in self.keyframe_of:
                        continue  # dropped by the bound since the refresh
                    self._check_section(seq, name)
                    count += 1
            except Exception as e:  # noqa: BLE001 - see _DECODE_ERRORS
                raise RecordFileError(f"{self.path}: tick {seq} ({str(name)[:40]}) is damaged ({_why(e)})") from None
            finally:
                self.conn.execute("COMMIT")
        return count

    def _check_section(self, seq: int, name) -> None:
        if name == "rss":
            self._rss.pop(seq, None)
            self._rss_map(seq)
        elif name == "processes":
            self._processes.pop(seq, None)
            self._process_columns(seq)
        elif name == "system":
            self._system(seq)
        elif name == "kernel":
            doc = self._object(seq, "kernel")
            slab_rows(doc.get("slabs"), build=False)
            decode(doc.get("namespaces", []), tuple[NetNamespace, ...], version=self.version, where="namespaces")
            decode(doc.get("file_nr"), FileNr | None, version=self.version, where="file_nr")
        elif name == "psi":
            self._psi.pop(seq, None)
            self._psi_at(seq)
        elif name == "cgroups":
            self._cgroups(seq)
        elif name == "vmstat":
            mapping(self._object(seq, "vmstat"), int, where="vmstat")
        else:  # a section a later memtop writes: its bytes at least
            self._parts(seq, name)

    # --- navigation -----------------------------------------------------------------------------------
    def index_at_or_before(self, seq: int) -> int:
        return max(0, bisect.bisect_right(self.seqs, seq) - 1)

    def largest_changes(self, values: list[tuple[int, int | None]]) -> list[int]:
        """Indexes ordered by the size of the change from the value before them, largest first."""
        steps = []
        for (i0, v0), (i1, v1) in zip(values, values[1:]):
            if v0 is not None and v1 is not None and v1 != v0:
                steps.append((-abs(v1 - v0), i1))
        steps.sort()
        return [i for _, i in steps]

    def machine_changes(self) -> list[int]:
        """Ticks ordered by the change of memory used (MemTotal - MemAvailable) since the tick before."""
        return self.largest_changes(list(enumerate(self.used)))


def _kind_of(value) -> str:
    return f"{len(value)} values" if isinstance(value, list) else type(value).__name__


def _why(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _int64s(raw: bytes) -> array:
    if len(raw) % 8:
        raise RecordDataError("a column of 64-bit numbers whose length is not a multiple of 8")
    values = array("q")
    values.frombytes(raw)
    return values


def _process_table(doc: dict, version: int) -> dict:
    """The process columns of one tick, each value checked; ``rollup`` as Rollup records."""
    proc = doc.get("proc")
    if not isinstance(proc, list):
        raise RecordDataError("the process table has no proc column")
    count = len(proc)
    out = {"proc": column(doc, "proc", int, count, "processes")}
    for name, hint in _PROCESS_COLUMNS.items():
        out[name] = column(doc, name, hint, count, "processes")
    out["rollup_current"] = column(doc, "rollup_current", bool, count, "processes", default=True)
    rollup = doc.get("rollup")
    if version == 1:
        # Schema 1: each row's rollup is the list of its fields in the order of then.
        names, rows = V1_FIELDS["Rollup"], rollup
    else:
        # Schema 2: the field names once, then each row's values in that order.
        if not (isinstance(rollup, dict) and isinstance(rollup.get("fields"), list)):
            raise RecordDataError("processes: the rollup column has no field names")
        names, rows = rollup["fields"], rollup.get("rows")
    if not isinstance(rows, list) or len(rows) != count:
        raise RecordDataError(f"processes: the rollup column is not a list of {count}")
    if version == 1:
        rollups = [None if r is None else decode({"@": "Rollup", "f": r}, Rollup, version=1, where="rollup")
                   for r in rows]
    else:
        rollups = []
        for r in rows:
            if r is None:
                rollups.append(None)
            elif not isinstance(r, list) or len(r) != len(names):
                raise RecordDataError(f"processes: a rollup of {_kind_of(r)}, not {len(names)} values")
            else:
                rollups.append(decode({"@": "Rollup", "f": dict(zip(map(str, names), r))}, Rollup, where="rollup"))
    out["rollup"] = rollups
    return out

