"""Writing a record file: created safely, size-bounded like a ring, whole after any failure.

Creating it (:func:`create_record_file`): a recording holds every process's command line, and
root makes it, so the file is created by memtop itself with ``O_CREAT|O_EXCL|O_NOFOLLOW``, mode
0600, in a directory opened with ``O_NOFOLLOW`` (its last component may not be a symbolic link:
SQLite resolves symbolic links in the path and would put the file, and its ``-wal``/``-shm``,
wherever the link points) that no other user can write (each directory of the path is owned by
root or the user, and not writable by group or others unless sticky, like /tmp). The file is
written whole (an SQLite image with the tables and the metadata); its ``-wal`` and ``-shm`` are
created the same way before SQLite opens it, read-write but never "create" (``mode=rw``), so
SQLite never creates a file by a name someone else could have planted.

The bound (``--max-size``) holds for the file and its ``-wal`` together, whatever the processes
are: a command line is kept to CMDLINE_LIMIT characters, each process row counts, and before a
tick is written the oldest ticks are dropped until the pages in use plus twice the tick (its
pages, and their copy in the WAL until the checkpoint that follows every tick) fit. A tick that
cannot fit even in an empty file is not written (:attr:`RecordWriter.skipped` says why).

Failures: every tick is checkpointed into the file at once, and before it is written the disk
space its pages may need there is reserved (``fallocate(FALLOC_FL_KEEP_SIZE)``); so when the
disk fills up, the tick being written fails whole and every tick before it is in FILE itself.
:meth:`RecordWriter.close` leaves no ``-wal``/``-shm`` behind, and removes the file when no tick
was written.
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import sqlite3
import stat as stat_module
import zlib
from array import array
from pathlib import Path

from memtop import __version__
from memtop.text import cut
from memtop.model.process import ProcessIdentity
from memtop.collect.recording.codec import (
    APPLICATION_ID,
    CMDLINE_LIMIT,
    MAX_SECTION_BYTES,
    ROLLUP_FIELDS,
    SCHEMA_VERSION,
    SECTIONS,
    TAKEN_SECTIONS,
    ZLIB_LEVEL,
    PartTooLarge,
    RecordFileError,
    encode,
    pack_parts,
    section_parts,
    slab_columns,
    to_json,
)
from memtop.procfs.system import memory_used

DEFAULT_MAX_BYTES = 100 * 2**20
MIN_MAX_BYTES = 64 * 1024
KEYFRAME_EVERY = 30

# The per-process columns of the ``processes`` section (one JSON list per column: similar values
# side by side compress better than one object per process). ``rollup`` is one part too:
# ``{"fields": [Rollup field names], "rows": [[values in that order] or null per process]}``.
PROCESS_COLUMNS = ("proc", "ppid", "comm", "user", "state", "rss", "anon", "file", "shmem", "swap", "threads",
                   "minflt", "majflt", "fds", "fd_reason", "rollup", "rollup_reason", "rollup_time",
                   "rollup_current")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE ticks (seq INTEGER PRIMARY KEY, wall_time REAL NOT NULL, monotonic REAL NOT NULL, uptime_s REAL,
                    mem_available INTEGER, mem_used INTEGER, processes INTEGER NOT NULL, keyframe INTEGER NOT NULL);
CREATE TABLE procs (id INTEGER PRIMARY KEY, pid INTEGER NOT NULL, start_ticks INTEGER NOT NULL,
                    first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, info BLOB NOT NULL,
                    UNIQUE (pid, start_ticks));
CREATE INDEX procs_last ON procs (last_seq);
CREATE TABLE sections (seq INTEGER NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (name, seq));
"""
_SIDE_FILES = ("-wal", "-shm")
_ROW_OVERHEAD = 64  # bytes of a small row in a b-tree page, beyond its data (cell, pointers, slack)


class TickTooLarge(Exception):
    """A tick that does not fit in the bound even when every other tick is dropped."""


