"""The record file of ``memtop record`` / ``memtop replay``: SQLite, size-bounded like a ring.

Layout (schema version :data:`SCHEMA_VERSION`; ``PRAGMA application_id`` = :data:`APPLICATION_ID`
marks the file as memtop's, ``PRAGMA user_version`` holds the schema version):

- ``meta(key, value)``: JSON values: schema_version, memtop_version, hostname, kernel, interval_s,
  start_time (Unix seconds), max_bytes, page_size, clock_ticks, sections, process_columns,
  cgroup_version, cgroup_mount, psi_unavailable_reason.
- ``ticks(seq, wall_time, monotonic, uptime_s, mem_available, mem_used, processes)``: one row per
  tick; the small columns let replay list the ticks and find the largest machine-wide change
  without decoding anything.
- ``procs(id, pid, start_ticks, cmdline, kernel_thread, cgroup, first_seq, last_seq)``: one row per
  process identity (PID + start time): what does not change while a process lives is written
  once, not every tick. ``cgroup``: its memory cgroup path when first seen.
- ``sections(seq, name, data)``: per tick, zlib-compressed JSON per section (names in
  :data:`SECTIONS`). A section missing from a tick was not recorded then (a tab says so).

Oldest ticks are deleted when the next tick would push the database past ``max_bytes``; SQLite
reuses the freed pages, so the file stays at or under the bound (see :class:`RecordWriter`).

Nothing here imports Textual: the recorder runs headless.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import sqlite3
import stat as stat_module
import struct
import threading
import time
import zlib
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from memtop import __version__
from memtop.collect.kernel import CHART_CACHES, KernelCollector
from memtop.collect.sampler import HISTORY_LEN, SYSTEM_HISTORY_LEN, Sampler
from memtop.model.kernel import (
    FileNr,
    KernelView,
    MeminfoCategory,
    NetNamespace,
    SlabCache,
    SlabRow,
    Sockstat,
    SockProtocol,
    fd_growers,
    meminfo_categories,
)
from memtop.model.pressure import CgroupMemory, PressureSample, PsiLine, PsiResource
from memtop.model.process import History, ProcessIdentity, ProcessSample, ProcessView, Rollup, runs_of
from memtop.model.snapshot import Snapshot, SystemSample
from memtop.procfs import CLOCK_TICKS, PAGE_SIZE, PROC, ProcfsError
from memtop.procfs.cgroup import MemoryHierarchy, locate_memory_hierarchy, memory_cgroup_of, read_cgroup_memory, walk_memory_cgroups
from memtop.procfs.pressure import pressure_unavailable_reason, read_system_pressure
from memtop.procfs.system import memory_used
from memtop.procfs.vmstat import read_vmstat

SCHEMA_VERSION = 1
APPLICATION_ID = 0x6D656D74  # "memt"
DEFAULT_MAX_BYTES = 100 * 2**20
MIN_MAX_BYTES = 64 * 1024
SECTIONS = ("system", "processes", "rss", "kernel", "psi", "cgroups", "vmstat")
ZLIB_LEVEL = 6
KEYFRAME_EVERY = 30

# The per-process columns of the ``processes`` section (one JSON list per column: similar values
# side by side compress better than one object per process).
PROCESS_COLUMNS = ("proc", "ppid", "comm", "user", "state", "rss", "anon", "file", "shmem", "swap", "threads",
                   "minflt", "majflt", "fds", "fd_reason", "rollup", "rollup_reason", "rollup_time",
                   "rollup_current")


class RecordFileError(Exception):
    """The record file cannot be used; the message is one line for the user (SQLite's own
    messages may span lines: they are joined)."""

    def __init__(self, message: str):
        super().__init__("; ".join(line.strip() for line in str(message).splitlines() if line.strip()))


# --- a small codec for the frozen model records --------------------------------------------------
# Only these classes are ever built from a file: a record file is data, never code (no pickle).
_MODEL_TYPES = {cls.__name__: cls for cls in (
    SlabCache, SlabRow, MeminfoCategory, SockProtocol, Sockstat, NetNamespace, FileNr,
    PsiLine, PsiResource, PressureSample, CgroupMemory, Rollup,
)}


_PLAIN = (int, float, str, bool, type(None))


def encode(obj):
    """A model record (or a tuple/mapping of them) as JSON-able data: ``{"@": name, "f": [fields]}``."""
    if type(obj) in _PLAIN:
        return obj
    if is_dataclass(obj):
        return {"@": type(obj).__name__, "f": [encode(getattr(obj, f.name)) for f in fields(obj)]}
    if isinstance(obj, Mapping):
        return {"m": {str(k): encode(v) for k, v in obj.items()}}
    if isinstance(obj, (tuple, list)):
        return [encode(v) for v in obj]
    return obj


def decode(data):
    """The inverse of :func:`encode`: lists become tuples, mappings read-only mappings."""
    if isinstance(data, dict):
        if "@" in data:
            cls = _MODEL_TYPES[data["@"]]  # KeyError: not a type we record (a corrupted file)
            return cls(*(decode(v) for v in data["f"]))
        return MappingProxyType({k: decode(v) for k, v in data["m"].items()})
    if isinstance(data, list):
        return tuple(decode(v) for v in data)
    return data


def to_json(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


# A section is stored as parts (a column of the process table, a slab column, ...), each its own
# zlib stream. A tick that is not a keyframe compresses each part with the same part of its
# keyframe as the zlib dictionary (deflate's preset dictionary, RFC 1950): most of a tick equals
# the tick before, so it costs little, and any tick decodes from itself and its keyframe alone.
# zlib looks back at most 32 KiB, so a part's dictionary is the last 32 KiB of the keyframe's.
ZDICT_BYTES = 32 * 1024
_HEADER = struct.Struct("<I")


def pack_parts(parts: dict[str, bytes], base: Mapping[str, bytes] | None) -> bytes:
    """``{part: raw JSON}`` into one blob: header (JSON list of [part, length, dictionary used]),
    then the zlib streams."""
    streams = []
    index = []
    for key, raw in parts.items():
        zdict = base.get(key) if base is not None else None
        compressor = zlib.compressobj(ZLIB_LEVEL, zdict=zdict[-ZDICT_BYTES:]) if zdict else zlib.compressobj(ZLIB_LEVEL)
        stream = compressor.compress(raw) + compressor.flush()
        streams.append(stream)
        index.append([key, len(stream), 1 if zdict else 0])
    header = to_json(index)
    return _HEADER.pack(len(header)) + header + b"".join(streams)


def unpack_parts(blob: bytes, base: Mapping[str, bytes] | None, only=None) -> dict[str, bytes]:
    """The raw JSON of each part (of the parts in ``only``, if given)."""
    (size,) = _HEADER.unpack_from(blob)
    index = json.loads(blob[_HEADER.size:_HEADER.size + size])
    offset = _HEADER.size + size
    out = {}
    for key, length, with_dict in index:
        if only is None or key in only:
            stream = blob[offset:offset + length]
            if len(stream) != length:
                raise ValueError("section shorter than its header says")
            if with_dict:
                if base is None or key not in base:
                    raise ValueError(f"part {key} needs its keyframe, which is missing")
                decompressor = zlib.decompressobj(zdict=base[key][-ZDICT_BYTES:])
            else:
                decompressor = zlib.decompressobj()
            raw = decompressor.decompress(stream) + decompressor.flush()
            if not decompressor.eof:
                raise zlib.error("incomplete or truncated stream")
            out[key] = raw
        offset += length
    return out


def section_parts(name: str, doc) -> dict:
    """How a section splits into parts: tables by column, the rest whole."""
    if name in ("processes", "cgroups"):
        return dict(doc)
    if name == "kernel":
        parts = {k: v for k, v in doc.items() if k != "slabs"}
        if doc["slabs"] is None:
            parts["slabs"] = None
        else:
            parts.update({f"slabs.{k}": v for k, v in doc["slabs"].items()})
        return parts
    return {"": doc}


def section_doc(name: str, parts: dict):
    if name in ("processes", "cgroups"):
        return parts
    if name == "kernel":
        doc = {k: v for k, v in parts.items() if not k.startswith("slabs")}
        doc["slabs"] = None if "slabs" in parts else {k[6:]: v for k, v in parts.items() if k.startswith("slabs.")}
        return doc
    return parts[""]


# --- what one tick records -------------------------------------------------------------------------


@dataclass(frozen=True)
class TickCapture:
    """Everything one tick records, read by :class:`Recorder` with the readers the tabs use."""

    snapshot: Snapshot
    kernel: KernelView | None
    psi: PressureSample | None
    cgroup_tree: tuple[CgroupMemory, ...] | None
    cgroup_details: Mapping[str, CgroupMemory]  # the cgroups processes are in, read in detail
    proc_cgroups: Mapping[ProcessIdentity, str | None]
    vmstat: Mapping[str, int] | None
    warnings: tuple[str, ...] = ()


class Recorder:
    """Samples the live system for ``memtop record``: the sampler (as the TUI), the Kernel tab's
    collector, system PSI, the memory cgroups, /proc/vmstat."""

    def __init__(self, root: Path = PROC, sampler: Sampler | None = None):
        self.root = Path(root)
        self.sampler = sampler or Sampler(self.root)
        self.kernel = KernelCollector(self.root)
        try:
            self.hierarchy: MemoryHierarchy | None = locate_memory_hierarchy(self.root)
            self.hierarchy_error: str | None = None
        except ProcfsError as e:
            self.hierarchy, self.hierarchy_error = None, str(e)
        self.psi_unavailable = pressure_unavailable_reason(self.root)
        self._cgroup_of: dict[ProcessIdentity, str | None] = {}

    def close(self) -> None:
        self.sampler.close()

    def capture(self) -> TickCapture:
        warnings: list[str] = []
        snapshot = self.sampler.sample()
        kernel = self.kernel.collect(snapshot, None)
        # The recorded view holds what one tick read; the slab chart and the fd growers are
        # derived again at replay from the recorded ticks around the one shown.
        kernel = replace(kernel, slab_history=MappingProxyType({}), growers=())
        psi = read_system_pressure(self.root, now=snapshot.system.monotonic)
        tree = details = None
        identities = {v.sample.identity for v in snapshot.processes}
        for identity in [i for i in self._cgroup_of if i not in identities]:
            del self._cgroup_of[identity]
        if self.hierarchy is not None:
            tree = tuple(walk_memory_cgroups(self.hierarchy))
            for view in snapshot.processes:
                identity = view.sample.identity
                if identity not in self._cgroup_of:
                    try:
                        self._cgroup_of[identity] = memory_cgroup_of(view.pid, self.hierarchy, self.root)
                    except ProcfsError:
                        self._cgroup_of[identity] = None
            details = {}
            for path in sorted({p for p in self._cgroup_of.values() if p is not None}):
                try:
                    details[path] = read_cgroup_memory(self.hierarchy, path, detail=True)
                except ProcfsError as e:  # removed since: the tree says the rest
                    warnings.append(f"cgroup {path}: {e}")
        try:
            vmstat = read_vmstat(self.root)
        except ProcfsError as e:
            vmstat = None
            warnings.append(str(e))
        return TickCapture(snapshot, kernel, psi, tree, MappingProxyType(details or {}),
                           MappingProxyType(dict(self._cgroup_of)), vmstat, tuple(warnings))

    def meta(self, interval_s: float, max_bytes: int) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "memtop_version": __version__,
            "hostname": self.sampler._hostname,
            "kernel": self.sampler._kernel,
            "interval_s": interval_s,
            "start_time": time.time(),
            "max_bytes": max_bytes,
            "page_size": PAGE_SIZE,
            "clock_ticks": CLOCK_TICKS,
            "sections": list(SECTIONS),
            "process_columns": list(PROCESS_COLUMNS),
            "cgroup_version": self.hierarchy.version if self.hierarchy else None,
            "cgroup_mount": (self.hierarchy.mount_point or str(self.hierarchy.directory)) if self.hierarchy else None,
            "cgroup_error": self.hierarchy_error,
            "psi_unavailable_reason": self.psi_unavailable,
            "recorder_pid": os.getpid(),
        }


# --- writing -----------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE ticks (seq INTEGER PRIMARY KEY, wall_time REAL NOT NULL, monotonic REAL NOT NULL, uptime_s REAL,
                    mem_available INTEGER, mem_used INTEGER, processes INTEGER NOT NULL, keyframe INTEGER NOT NULL);
CREATE TABLE procs (id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, start_ticks INTEGER NOT NULL, cmdline TEXT NOT NULL,
                    kernel_thread INTEGER NOT NULL, cgroup TEXT, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
                    UNIQUE (pid, start_ticks));
CREATE INDEX procs_last ON procs (last_seq);
CREATE TABLE sections (seq INTEGER NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (name, seq));
"""


