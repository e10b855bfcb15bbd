"""Names that are not UTF-8 (any user chooses process names, command lines, cgroup paths) are kept
exact in a recording, and the file's JSON stays valid for any parser: such a string is written as
the list of its bytes (memtop.text.json_value), a mapping keyed by one as [key, value] pairs."""

from __future__ import annotations

import json
import sqlite3
import zlib
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from memtop.collect.record import Recorder
from memtop.output.record import RecordReader, RecordWriter, unpack_parts

TREE = Path(__file__).resolve().parent.parent / "fixtures" / "pressure" / "tree" / "proc"
NAME = "evil-\udcff\udcfe\x1b[2J"  # bytes ff fe (surrogateescape) and an escape sequence


def strict(raw: bytes) -> None:
    """Parsed, the JSON holds no lone surrogate: a strict parser (UTF-8 only) reads it too."""
    json.dumps(json.loads(raw), ensure_ascii=False).encode("utf-8")


def test_strings_that_are_not_utf8_stay_exact_and_the_json_strict(tmp_path):
    recorder = Recorder(TREE)
    capture = recorder.capture()
    recorder.close()
    snapshot = capture.snapshot
    views = tuple(replace(v, sample=replace(v.sample, comm=NAME, cmdline=f"/bin/{NAME} --x", user=NAME,
                                            fd_reason=NAME)) for v in snapshot.processes)
    tree = tuple(replace(cg, path=f"/{NAME}") if cg.path != "/" else cg for cg in capture.cgroup_tree)
    details = MappingProxyType({f"/{NAME}": next(iter(capture.cgroup_details.values()))})
    cgroups = MappingProxyType({v.sample.identity: f"/{NAME}" for v in views})
    capture = replace(capture, snapshot=replace(snapshot, processes=views, warnings=(NAME,)), cgroup_tree=tree,
                      cgroup_details=details, proc_cgroups=cgroups)
    path = tmp_path / "names.db"
    writer = RecordWriter(path, {**recorder_meta(), "hostname": NAME})
    writer.write(capture)
    writer.close()
    # THEN every JSON value in the file is strict JSON
    conn = sqlite3.connect(path)
    for (value,) in conn.execute("SELECT value FROM meta"):
        strict(value.encode())
    for (info,) in conn.execute("SELECT info FROM procs"):
        strict(zlib.decompress(info))
    for name, blob in conn.execute("SELECT name, data FROM sections WHERE name != 'rss'"):
        for raw in unpack_parts(blob, None).values():
            strict(raw)
    conn.close()
    # AND replay gives the names back exactly
    reader = RecordReader(path)
    try:
        tick = reader.load(0)
        assert reader.meta["hostname"] == NAME and tick.snapshot.system.hostname == NAME
        for view in tick.snapshot.processes:
            s = view.sample
            assert (s.comm, s.cmdline, s.user, s.fd_reason) == (NAME, f"/bin/{NAME} --x", NAME, NAME)
        assert tick.snapshot.warnings[0] == NAME  # (then what the capture itself warned of)
        assert {cg.path for cg in tick.pressure.tree} - {"/"} == {f"/{NAME}"}
        assert set(tick.pressure.details) == {f"/{NAME}"}
        assert set(tick.pressure.proc_cgroups.values()) == {f"/{NAME}"}
        reader.verify()
    finally:
        reader.close()


def recorder_meta() -> dict:
    recorder = Recorder(TREE)
    try:
        return recorder.meta(2.0, 2**20)
    finally:
        recorder.close()