def cap_text(text: str | None, limit: int = CMDLINE_LIMIT) -> str | None:
    """``text`` cut to ``limit`` characters, the last one ``…`` when it was cut."""
    return None if text is None else cut(text, limit)


# --- creating the file ------------------------------------------------------------------------------

def _trusted_directory(st: os.stat_result) -> str | None:
    """Why another user could change what a directory holds, or None."""
    if st.st_uid not in (0, os.geteuid()):
        return f"it belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat_module.S_IWGRP | stat_module.S_IWOTH) and not st.st_mode & stat_module.S_ISVTX:
        return f"other users can write it (mode {stat_module.S_IMODE(st.st_mode):04o}, not sticky)"
    return None


def check_writable_path(path: Path) -> tuple[int, str]:
    """Refuse, in one line, what memtop must not record to; return (directory fd, file name).

    Refused: an existing file (a recording is never overwritten) or symbolic link; a directory,
    FIFO or other special file; a ``-wal``/``-shm`` already beside the name (left by a killed
    recorder, or planted); a directory that is a symbolic link (its last component), missing,
    or that another user can write (checked for every directory of the path).
    """
    path = Path(path)
    name = path.name
    if not name or name in (".", ".."):
        raise RecordFileError(f"{path}: give a file name to record to")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise RecordFileError(f"{path}: the directory {parent} does not exist") from None
        if e.errno == errno.ELOOP or (e.errno == errno.ENOTDIR and os.path.islink(parent)):
            target = os.path.realpath(parent)
            raise RecordFileError(f"{path}: the directory {parent} is a symbolic link (to {target}); memtop writes "
                                  "a recording only through real directories: give the real path") from None
        if e.errno == errno.ENOTDIR:
            raise RecordFileError(f"{path}: {parent} is not a directory") from None
        raise RecordFileError(f"{path}: cannot open the directory {parent}: {e.strerror}") from None
    try:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None:
            if stat_module.S_ISLNK(st.st_mode):
                raise RecordFileError(f"{path} is a symbolic link; memtop never records through one")
            if stat_module.S_ISDIR(st.st_mode):
                raise RecordFileError(f"{path} is a directory; give a file name to record to")
            if not stat_module.S_ISREG(st.st_mode):
                raise RecordFileError(f"{path} is not a regular file (a FIFO, socket or device); give a file name")
            raise RecordFileError(f"{path} already exists; remove it or choose another name "
                                  "(a recording is never overwritten)")
        for suffix in (*_SIDE_FILES, "-journal"):
            try:
                os.stat(name + suffix, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            raise RecordFileError(f"{path}{suffix} already exists (left by a recorder that was killed, or put "
                                  "there); remove it, or choose another name")
        # Every directory from / down: one another user could change could be swapped for a
        # link between these checks and SQLite's own open of the path.
        real = Path(os.path.realpath(parent))
        for directory in (real, *real.parents):
            why = _trusted_directory(os.stat(directory))
            if why is not None:
                raise RecordFileError(f"{path}: memtop does not record into {directory}: {why}")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise RecordFileError(f"{path}: cannot create a file in {parent}: permission denied")
    except BaseException:
        os.close(dir_fd)
        raise
    return dir_fd, name


def _initial_image(meta: dict) -> bytes:
    """An SQLite database with memtop's tables and ``meta``, in WAL mode, as bytes."""
    memory = sqlite3.connect(":memory:", isolation_level=None)
    try:
        memory.execute("BEGIN")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                memory.execute(statement)
        memory.executemany("INSERT INTO meta VALUES (?, ?)", [(k, to_json(v).decode()) for k, v in meta.items()])
        memory.execute(f"PRAGMA application_id={APPLICATION_ID}")
        memory.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        memory.execute("COMMIT")
        image = bytearray(memory.serialize())
    finally:
        memory.close()
    # Header bytes 18 and 19 (file format write/read version) = 2: the database is in WAL mode
    # (https://www.sqlite.org/fileformat2.html#the_database_header).
    image[18] = image[19] = 2
    return bytes(image)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


_libc = None


def reserve(fd: int, offset: int, length: int) -> bool:
    """Allocate disk space for ``length`` bytes from ``offset`` without changing the file's size
    (``fallocate(FALLOC_FL_KEEP_SIZE)``): SQLite's checkpoint then writes into space that is
    already the file's. False when the file system cannot (the reservation is then skipped);
    OSError(ENOSPC) when the disk is full."""
    global _libc
    if length <= 0:
        return True
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    if _libc.fallocate(fd, 1, offset, length) == 0:  # 1: FALLOC_FL_KEEP_SIZE (linux/falloc.h)
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err))


