"""`memtop record` and `memtop replay` as a user runs them: subprocesses, exit status, one-line
errors; Ctrl-C / SIGTERM / --duration end with a whole file; damaged files are refused."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memtop.output.record import RecordFileError, RecordReader
from tests.record_support import record_in_process
from tests.support import wait_until

WORKTREE = Path(__file__).resolve().parents[2]


def memtop(*args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtop", *map(str, args)], cwd=WORKTREE, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def start_recorder(path: Path, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "memtop", "record", str(path), "--interval", "0.5", *extra],
                            cwd=WORKTREE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def ticks_in(path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT count(*) FROM ticks").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


@pytest.fixture
def recorder_procs():
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """A valid recording of three ticks of this machine."""
    path = tmp_path_factory.mktemp("rec") / "valid.db"
    record_in_process(path, 3, interval_s=0.5)
    return path


def test_duration_ends_the_recording_with_a_whole_file(tmp_path):
    path = tmp_path / "d.db"
    result = memtop("record", path, "--interval", "0.5", "--duration", "2")
    assert result.returncode == 0, result.stderr
    assert "recording to" in result.stderr and "ticks recorded" in result.stderr
    reader = RecordReader(path)
    try:
        assert 3 <= len(reader) <= 6  # 2 s at 0.5 s: ticks at 0, 0.5, ..., 2.0 (a busy machine may skip one)
        reader.verify()
    finally:
        reader.close()
    assert not os.path.exists(f"{path}-wal")
    check = memtop("replay", "--check", path)
    assert check.returncode == 0 and "ticks from" in check.stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_recording_cleanly_and_the_file_is_being_replayable_meanwhile(tmp_path, recorder_procs, sig):
    path = tmp_path / "s.db"
    proc = start_recorder(path)
    recorder_procs.append(proc)
    # WHEN the recorder has written two ticks, the file (still being written) can be read ...
    wait_until(lambda: ticks_in(path) >= 2, timeout=30)
    reader = RecordReader(path)
    try:
        first = len(reader)
        assert reader.live and reader.load(first - 1).snapshot.processes
        # ... and a reader sees the ticks written since
        wait_until(lambda: reader.refresh() and len(reader) > first, timeout=30)
        check = memtop("replay", "--check", path)
        assert check.returncode == 0, check.stderr
    finally:
        reader.close()
    # AND the signal ends it with status 0 and a whole file
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0, proc.stderr.read()
    assert "ticks recorded" in proc.stderr.read()
    reader = RecordReader(path)
    try:
        assert len(reader) >= 3
        reader.verify()
    finally:
        reader.close()


@pytest.mark.parametrize("kind", ["fifo", "directory", "no-directory", "unwritable", "existing"])
def test_record_refuses_what_cannot_be_a_record_file(tmp_path, recording, kind):
    if kind == "fifo":
        target = tmp_path / "fifo"
        os.mkfifo(target)
        expected = "is not a regular file"
    elif kind == "directory":
        target, expected = tmp_path, "is a directory"
    elif kind == "no-directory":
        target, expected = tmp_path / "missing" / "r.db", "does not exist"
    elif kind == "unwritable":
        # /proc refuses new files even to root: an unwritable place that holds for every user
        target, expected = Path("/proc/memtop-record-test.db"), "cannot"
    else:
        target, expected = recording, "already exists"
    result = memtop("record", target, "--duration", "1", timeout=30)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("memtop: ") and expected in result.stderr
    assert "Traceback" not in result.stderr


def _damage(recording: Path, tmp_path: Path, kind: str) -> Path:
    target = tmp_path / f"{kind}.db"
    if kind == "missing":
        return target
    if kind == "empty":
        target.write_bytes(b"")
    elif kind == "random":
        target.write_bytes(os.urandom(100_000))
    elif kind == "other-schema":
        conn = sqlite3.connect(target)
        conn.execute("CREATE TABLE ticks (seq INTEGER PRIMARY KEY, data BLOB)")
        conn.execute("INSERT INTO ticks VALUES (1, x'00')")
        conn.commit()
        conn.close()
    elif kind == "future-version":
        shutil.copy(recording, target)
        conn = sqlite3.connect(target)
        conn.execute("PRAGMA user_version=99")
        conn.commit()
        conn.close()
    elif kind == "truncated":
        data = recording.read_bytes()
        target.write_bytes(data[: len(data) // 2])  # cut in the middle
    elif kind == "header-only":
        target.write_bytes(recording.read_bytes()[:100])
    elif kind == "bytes-overwritten":
        data = bytearray(recording.read_bytes())
        page = 4096
        # Keep the header page, overwrite everything from the third page on with random bytes.
        data[2 * page:] = os.urandom(len(data) - 2 * page)
        target.write_bytes(bytes(data))
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    return target


@pytest.mark.parametrize("kind", ["missing", "empty", "random", "other-schema", "future-version", "truncated",
                                  "header-only", "bytes-overwritten", "fifo", "directory"])
@pytest.mark.parametrize("check", [True, False])
def test_replay_refuses_a_damaged_file_in_one_line(tmp_path, recording, kind, check):
    target = _damage(recording, tmp_path, kind)
    args = ["replay", "--check", target] if check else ["replay", target]
    result = memtop(*args, timeout=30)  # timeout: a FIFO must never make it hang
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("memtop: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    # the file is left as it was: replay never writes beside it
    assert not os.path.exists(f"{target}-wal") and not os.path.exists(f"{target}-journal")


def test_a_damaged_tick_is_found_by_check(tmp_path, recording):
    # GIVEN a file whose structure is sound but one tick's compressed bytes are not
    target = tmp_path / "tick.db"
    shutil.copy(recording, target)
    conn = sqlite3.connect(target)
    conn.execute("UPDATE sections SET data = x'789c0000ffff' WHERE seq = 1 AND name = 'kernel'")
    conn.commit()
    conn.close()
    # THEN --check names it, and loading that tick raises the one-line error (the TUI shows it)
    result = memtop("replay", "--check", target)
    assert result.returncode == 1 and "tick 1 (kernel) is damaged" in result.stderr
    reader = RecordReader(target)
    try:
        reader.load(0)
        with pytest.raises(RecordFileError, match="tick 1 is damaged"):
            reader.load(1)
        # AND the tick after it still loads (its chart leaves the damaged tick out)
        assert reader.load(2).kernel.slabs is not None
    finally:
        reader.close()


def test_replay_without_a_terminal_says_so(recording):
    result = memtop("replay", recording)
    assert result.returncode == 2 and "needs a terminal" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--max-size", "10"], "at least 64K"),
    (["--max-size", "lots"], "not a size"),
    (["--duration", "soon"], "not a duration"),
    (["--interval", "0.1"], "between 0.5 and 3600"),
])
def test_record_usage_errors(tmp_path, args, message):
    result = memtop("record", tmp_path / "u.db", *args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "u.db").exists()


@pytest.fixture(scope="module")
def small_recording(tmp_path_factory) -> Path:
    """Four ticks of a captured proc tree: small, so that damaging it many times is quick."""
    path = tmp_path_factory.mktemp("small") / "small.db"
    record_in_process(path, 4, interval_s=0.5, root=WORKTREE / "tests" / "fixtures" / "kernel" / "tree" / "proc")
    return path


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_bytes_anywhere_give_a_record_file_error_or_the_figures(tmp_path, small_recording, data):
    # GIVEN a copy of a recording with bytes of one section (or one metadata value) replaced
    target = tmp_path / "fuzz.db"
    shutil.copy(small_recording, target)
    conn = sqlite3.connect(target)
    if data.draw(st.booleans(), label="meta"):
        key = data.draw(st.sampled_from([k for (k,) in conn.execute("SELECT key FROM meta")]), label="key")
        conn.execute("UPDATE meta SET value = ? WHERE key = ?",
                     (data.draw(st.sampled_from(["", "{", "null", "[1,2]", '"x"', "-1", "1e999"]), label="value"), key))
    else:
        seq, name, blob = data.draw(st.sampled_from(conn.execute("SELECT seq, name, data FROM sections").fetchall()),
                                    label="section")
        at = data.draw(st.integers(0, len(blob) - 1), label="offset")
        cut = data.draw(st.booleans(), label="cut")
        damaged = blob[:at] if cut else blob[:at] + bytes([blob[at] ^ data.draw(st.integers(1, 255))]) + blob[at + 1:]
        conn.execute("UPDATE sections SET data = ? WHERE seq = ? AND name = ?", (damaged, seq, name))
    conn.commit()
    conn.close()
    # THEN opening, loading every tick and verifying either work or raise the one-line error
    try:
        reader = RecordReader(target)
    except RecordFileError:
        return
    try:
        for i in range(len(reader)):
            try:
                reader.load(i)
            except RecordFileError as e:
                assert "\n" not in str(e)
        try:
            reader.verify()
        except RecordFileError:
            pass
    finally:
        reader.close()
