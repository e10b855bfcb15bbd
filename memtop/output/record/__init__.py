"""The record file of ``memtop record`` / ``memtop replay``: SQLite, size-bounded like a ring.

Layout (schema version :data:`SCHEMA_VERSION`; ``PRAGMA application_id`` = :data:`APPLICATION_ID`
marks the file as memtop's, ``PRAGMA user_version`` holds the schema version):

- ``meta(key, value)``: JSON values: schema_version, memtop_version, hostname, kernel, interval_s,
  start_time (Unix seconds), max_bytes, page_size, clock_ticks, sections, process_columns,
  cmdline_limit, cgroup_version, cgroup_mount, cgroup_error, psi_unavailable_reason, recorder_pid.
- ``ticks(seq, wall_time, monotonic, uptime_s, mem_available, mem_used, processes, keyframe)``: one
  row per tick; the small columns let replay list the ticks and find the largest machine-wide
  change without decoding anything.
- ``procs(id, pid, start_ticks, first_seq, last_seq, info)``: one row per process identity (PID +
  start time): what does not change while a process lives is written once, not every tick, in
  ``info`` (zlib-compressed JSON: cmdline, cut to CMDLINE_LIMIT characters, cmdline_length,
  kernel_thread, cgroup: its memory cgroup path when first seen).
- ``sections(seq, name, data)``: per tick, the sections (names in :data:`SECTIONS`), each as
  zlib-compressed parts; a part is JSON (fields by name), or 64-bit integers for ``rss``. A
  section missing from a tick was not recorded then (a tab says so).

Modules: :mod:`memtop.collect.recording.codec` (encoding, bounded and typed decoding; what
schema 1 files hold), :mod:`.writer` (creating the file safely, the bound),
:mod:`memtop.collect.recording.reader` (replay: a recording is a source of samples, so the
reader sits with the other sources, below the TUI). Nothing here imports Textual.
"""

from memtop.collect.record import Recorder, TickCapture
from memtop.collect.recording.codec import (
    APPLICATION_ID,
    CMDLINE_LIMIT,
    MAX_PART_BYTES,
    SCHEMA_VERSION,
    SECTIONS,
    RecordDataError,
    RecordFileError,
    decode,
    encode,
    pack_parts,
    section_doc,
    section_parts,
    slab_columns,
    slab_rows,
    to_json,
    unpack_parts,
)
from memtop.collect.recording.reader import RecordedPressure, RecordedTick, RecordReader
from memtop.output.record.writer import DEFAULT_MAX_BYTES, MIN_MAX_BYTES, PROCESS_COLUMNS, RecordWriter

__all__ = [
    "APPLICATION_ID", "CMDLINE_LIMIT", "DEFAULT_MAX_BYTES", "MAX_PART_BYTES", "MIN_MAX_BYTES", "PROCESS_COLUMNS",
    "SCHEMA_VERSION", "SECTIONS", "RecordDataError", "RecordFileError", "RecordReader", "RecordWriter",
    "RecordedPressure", "RecordedTick", "Recorder", "TickCapture", "decode", "encode", "pack_parts",
    "section_doc", "section_parts", "slab_columns", "slab_rows", "to_json", "unpack_parts",
]
