"""Hypothesis crafts record files: any JSON in any metadata value, any SQL value in any tick or
process row, any JSON in place of any value of any section (both schema versions). Whatever it
makes, `memtop replay --check` ends with status 0 or 1 and, on 1, one printable line; loading
every tick as the replay screen does raises nothing but RecordFileError."""

from __future__ import annotations

import json
import shutil
import sqlite3
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memtop.cli import main
from memtop.output.record import RecordFileError, RecordReader, pack_parts, unpack_parts
from tests.record_support import record_in_process

HERE = Path(__file__).resolve().parent
V1 = HERE.parent / "fixtures" / "record" / "v1.db"
TREE = HERE.parent / "fixtures" / "pressure" / "tree" / "proc"  # processes, PSI, cgroups

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12) | st.sampled_from(["\x1b]0;x\x07", "\udcff", "\u202e", "-1", "", "@", "f", "m"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["@", "f", "m", "x", ""]) | st.text(max_size=6),
                                                                inner, max_size=4),
    max_leaves=10)
SQL_VALUES = (st.none() | st.integers(-2**63, 2**63 - 1) | st.floats() | st.text(max_size=20)
              | st.binary(max_size=40))


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> dict[int, Path]:
    v2 = tmp_path_factory.mktemp("fuzz") / "v2.db"
    record_in_process(v2, 3, interval_s=0.5, root=TREE)
    return {1: V1, 2: v2}


def _mutate(value, data, depth=0):
    """``value`` with one node somewhere inside it replaced by any JSON."""
    if isinstance(value, (dict, list)) and value and depth < 8 and data.draw(st.booleans(), label="descend"):
        if isinstance(value, dict):
            key = data.draw(st.sampled_from(sorted(value)), label="key")
            return {**value, key: _mutate(value[key], data, depth + 1)}
        i = data.draw(st.integers(0, len(value) - 1), label="index")
        return value[:i] + [_mutate(value[i], data, depth + 1)] + value[i + 1:]
    return data.draw(JSON, label="replacement")


def _craft(conn: sqlite3.Connection, version: int, data) -> None:
    target = data.draw(st.sampled_from(["meta", "ticks", "procs", "section", "section", "section"]), label="target")
    if target == "meta":
        keys = [k for (k,) in conn.execute("SELECT key FROM meta")] + ["new_key"]
        key = data.draw(st.sampled_from(keys), label="meta key")
        value = json.dumps(data.draw(JSON, label="meta value"), allow_nan=True)
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
    elif target == "ticks":
        column = data.draw(st.sampled_from(["seq", "wall_time", "monotonic", "uptime_s", "mem_available", "mem_used",
                                            "processes", "keyframe"]), label="tick column")
        seq = data.draw(st.sampled_from([s for (s,) in conn.execute("SELECT seq FROM ticks")]), label="tick")
        conn.execute(f"UPDATE ticks SET {column} = ? WHERE seq = ?", (data.draw(SQL_VALUES, label="value"), seq))
    elif target == "procs":
        proc_id = data.draw(st.sampled_from([i for (i,) in conn.execute("SELECT id FROM procs")]), label="proc")
        if version == 1:
            column = data.draw(st.sampled_from(["pid", "start_ticks", "cmdline", "kernel_thread", "cgroup"]))
            value = data.draw(SQL_VALUES, label="value")
        else:
            (info,) = conn.execute("SELECT info FROM procs WHERE id = ?", (proc_id,)).fetchone()
            column = "info"
            doc = _mutate(json.loads(zlib.decompress(info)), data)
            value = zlib.compress(json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass"))
        conn.execute(f"UPDATE procs SET {column} = ? WHERE id = ?", (value, proc_id))
    else:
        rows = conn.execute("SELECT s.seq, s.name, s.data, t.keyframe FROM sections s JOIN ticks t ON t.seq = s.seq "
                            "WHERE s.name != 'rss'").fetchall()
        seq, name, blob, key = data.draw(st.sampled_from(rows), label="section")
        base = None
        if key != seq:
            (key_blob,) = conn.execute("SELECT data FROM sections WHERE seq = ? AND name = ?", (key, name)).fetchone()
            base = unpack_parts(key_blob, None)
        parts = unpack_parts(blob, base)
        part = data.draw(st.sampled_from(sorted(parts)), label="part")
        doc = _mutate(json.loads(parts[part]), data)
        parts[part] = json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")
        new = pack_parts(parts, None)  # schema 2's header, no dictionary
        if version == 1:  # schema 1's header: [part, length, dictionary used]
            header_size = int.from_bytes(new[:4], "little")
            index = [entry[:3] for entry in json.loads(new[4:4 + header_size])]
            header = json.dumps(index).encode()
            new = len(header).to_bytes(4, "little") + header + new[4 + header_size:]
        conn.execute("UPDATE sections SET data = ? WHERE seq = ? AND name = ?", (new, seq, name))


@pytest.mark.parametrize("version", [1, 2])
@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_whatever_is_crafted_check_is_one_line_and_replay_raises_only_record_file_errors(
        tmp_path, recordings, capsys, version, data):
    target = tmp_path / "crafted.db"
    shutil.copy(recordings[version], target)
    conn = sqlite3.connect(target, timeout=0)
    try:
        for _ in range(data.draw(st.integers(1, 3), label="changes")):
            try:
                _craft(conn, version, data)
            except sqlite3.IntegrityError:
                pass  # SQLite itself refuses that value (a NULL or duplicate key): nothing to craft
            except (zlib.error, ValueError, TypeError):
                pass  # a section an earlier change made unreadable (its keyframe, gone): nothing to craft
        conn.commit()
    finally:
        conn.close()
    capsys.readouterr()
    # THEN `memtop replay --check` says it in one printable line (or accepts what is valid)
    status = main(["replay", "--check", str(target)])
    out, err = capsys.readouterr()
    assert status in (0, 1)
    text = out if status == 0 else err
    assert text.count("\n") == 1 and (status == 0 or text.startswith("memtop: ")), (out, err)
    assert not any(ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF
                   or 0x202A <= ord(c) <= 0x202E for c in text), text
    # AND every tick loads as the replay screen asks for it, or raises the one-line error
    try:
        reader = RecordReader(target)
    except RecordFileError as e:
        assert "\n" not in str(e)
        return
    try:
        for i in range(len(reader)):
            for parts in (frozenset(), frozenset({"kernel", "pressure"})):
                try:
                    reader.load(i, parts)
                except RecordFileError as e:
                    assert "\n" not in str(e)
        reader.rss_series(0, 0)
        reader.machine_changes()
    finally:
        reader.close()
