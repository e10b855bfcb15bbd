"""The audit log, the availability reasons, and allocator refusal on captured-shape maps."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from memtop.actions import READ_ONLY_REASON, audit, unavailable_reason
from memtop.heap import gdb

LIBC_MAPS = """\
55d0c8a00000-55d0c8a01000 r--p 00000000 fe:00 1234                       /usr/bin/app
7f4015000000-7f4015026000 r--p 00000000 fe:00 339380                     /usr/lib/x86_64-linux-gnu/libc.so.6
7f4015026000-7f401517c000 r-xp 00026000 fe:00 339380                     /usr/lib/x86_64-linux-gnu/libc.so.6
7fff00000000-7fff00021000 rw-p 00000000 00:00 0                          [stack]
"""


def fake_proc(tmp_path: Path, maps: str, exe: Path = Path("/bin/true")) -> Path:
    root = tmp_path / "proc"
    (root / "42").mkdir(parents=True)
    (root / "42" / "maps").write_text(maps)
    os.symlink(exe, root / "42" / "exe")
    return root


def test_log_path_follows_xdg_state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert audit.log_path() == tmp_path / "memtop" / "actions.log"
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")  # the spec: relative paths are invalid
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert audit.log_path() == tmp_path / "home" / ".local" / "state" / "memtop" / "actions.log"


def test_append_writes_one_json_line_per_action(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    for i in range(3):
        warning = audit.log_action("evict", {"paths": [f"/f{i}"]}, prediction=None, result={"i": i}, duration_s=0.5)
        assert warning is None
    lines = audit.log_path().read_text().splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert list(first) == ["time", "user", "action", "target", "prediction", "result", "duration_s"]
    assert first["time"].endswith("+00:00") and first["duration_s"] == 0.5
    assert oct(audit.log_path().stat().st_mode & 0o777) == "0o600"


def test_read_log_skips_garbage_and_keeps_order(tmp_path):
    path = tmp_path / "actions.log"
    path.write_text('{"action": "trim"}\nnot json\n\n[1, 2]\n{"action": "evict"}\n')
    records, problems = audit.read_log(path)
    assert [r["action"] for r in records] == ["trim", "evict"]
    assert problems == ["line 2 of the tail is not JSON"]
    assert audit.read_log(tmp_path / "missing.log") == ([], [])


def test_unwritable_log_is_a_warning_not_a_crash(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))  # a file where a directory should be
    warning = audit.log_action("trim", {}, prediction=None, result={}, duration_s=None)
    assert warning is not None and "could not write the audit log" in warning


def test_unavailable_reasons():
    assert unavailable_reason("trim", read_only=True, euid=0) == READ_ONLY_REASON
    assert unavailable_reason("drop-caches", euid=0) is None
    assert "only root" in unavailable_reason("drop-caches", euid=1000)
    assert "CAP_SYS_PTRACE" in unavailable_reason("trim", euid=1000, target_uid=0)
    assert unavailable_reason("trim", euid=1000, target_uid=1000) is None
    assert unavailable_reason("evict", euid=1000) is None


def test_find_libc_gives_the_load_base(tmp_path):
    libc = gdb.find_libc(42, fake_proc(tmp_path, LIBC_MAPS))
    assert libc.base == 0x7F4015000000 and libc.path.endswith("/libc.so.6")


@pytest.mark.parametrize("line, word", [
    ("7f4016000000-7f4016100000 r-xp 00000000 fe:00 77 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "jemalloc"),
    ("7f4016000000-7f4016100000 r-xp 00000000 fe:00 77 /usr/lib/libtcmalloc_minimal.so.4.5.9", "tcmalloc"),
    ("7f4016000000-7f4016100000 r-xp 00000000 fe:00 77 /lib/ld-musl-x86_64.so.1", "musl"),
])
def test_other_allocators_are_refused_with_the_reason(tmp_path, line, word):
    maps = LIBC_MAPS if word != "musl" else LIBC_MAPS.replace("libc.so.6", "libm.so.6")
    with pytest.raises(gdb.Refused) as refusal:
        gdb.find_libc(42, fake_proc(tmp_path, maps + line + "\n"))
    assert word in str(refusal.value) and "does not use glibc malloc" in str(refusal.value)


def test_gdb_missing_is_explained(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("MEMTOP_GDB", raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # no gdb beside it either
    assert shutil.which("gdb") is None
    with pytest.raises(gdb.GdbUnavailable, match="gdb is not installed"):
        gdb.gdb_path()


def test_tests_never_write_the_real_audit_log():
    """tests/conftest.py points XDG_STATE_HOME at a temporary directory for every test, so an
    action run by any test (evict, trim, the TUI, the Page cache tab) logs there."""
    real = Path(os.path.expanduser("~")) / ".local" / "state" / "memtop" / "actions.log"
    assert audit.log_path() != real
    assert os.environ["XDG_STATE_HOME"].startswith(str(Path(os.environ.get("TMPDIR", "/tmp")).resolve()))


def test_the_log_view_never_says_released_a_negative_size():
    from memtop.tui.actions import describe_record

    grew = {"action": "trim", "target": {"pid": 7, "comm": "sleep"},
            "result": {"status": "ok", "released_bytes": -4096, "stopped_ms": 26.0}}
    assert describe_record(grew)[4] == "ok: released nothing (RSS +4.00 KiB), stopped 26.0 ms"
    fell = {**grew, "result": {"status": "ok", "released_bytes": 2 * 2**20, "stopped_ms": 40.0}}
    assert describe_record(fell)[4] == "ok: released 2.00 MiB, stopped 40.0 ms"