def check_writable_path(path: Path) -> None:
    """Refuse what cannot become a record file, in one line: a directory, a FIFO or other special
    file (never opened: opening a FIFO blocks), an existing non-empty file, a missing directory."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise RecordFileError(f"{path}: the directory {parent} does not exist") from None
        if not os.access(parent, os.W_OK | os.X_OK):
            raise RecordFileError(f"{path}: cannot create a file in {parent}: permission denied") from None
        return
    except OSError as e:
        raise RecordFileError(f"{path}: {e.strerror}") from None
    if stat_module.S_ISDIR(st.st_mode):
        raise RecordFileError(f"{path} is a directory; give a file name to record to")
    if not stat_module.S_ISREG(st.st_mode):
        raise RecordFileError(f"{path} is not a regular file (a FIFO, socket or device); give a file name")
    if st.st_size > 0:
        raise RecordFileError(f"{path} already exists; remove it or choose another name (a recording is never overwritten)")
    if not os.access(path, os.W_OK):
        raise RecordFileError(f"{path}: permission denied")


class RecordWriter:
    """Appends ticks to a new record file, one transaction per tick.

    Journal mode WAL: ``memtop replay`` can read the file while it is being written; a reader
    never blocks the writer nor sees half a tick, and with ``synchronous=NORMAL`` a commit costs
    no fsync (a crash may lose the last ticks, never the file's consistency). The ``-wal`` file
    beside it is bounded (checkpointed every ``wal_pages`` pages and truncated to that size) and
    is removed on :meth:`close`.

    The bound: before each tick is written, the oldest ticks are deleted until the pages in use
    plus the new tick's size fit ``max_bytes``. SQLite puts the freed pages on its freelist and
    reuses them, so the database file stops growing at the bound; it never shrinks (no VACUUM:
    that would rewrite the whole file every time).
    """

    def __init__(self, path: Path, meta: dict, max_bytes: int = DEFAULT_MAX_BYTES):
        self.path = Path(path)
        self.max_bytes = max_bytes
        check_writable_path(self.path)
        try:
            self.conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.wal_pages = max(16, min(1000, max_bytes // self.page_size // 8))
            self.conn.execute(f"PRAGMA wal_autocheckpoint={self.wal_pages}")
            self.conn.execute(f"PRAGMA journal_size_limit={self.wal_pages * self.page_size}")
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self.conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        except sqlite3.Error as e:
            raise RecordFileError(f"{self.path}: cannot create the record file: {e}") from None
        self._empty_bytes = self.used_bytes()
        self.seq = 0
        self._procs: dict[ProcessIdentity, int] = {}
        self._next_proc_id = 1  # only grows: a reused id would give a new process an old one's rows
        self._key_seq: int | None = None  # the keyframe of the group being written
        self._key_raw: dict[str, dict[str, bytes]] = {}
        self.ticks_evicted = 0
        self.ticks_written = 0
        self.bytes_written = 0  # compressed section bytes, for bytes per tick

    def _transaction(self):
        conn = self.conn

        class _Tx:
            def __enter__(self_inner):
                conn.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, exc, tb):
                conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
                return False

        return _Tx()

    def used_bytes(self) -> int:
        """Pages in use (not on the freelist) x page size: what the bound is checked against."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self.page_size

    def _evict_for(self, incoming: int) -> None:
        used = self.used_bytes()
        while used + incoming > self.max_bytes:
            count, newest = self.conn.execute("SELECT count(*), max(seq) FROM ticks").fetchone()
            if not count:
                return  # a single tick larger than the bound: it is written anyway (the bound says so)
            per_tick = max(1, used // count)
            # Enough for this tick plus 1/32 of the file, so that eviction runs in batches rather
            # than on every tick once the file is full ...
            drop = min(count, max(1, math.ceil((used + incoming - self.max_bytes + self.max_bytes / 32) / per_tick)))
            want = self.conn.execute("SELECT seq FROM ticks ORDER BY seq LIMIT 1 OFFSET ?", (drop - 1,)).fetchone()[0]
            # ... in whole keyframe groups: a tick cannot be read without its keyframe.
            next_key = self.conn.execute("SELECT min(seq) FROM ticks WHERE seq > ? AND keyframe = seq",
                                         (want,)).fetchone()[0]
            cutoff = next_key - 1 if next_key is not None else newest
            if next_key is None:
                self._key_seq = None  # the current keyframe is gone: the next tick is one
            dropped = self.conn.execute("SELECT count(*) FROM ticks WHERE seq <= ?", (cutoff,)).fetchone()[0]
            self.conn.execute("DELETE FROM sections WHERE seq <= ?", (cutoff,))
            self.conn.execute("DELETE FROM ticks WHERE seq <= ?", (cutoff,))
            self.conn.execute("DELETE FROM procs WHERE last_seq <= ?", (cutoff,))
            self.ticks_evicted += dropped
            used = self.used_bytes()

    def _room_for(self, blobs) -> int:
        """Bytes a tick takes in the file: a small row packs with others in a page; a large
        one spills into overflow pages, the last partly empty; and two pages for b-tree splits."""
        room = 2 * self.page_size
        for blob in blobs:
            if len(blob) < self.page_size // 4:
                room += len(blob) + 64
            else:
                room += math.ceil((len(blob) + 64) / (self.page_size - 4)) * self.page_size
        return room

    def _keyframe_every(self) -> int:
        """Ticks per keyframe group: 30, fewer when the bound holds few ticks (eviction drops
        whole groups, so a group must be a small part of the file)."""
        count = self.conn.execute("SELECT count(*) FROM ticks").fetchone()[0]
        if not count:
            return KEYFRAME_EVERY
        # What a tick costs in the file, pages and all (beyond the empty tables).
        per_tick = max(1, (self.used_bytes() - self._empty_bytes) // count)
        return max(1, min(KEYFRAME_EVERY, (self.max_bytes - self._empty_bytes) // per_tick // 8))

    def write(self, capture: TickCapture) -> int:
        """Write one tick; returns the compressed bytes of its sections."""
        snapshot = capture.snapshot
        seq = self.seq
        new_procs = []
        ids = []
        for view in snapshot.processes:
            s = view.sample
            proc_id = self._procs.get(s.identity)
            if proc_id is None:
                # A process the sampler missed for a tick or more (a read that failed) comes back
                # with the same identity: it keeps its row.
                row = self.conn.execute("SELECT id FROM procs WHERE pid = ? AND start_ticks = ?",
                                        (s.pid, s.identity.start_ticks)).fetchone()
                if row is not None:
                    proc_id = self._procs[s.identity] = row[0]
                else:
                    proc_id = self._procs[s.identity] = self._next_proc_id
                    self._next_proc_id += 1
                    new_procs.append((proc_id, s.pid, s.identity.start_ticks, s.cmdline, int(s.kernel_thread),
                                      capture.proc_cgroups.get(s.identity), seq, seq))
            ids.append(proc_id)
        alive = set(ids)
        gone = [i for i, proc_id in self._procs.items() if proc_id not in alive]
        for identity in gone:
            del self._procs[identity]
        docs, rss_blob = encode_sections(capture, ids)
        raw = {name: {part: to_json(value) for part, value in section_parts(name, doc).items()}
               for name, doc in docs.items()}
        mi = snapshot.system.meminfo
        with self._transaction():
            # The processes of this tick first, so that eviction keeps their rows.
            self.conn.executemany("INSERT INTO procs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", new_procs)
            self.conn.execute("UPDATE procs SET last_seq = ? WHERE id IN (SELECT value FROM json_each(?))",
                              (seq, json.dumps(ids)))
            while True:
                keyframe = self._key_seq is None or seq - self._key_seq >= self._keyframe_every()
                base = None if keyframe else self._key_raw
                blobs = {name: pack_parts(parts, base.get(name) if base else None) for name, parts in raw.items()}
                blobs["rss"] = rss_blob
                self._evict_for(self._room_for(blobs.values()))
                if keyframe or self._key_seq is not None:
                    break
                # Eviction took the group this tick belonged to: write it as a keyframe instead.
            if keyframe:
                self._key_seq, self._key_raw = seq, raw
            self.conn.execute("INSERT INTO ticks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                              (seq, snapshot.system.wall_time, snapshot.system.monotonic, snapshot.system.uptime_s,
                               mi.get("MemAvailable"), memory_used(mi), len(snapshot.processes), self._key_seq))
            self.conn.executemany("INSERT INTO sections VALUES (?, ?, ?)",
                                  [(seq, name, blob) for name, blob in blobs.items()])
        size = sum(len(b) for b in blobs.values())
        self.seq += 1
        self.ticks_written += 1
        self.bytes_written += size
        return size

    def close(self) -> None:
        """Checkpoint the WAL into the database and close: the file is whole on its own."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # a reader holds the WAL open: SQLite checkpoints when the last one closes
        self.conn.close()


SLAB_FIELDS = tuple(f.name for f in fields(SlabCache))
ROLLUP_FIELDS = tuple(f.name for f in fields(Rollup))


def slab_columns(rows: tuple[SlabRow, ...] | None) -> dict | None:
    """The slab table as columns (one list per SlabCache field, plus growth and reclaimable)."""
    if rows is None:
        return None
    doc = {name: [getattr(r.cache, name) for r in rows] for name in SLAB_FIELDS}
    doc["growth"] = [r.growth_bytes_per_min for r in rows]
    doc["reclaimable"] = [r.reclaimable for r in rows]
    return doc


def slab_rows(doc: dict | None) -> tuple[SlabRow, ...] | None:
    if doc is None:
        return None
    caches = (SlabCache(*values) for values in zip(*(doc[name] for name in SLAB_FIELDS), strict=True))
    return tuple(SlabRow(c, g, r) for c, g, r in zip(caches, doc["growth"], doc["reclaimable"], strict=True))


def encode_sections(capture: TickCapture, proc_ids: list[int]) -> tuple[dict, bytes]:
    """The JSON documents of one tick's sections, and the packed ``rss`` section (binary)."""
    snapshot = capture.snapshot
    columns: dict[str, list] = {name: [] for name in PROCESS_COLUMNS}
    packed = array("q")
    for proc_id, view in zip(proc_ids, snapshot.processes):
        s = view.sample
        r = s.rollup
        row = (proc_id, s.ppid, s.comm, s.user, s.state, s.rss_bytes, s.anon_bytes, s.file_bytes, s.shmem_bytes,
               s.swap_bytes, s.threads, s.minflt, s.majflt, s.fd_count, s.fd_reason,
               [getattr(r, name) for name in ROLLUP_FIELDS] if r is not None else None,  # ints, None, a str
               s.rollup_reason, s.rollup_time, view.rollup_current)
        for name, value in zip(PROCESS_COLUMNS, row):
            columns[name].append(value)
        packed.extend((proc_id, -1 if s.rss_bytes is None else s.rss_bytes, -1 if s.fd_count is None else s.fd_count))
    system = snapshot.system
    docs = {
        "system": {"meminfo": dict(system.meminfo), "warnings": list(snapshot.warnings + capture.warnings),
                   "rollups_read": snapshot.rollups_read, "sample_cpu_s": snapshot.sample_cpu_s},
        "processes": columns,
    }
    if capture.kernel is not None:
        k = capture.kernel
        docs["kernel"] = {
            "slabs": slab_columns(k.slabs), "slab_reason": k.slab_reason, "slab_version": k.slab_version,
            "namespaces": encode(k.namespaces), "namespaces_unreadable": k.namespaces_unreadable,
            "file_nr": encode(k.file_nr), "file_nr_reason": k.file_nr_reason,
        }
    if capture.psi is not None:
        docs["psi"] = encode(capture.psi)
    if capture.cgroup_tree is not None:
        docs["cgroups"] = {"tree": encode(capture.cgroup_tree), "details": encode(capture.cgroup_details)}
    if capture.vmstat is not None:
        docs["vmstat"] = dict(capture.vmstat)
    return docs, zlib.compress(packed.tobytes(), ZLIB_LEVEL)


# --- reading -----------------------------------------------------------------------------------------

SQLITE_MAGIC = b"SQLite format 3\x00"
# What decoding a damaged section can raise: all of it becomes one RecordFileError.
_DECODE_ERRORS = (sqlite3.Error, zlib.error, struct.error, ValueError, KeyError, TypeError, IndexError,
                  AttributeError, OverflowError, RecursionError)
_SLAB_TOTAL_PARTS = frozenset({"slabs", "slabs.name", "slabs.num_slabs", "slabs.pagesperslab", "slabs.page_size"})
ALL_PARTS = frozenset({"kernel", "pressure"})
REPLAY_SLAB_CHART_TICKS = 60  # the Kernel tab's chart in replay: this many ticks back
REPLAY_PSI_TICKS = 300  # the Pressure tab's charts: as many readings as the live tab keeps


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
    parts: frozenset[str] = field(default_factory=frozenset)  # which of "kernel", "pressure" were rebuilt

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


class RecordReader:
    """Reads a record file for ``memtop replay``; safe to use from one worker thread at a time
    (a lock serializes the connection). A file still being written is read as far as it is
    committed; :meth:`refresh` picks up new ticks (and forgets the ones the bound dropped).
    """

    def __init__(self, path: Path, *, check: bool = True):
        self.path = Path(path)
        check_readable_path(self.path)
        self._lock = threading.RLock()
        try:
            # No -wal beside it: the recorder closed it (it checkpoints and removes the WAL), and
            # it never reopens a file, so the file cannot change: immutable=1 reads it without
            # locks and without leaving -wal/-shm files behind. Otherwise a recorder is writing it
            # (or was killed): read it the WAL way, seeing each committed tick.
            self.live = os.path.exists(f"{self.path}-wal")
            uri = self.path.resolve().as_uri() + ("?mode=ro" if self.live else "?mode=ro&immutable=1")
            self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA query_only=1")
            application_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
            if application_id != APPLICATION_ID:
                raise RecordFileError(f"{self.path} is an SQLite database but not a memtop recording")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise RecordFileError(f"{self.path} is a memtop recording of schema version {version}; "
                                      f"this memtop reads version {SCHEMA_VERSION}")
            if check:
                problems = [row[0] for row in self.conn.execute("PRAGMA quick_check(3)")]
                if problems != ["ok"]:
                    lines = [line for p in problems for line in p.splitlines() if line.strip() and "***" not in line]
                    raise RecordFileError(f"{self.path} is damaged (truncated or corrupted): "
                                          f"{lines[0] if lines else problems[0]}")
            self.meta = {k: json.loads(v) for k, v in self.conn.execute("SELECT key, value FROM meta")}
            for key in ("interval_s", "hostname", "kernel", "start_time"):
                if key not in self.meta:
                    raise RecordFileError(f"{self.path}: the recording's metadata lacks {key} (damaged file)")
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
        except _DECODE_ERRORS as e:
            raise RecordFileError(f"{self.path} is damaged (truncated or corrupted): {e}") from None
        if not self.seqs:
            raise RecordFileError(f"{self.path} holds no ticks yet")
        self._processes = _Lru(8)
        self._rss = _Lru(HISTORY_LEN + 64)
        self._slab_totals = _Lru(REPLAY_SLAB_CHART_TICKS + 16)
        self._psi = _Lru(REPLAY_PSI_TICKS + 32)
        self._baselines: tuple[int, Mapping] | None = None
        self.damaged: set[int] = set()  # ticks found damaged while reading their neighbours

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
            last = self.seqs[-1] if self.seqs else -1
            self.conn.execute("BEGIN")
            try:
                rows = self.conn.execute(
                    "SELECT seq, wall_time, monotonic, uptime_s, mem_available, mem_used, keyframe FROM ticks "
                    "WHERE seq > ? ORDER BY seq", (last,)).fetchall()
                oldest = self.conn.execute("SELECT min(seq) FROM ticks").fetchone()[0]
                top = max(self.procs, default=0)
                for row in self.conn.execute("SELECT id, pid, start_ticks, cmdline, kernel_thread, cgroup FROM procs "
                                             "WHERE id > ?", (top,)):
                    self.procs[row[0]] = (row[1], row[2], row[3], bool(row[4]), row[5])
            finally:
                self.conn.execute("COMMIT")
            changed = bool(rows)
            for seq, wall, mono, uptime, available, used, keyframe in rows:
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
                for column in (self.seqs, self.walls, self.monos, self.uptimes, self.available, self.used):
                    del column[:cut]
                changed = True
            return changed

    # --- sections ------------------------------------------------------------------------------
    def _section(self, seq: int, name: str) -> bytes | None:
        row = self.conn.execute("SELECT data FROM sections WHERE name = ? AND seq = ?", (name, seq)).fetchone()
        return row[0] if row else None

    def _keyframe_parts(self, key: int, name: str) -> dict[str, bytes]:
        found = self._keys.hit((key, name))
        if found is None:
            blob = self._section(key, name)
            if blob is None:
                raise ValueError(f"the keyframe {key} of this tick is missing")
            found = self._keys.put((key, name), unpack_parts(blob, None))
        return found

    def _parts(self, seq: int, name: str, only=None) -> dict | None:
        """The parts of one section of one tick, decoded; None when the tick has no such section."""
        blob = self._section(seq, name)
        if blob is None:
            return None
        key = self.keyframe_of[seq]
        base = self._keyframe_parts(key, name) if key != seq else None
        return {k: json.loads(v) for k, v in unpack_parts(blob, base, only).items()}

    def _doc(self, seq: int, name: str):
        parts = self._parts(seq, name)
        return None if parts is None else section_doc(name, parts)

    def _process_columns(self, seq: int) -> dict | None:
        columns = self._processes.hit(seq)
        if columns is None:
            columns = self._doc(seq, "processes")
            if columns is None:
                return None
            n = len(columns["proc"])
            if any(len(columns[name]) != n for name in PROCESS_COLUMNS):
                raise ValueError("process columns of different lengths")
            self._processes.put(seq, columns)
        return columns

    def _rss_map(self, seq: int) -> dict[int, tuple[int | None, int | None]]:
        found = self._rss.hit(seq)
        if found is None:
            blob = self._section(seq, "rss")
            found = {}
            if blob is not None:
                values = array("q")
                values.frombytes(zlib.decompress(blob))
                for i in range(0, len(values) - 2, 3):
                    rss, fds = values[i + 1], values[i + 2]
                    found[values[i]] = (None if rss < 0 else rss, None if fds < 0 else fds)
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
            except _DECODE_ERRORS as e:
                raise RecordFileError(f"{self.path}: a tick is damaged: {e}") from None
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
                for name, slabs, pages, page_size in zip(parts["slabs.name"], parts["slabs.num_slabs"],
                                                         parts["slabs.pagesperslab"], parts["slabs.page_size"],
                                                         strict=True):
                    found[name] = slabs * pages * page_size  # SlabCache.total_bytes
            self._slab_totals.put(seq, found)
        return found

    def _psi_at(self, seq: int) -> PressureSample | None:
        found = self._psi.hit(seq)
        if found is None:
            doc = self._doc(seq, "psi")
            if doc is None:
                return None
            found = self._psi.put(seq, decode(doc))
        return found

    # --- one tick ---------------------------------------------------------------------------------
    def load(self, index: int, parts=ALL_PARTS) -> RecordedTick:
        """The tick at ``index`` (0 = the oldest the file holds), rebuilt. RecordFileError if damaged.

        ``parts``: which of "kernel" and "pressure" to rebuild too (each costs a few decodes of
        the ticks before, and the fd growth of every process); the snapshot always is.
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
            except _DECODE_ERRORS as e:
                raise RecordFileError(f"{self.path}: tick {seq} is damaged ({type(e).__name__}: {e})") from None

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
            vmstat = MappingProxyType({str(k): int(v) for k, v in self._doc(seq, "vmstat").items()})
        return RecordedTick(index, len(self.seqs), seq, snapshot, kernel, pressure, vmstat, frozenset(present), parts)

    def _snapshot(self, index: int, seq: int) -> Snapshot:
        columns = self._process_columns(seq)
        system_doc = self._doc(seq, "system")
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
        rows = zip(*(columns[name] for name in PROCESS_COLUMNS))
        views = []
        for (proc_id, ppid, comm, user, state, rss, anon, file_, shmem, swap, threads, minflt, majflt, fds,
             fd_reason, rollup, rollup_reason, rollup_time, rollup_current) in rows:
            pid, start_ticks, cmdline, kernel_thread, _ = self.procs[proc_id]
            sample = ProcessSample(
                identity=ProcessIdentity(pid, start_ticks), ppid=ppid, comm=comm, cmdline=cmdline, user=user,
                state=state, kernel_thread=kernel_thread, rss_bytes=rss, anon_bytes=anon, file_bytes=file_,
                shmem_bytes=shmem, swap_bytes=swap, threads=threads, minflt=minflt, majflt=majflt, fd_count=fds,
                fd_reason=fd_reason, rollup=Rollup(*rollup) if rollup is not None else None,
                rollup_reason=rollup_reason, rollup_time=rollup_time)
            since, runs = runs_of((i, *m[proc_id]) for i, (_, m) in enumerate(history_maps) if proc_id in m)
            minflt_rate = majflt_rate = None
            before = prev_faults.get(proc_id)
            if before is not None and dt is not None and dt > 0:
                minflt_rate = (minflt - before[0]) / dt
                majflt_rate = (majflt - before[1]) / dt
            views.append(ProcessView(
                sample=sample, minflt_per_s=minflt_rate, majflt_per_s=majflt_rate,
                rss_change_per_min=History(window, 0, since, runs).rss_change_per_min(),
                since=since, runs=runs, rollup_current=bool(rollup_current)))
        system = SystemSample(
            wall_time=self.walls[index], monotonic=mono, hostname=str(self.meta["hostname"]),
            kernel=str(self.meta["kernel"]), uptime_s=self.uptimes[index],
            meminfo=MappingProxyType({str(k): int(v) for k, v in system_doc["meminfo"].items()}))
        sys_first = max(0, index - SYSTEM_HISTORY_LEN + 1)
        return Snapshot(
            tick=seq, interval_s=self.interval_s, system=system, processes=tuple(views),
            history_times=tuple(self.monos[sys_first:index + 1]),
            available_history=tuple(self.available[sys_first:index + 1]),
            rollups_read=int(system_doc.get("rollups_read", 0)), sample_cpu_s=float(system_doc.get("sample_cpu_s", 0.0)),
            warnings=tuple(system_doc.get("warnings", ())), tick_times=window, tick0=0)

    def _kernel(self, index: int, seq: int, snapshot: Snapshot) -> KernelView:
        doc = self._doc(seq, "kernel")
        slabs = slab_rows(doc["slabs"])
        chart: dict[str, tuple[int | None, ...]] = {}
        times: tuple[float, ...] = ()
        if slabs is not None:
            first = max(0, index - REPLAY_SLAB_CHART_TICKS + 1)
            totals = [self._history_part(self._slab_totals_at, self.seqs[j], {}) for j in range(first, index + 1)]
            times = tuple(self.monos[first:index + 1])
            largest = sorted(slabs, key=lambda r: -r.cache.total_bytes)[:CHART_CACHES]
            chart = {r.cache.name: tuple(t.get(r.cache.name) for t in totals) for r in largest}
        recorder = self.meta.get("recorder_pid")
        others = [v for v in snapshot.processes if v.pid != recorder]  # its fds follow the process count
        meminfo = snapshot.system.meminfo
        return KernelView(
            tick=seq, meminfo=meminfo, categories=meminfo_categories(meminfo), slabs=slabs,
            slab_reason=doc["slab_reason"], slab_version=doc["slab_version"], slab_history_times=times,
            slab_history=MappingProxyType(chart), namespaces=decode(doc["namespaces"]),
            namespaces_unreadable=int(doc["namespaces_unreadable"]), file_nr=decode(doc["file_nr"]),
            file_nr_reason=doc["file_nr_reason"],
            growers=fd_growers(others, snapshot.history, uptime_s=snapshot.system.uptime_s,
                               clock_ticks=int(self.meta.get("clock_ticks", CLOCK_TICKS)))[:20],
            target_pid=None, fd_breakdown=None, fd_breakdown_reason=None)

    def _pressure(self, index: int, seq: int, snapshot: Snapshot) -> RecordedPressure:
        first = max(0, index - REPLAY_PSI_TICKS + 1)
        samples = tuple(s for s in (self._history_part(self._psi_at, self.seqs[j], None) for j in range(first, index))
                        if s is not None)
        current = self._psi_at(seq)
        if current is not None:
            samples += (current,)
        tree = None
        details: Mapping[str, CgroupMemory] = MappingProxyType({})
        doc = self._doc(seq, "cgroups")
        if doc is not None:
            tree, details = decode(doc["tree"]), decode(doc["details"])
        if self._baselines is None or self._baselines[0] != self.seqs[0]:
            # "events since the recording started": the oldest tick the file still holds.
            def first_tree(first_seq):
                doc = self._doc(first_seq, "cgroups")
                return decode(doc["tree"]) if doc is not None else ()

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
        """Decompress and parse every section of every tick (zlib's checksum catches damaged
        bytes that SQLite's quick_check cannot see); returns how many sections were read."""
        count = 0
        with self._lock:
            self.refresh()
            self.conn.execute("BEGIN")
            try:
                # The ticks listed now: a recorder may be adding more meanwhile.
                for seq, name, data in self.conn.execute("SELECT seq, name, data FROM sections WHERE seq <= ? "
                                                         "ORDER BY seq", (self.seqs[-1],)):
                    if seq not in self.keyframe_of:
                        continue  # dropped by the bound since the refresh
                    if name == "rss":
                        zlib.decompress(data)
                    else:
                        key = self.keyframe_of[seq]
                        base = self._keyframe_parts(key, name) if key != seq else None
                        for raw in unpack_parts(data, base).values():
                            json.loads(raw)
                    count += 1
            except _DECODE_ERRORS as e:
                raise RecordFileError(f"{self.path}: tick {seq} ({name}) is damaged ({type(e).__name__}: {e})") from None
            finally:
                self.conn.execute("COMMIT")
        return count

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