def _disk_full(e: BaseException) -> bool:
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(e, sqlite3.Error) and getattr(e, "sqlite_errorname", "") == "SQLITE_FULL"


# --- writing ----------------------------------------------------------------------------------------


class RecordWriter:
    """Appends ticks to a new record file, one transaction per tick.

    Journal mode WAL: ``memtop replay`` can read the file while it is being written; a reader
    never blocks the writer nor sees half a tick. Every tick is checkpointed into the file
    (``wal_checkpoint(TRUNCATE)``), so the ``-wal`` holds at most the tick being written, and
    :meth:`close` removes it. With ``synchronous=NORMAL`` a commit costs no fsync (a crash may
    lose the last tick, never the file's consistency).
    """

    def __init__(self, path: Path, meta: dict, max_bytes: int = DEFAULT_MAX_BYTES):
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.seq = 0
        self._procs: dict[ProcessIdentity, int] = {}
        self._next_proc_id = 1  # only grows: a reused id would give a new process an old one's rows
        self._key_seq: int | None = None  # the keyframe of the group being written
        self._key_raw: dict[str, dict[str, bytes]] = {}
        self.ticks_evicted = 0
        self.ticks_written = 0
        self.ticks_skipped = 0
        self.skipped: str | None = None  # why the last tick not written was not
        self.sections_left_out = 0
        self.bytes_written = 0  # compressed section bytes, for bytes per tick
        self._reserve = True
        self._closed = False
        meta = dict(meta)
        meta.update(schema_version=SCHEMA_VERSION, memtop_version=__version__, sections=list(SECTIONS),
                    process_columns=list(PROCESS_COLUMNS), cmdline_limit=CMDLINE_LIMIT, max_bytes=max_bytes)
        dir_fd, name = check_writable_path(self.path)
        self._created: list[tuple[str, int, int]] = []  # (name, st_dev, st_ino) of what memtop made
        self._dir_fd = dir_fd
        self._name = name
        self.fd = -1
        self.conn: sqlite3.Connection | None = None
        try:
            self._create(meta)
        except BaseException as e:
            self._remove_created()
            if isinstance(e, RecordFileError):
                raise
            if isinstance(e, (OSError, sqlite3.Error)):
                raise RecordFileError(f"{self.path}: cannot create the record file: {_why(e)}",
                                      disk_full=_disk_full(e)) from None
            raise

    def _make(self, name: str) -> int:
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=self._dir_fd)
        except FileExistsError:
            raise RecordFileError(f"{self.path.parent / name} already exists (made meanwhile by someone else)") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise RecordFileError(f"{self.path.parent / name} is a symbolic link; memtop never records "
                                      "through one") from None
            raise
        st = os.fstat(fd)
        self._created.append((name, st.st_dev, st.st_ino))
        os.fchmod(fd, 0o600)  # whatever the umask: a recording holds every command line
        return fd

    def _create(self, meta: dict) -> None:
        self.fd = self._make(self._name)
        _write_all(self.fd, _initial_image(meta))
        for suffix in _SIDE_FILES:
            os.close(self._make(self._name + suffix))
        # mode=rw: SQLite opens the files made above and never creates one.
        uri = Path(os.path.realpath(self.path)).as_uri() + "?mode=rw"
        self.conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        self._check_identity()
        self.page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            raise RecordFileError(f"{self.path}: SQLite did not open the new file in WAL mode")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA temp_store=MEMORY")  # no temporary files anywhere
        self.conn.execute("PRAGMA wal_autocheckpoint=0")  # every tick is checkpointed by write()
        self.conn.execute("PRAGMA busy_timeout=10000")  # a replay reading the file: wait for it
        self._empty_bytes = self.used_bytes()

    def _check_identity(self) -> None:
        """The files SQLite opened, by their path, are the ones memtop made."""
        self.conn.execute("SELECT count(*) FROM meta").fetchone()
        real = os.path.realpath(self.path)
        for name, dev, ino in self._created:
            st = os.stat(real[: -len(self._name)] + name, follow_symlinks=False)
            if (st.st_dev, st.st_ino) != (dev, ino):
                raise RecordFileError(f"{self.path.parent / name} was replaced while memtop opened it")

    def _remove_created(self) -> None:
        """Remove the files memtop made (only those: same device and inode)."""
        if self.conn is not None:
            try:
                self.conn.close()
            except sqlite3.Error:
                pass
            self.conn = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        for name, dev, ino in self._created:
            try:
                st = os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
                if (st.st_dev, st.st_ino) == (dev, ino):
                    os.unlink(name, dir_fd=self._dir_fd)
            except OSError:
                pass
        self._created = []
        os.close(self._dir_fd)
        self._dir_fd = -1

    def _transaction(self):
        conn = self.conn

        class _Tx:
            def __enter__(self_inner):
                conn.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, exc, tb):
                if exc_type is None:
                    conn.execute("COMMIT")
                elif conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # SQLite rolled back by itself (a full disk): the error above says why
                return False

        return _Tx()

    def used_bytes(self) -> int:
        """Pages in use (not on the freelist) x page size: what the bound is checked against."""
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self.page_size

    def file_bytes(self) -> int:
        """The file and its -wal, as they are on disk now."""
        total = os.fstat(self.fd).st_size
        try:
            total += os.stat(self._name + "-wal", dir_fd=self._dir_fd, follow_symlinks=False).st_size
        except FileNotFoundError:
            pass
        return total

    def _evict_for(self, incoming: int) -> None:
        used = self.used_bytes()
        while used + incoming > self.max_bytes:
            count, newest = self.conn.execute("SELECT count(*), max(seq) FROM ticks").fetchone()
            if not count:
                raise TickTooLarge(f"it needs {incoming} bytes with its copy in the WAL, more than --max-size "
                                   f"({self.max_bytes}) allows beside the file's tables")
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
                room += len(blob) + _ROW_OVERHEAD
            else:
                room += math.ceil((len(blob) + _ROW_OVERHEAD) / (self.page_size - 4)) * self.page_size
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

    def write(self, capture) -> int:
        """Write one tick (a :class:`memtop.collect.record.TickCapture`); returns the compressed
        bytes of its sections, 0 when the tick could not fit in the bound (:attr:`skipped`).

        Raises RecordFileError (``disk_full`` set when the disk is full: the ticks written
        before stay readable from the file)."""
        try:
            return self._write(capture)
        except RecordFileError:
            raise
        except (OSError, sqlite3.Error) as e:
            if _disk_full(e):
                raise RecordFileError(f"{self.path}: the disk is full ({_why(e)})", disk_full=True) from None
            raise RecordFileError(f"{self.path}: cannot write: {_why(e)}") from None

    def _write(self, capture) -> int:
        snapshot = capture.snapshot
        seq = self.seq
        new_procs = []
        ids = []
        known = dict(self._procs)
        for view in snapshot.processes:
            s = view.sample
            proc_id = known.get(s.identity)
            if proc_id is None:
                # A process the sampler missed for a tick or more (a read that failed) comes back
                # with the same identity: it keeps its row.
                row = self.conn.execute("SELECT id FROM procs WHERE pid = ? AND start_ticks = ?",
                                        (s.pid, s.identity.start_ticks)).fetchone()
                if row is not None:
                    proc_id = known[s.identity] = row[0]
                else:
                    proc_id = known[s.identity] = self._next_proc_id + len(new_procs)
                    info = {"cmdline": cap_text(s.cmdline), "cmdline_length": len(s.cmdline),
                            "kernel_thread": bool(s.kernel_thread),
                            "cgroup": cap_text(capture.proc_cgroups.get(s.identity))}
                    new_procs.append((proc_id, s.pid, s.identity.start_ticks, seq, seq,
                                      zlib.compress(to_json(info), ZLIB_LEVEL)))
            ids.append(proc_id)
        docs, rss_parts = encode_sections(capture, ids)
        raw = {name: {part: to_json(value) for part, value in section_parts(name, doc).items()}
               for name, doc in docs.items()}
        mi = snapshot.system.meminfo
        proc_room = sum(len(row[5]) + _ROW_OVERHEAD for row in new_procs) + _ROW_OVERHEAD * len(ids) // 8
        try:
            with self._transaction():
                # The processes of this tick first, so that eviction keeps their rows.
                self.conn.executemany("INSERT INTO procs VALUES (?, ?, ?, ?, ?, ?)", new_procs)
                self.conn.execute("UPDATE procs SET last_seq = ? WHERE id IN (SELECT value FROM json_each(?))",
                                  (seq, json.dumps(ids)))
                while True:
                    keyframe = self._key_seq is None or seq - self._key_seq >= self._keyframe_every()
                    base = None if keyframe else self._key_raw
                    blobs, dropped = _pack_sections(raw, base)
                    blobs["rss"] = pack_parts(rss_parts, None)
                    # Twice the tick: its pages, and their copy in the WAL until the checkpoint.
                    incoming = 2 * (self._room_for(blobs.values()) + proc_room)
                    self._evict_for(incoming)
                    if keyframe or self._key_seq is not None:
                        break
                    # Eviction took the group this tick belonged to: write it as a keyframe instead.
                if self._reserve:
                    self._reserve = reserve(self.fd, os.fstat(self.fd).st_size, incoming // 2)
                if keyframe:
                    self._key_seq, self._key_raw = seq, {k: v for k, v in raw.items() if k not in dropped}
                self.conn.execute("INSERT INTO ticks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                  (seq, snapshot.system.wall_time, snapshot.system.monotonic, snapshot.system.uptime_s,
                                   mi.get("MemAvailable"), memory_used(mi), len(snapshot.processes), self._key_seq))
                self.conn.executemany("INSERT INTO sections VALUES (?, ?, ?)",
                                      [(seq, name, blob) for name, blob in blobs.items()])
        except TickTooLarge as e:
            self.ticks_skipped += 1
            self.skipped = f"tick {seq} not recorded: {e}"
            self.seq += 1
            return 0
        self._checkpoint()
        alive = set(ids)
        self._procs = {i: p for i, p in known.items() if p in alive}
        self._next_proc_id += len(new_procs)
        self.sections_left_out += len(dropped)
        size = sum(len(b) for b in blobs.values())
        self.seq += 1
        self.ticks_written += 1
        self.bytes_written += size
        return size

    def _checkpoint(self) -> None:
        """Copy the tick into the file and empty the WAL (a replay reading an older tick may
        hold it back: it is then copied at the next tick)."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def close(self) -> None:
        """Checkpoint the WAL into the database and close: the file is whole on its own, and no
        ``-wal``/``-shm`` is left beside it. A file that holds no tick is removed."""
        if self._closed:
            return
        self._closed = True
        if self.ticks_written == 0:
            self._remove_created()
            return
        emptied = False
        try:
            busy, log, _ = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            emptied = busy == 0 and log == 0
        except sqlite3.Error:
            pass
        try:
            self.conn.close()
        except sqlite3.Error:
            pass
        self.conn = None
        if emptied:
            # SQLite removes both when the last connection closes; a replay still open keeps
            # them: the WAL is empty, every tick is in the file, so they go (the replay keeps
            # its open files, a new one reads the file alone).
            for name, dev, ino in self._created:
                if name == self._name:
                    continue
                try:
                    st = os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
                    if (st.st_dev, st.st_ino) == (dev, ino) and (name.endswith("-shm") or st.st_size == 0):
                        os.unlink(name, dir_fd=self._dir_fd)
                except OSError:
                    pass
        os.close(self.fd)
        self.fd = -1
        os.close(self._dir_fd)
        self._dir_fd = -1


def _why(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or str(e)
    return str(e)


def _pack_sections(raw: dict[str, dict[str, bytes]], base) -> tuple[dict[str, bytes], set[str]]:
    """Each section as one blob; a section too large to store is left out of the tick (the
    ``processes`` section cannot be: the tick is then too large to record)."""
    blobs = {}
    dropped = set()
    for name, parts in raw.items():
        try:
            blob = pack_parts(parts, base.get(name) if base else None)
            if len(blob) > MAX_SECTION_BYTES:
                raise PartTooLarge(f"{len(blob)} bytes compressed, more than the {MAX_SECTION_BYTES >> 20} MiB "
                                   "a section holds")
        except PartTooLarge as e:
            if name in ("processes", "system"):
                raise TickTooLarge(f"its {name} section is too large ({e})") from None
            dropped.add(name)
            continue
        blobs[name] = blob
    return blobs, dropped


def encode_sections(capture, proc_ids: list[int]) -> tuple[dict, dict[str, bytes]]:
    """The JSON documents of one tick's sections, and the ``rss`` section's parts (binary:
    64-bit integers, -1 for unknown)."""
    snapshot = capture.snapshot
    columns: dict[str, list] = {name: [] for name in PROCESS_COLUMNS}
    procs, rss, fds = array("q"), array("q"), array("q")
    for proc_id, view in zip(proc_ids, snapshot.processes):
        s = view.sample
        r = s.rollup
        row = {"proc": proc_id, "ppid": s.ppid, "comm": s.comm, "user": s.user, "state": s.state,
               "rss": s.rss_bytes, "anon": s.anon_bytes, "file": s.file_bytes, "shmem": s.shmem_bytes,
               "swap": s.swap_bytes, "threads": s.threads, "minflt": s.minflt, "majflt": s.majflt,
               "fds": s.fd_count, "fd_reason": s.fd_reason,
               "rollup": [getattr(r, name) for name in ROLLUP_FIELDS] if r is not None else None,
               "rollup_reason": s.rollup_reason, "rollup_time": s.rollup_time, "rollup_current": view.rollup_current}
        for name in PROCESS_COLUMNS:
            columns[name].append(row[name])
        procs.append(proc_id)
        rss.append(-1 if s.rss_bytes is None else s.rss_bytes)
        fds.append(-1 if s.fd_count is None else s.fd_count)
    columns["rollup"] = {"fields": list(ROLLUP_FIELDS), "rows": columns["rollup"]}
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
        if k.tick != snapshot.tick:
            # Read at an earlier tick (a spaced part): its meminfo is that tick's, which its slab
            # figures sit beside on the Kernel tab, not this tick's.
            docs["kernel"]["meminfo"] = dict(k.meminfo)
    if capture.psi is not None:
        docs["psi"] = encode(capture.psi)
    if capture.cgroup_tree is not None:
        docs["cgroups"] = {"tree": encode(capture.cgroup_tree), "details": encode(capture.cgroup_details)}
    if capture.vmstat is not None:
        docs["vmstat"] = dict(capture.vmstat)
    for name in TAKEN_SECTIONS:  # at the ticks they were read
        value = getattr(capture, name, None)
        if value is not None:
            docs[name] = encode(value)
    rss_parts = {"proc": procs.tobytes(), "rss": rss.tobytes(), "fds": fds.tobytes()}
    return docs, rss_parts

