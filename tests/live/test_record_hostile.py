"""`memtop record` and `memtop replay --check` against hostile users and crafted files: the bound
holds with 1 MB command lines, a crafted file is one line and status 1 (with bounded memory for a
zlib bomb), the file is created new, mode 0600, never through a planted symbolic link, nothing is
left beside it when recording fails, a full disk keeps the ticks written, and what is printed
about a file's contents is printable. All through the real command, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from tests.record_support import record_in_process
from tests.support import IS_ROOT, wait_until

WORKTREE = Path(__file__).resolve().parents[2]
V1 = WORKTREE / "tests" / "fixtures" / "record" / "v1.db"
TREE = WORKTREE / "tests" / "fixtures" / "kernel" / "tree" / "proc"
MIB = 2**20


def memtop(*args, timeout: float = 120, cwd=WORKTREE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtop", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(WORKTREE)})


def one_line_failure(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("memtop: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr
    return result.stderr


def beside(path: Path) -> list[str]:
    """The files whose name starts with the recording's."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


# --- the bound with 1 MB command lines ------------------------------------------------------------

@pytest.fixture
def huge_cmdlines():
    """20 processes whose command lines are 1 MiB each (`sh -c SCRIPT NAME ARGS...`, nine
    arguments of at most 128 KiB: MAX_ARG_STRLEN), as any user can start."""
    chunk = 120 * 1024
    args = ["y" * min(chunk, MIB - i) for i in range(0, MIB, chunk)]
    procs = [subprocess.Popen(["sh", "-c", "sleep 600; : $#", f"memtop-huge-{k}", *args], start_new_session=True)
             for k in range(20)]
    try:
        wait_until(lambda: all(len(open(f"/proc/{p.pid}/cmdline", "rb").read()) > MIB for p in procs), timeout=30)
        yield procs
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait()


def test_the_bound_holds_with_twenty_1_mb_command_lines(tmp_path, huge_cmdlines):
    path = tmp_path / "huge.db"
    proc = subprocess.Popen([sys.executable, "-m", "memtop", "record", path, "--max-size", "1M", "--interval", "0.5",
                             "--duration", "6"], cwd=WORKTREE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # WHILE it records, the file and its -wal together stay under the bound
    sizes = []
    while proc.poll() is None:
        sizes.append(sum(os.path.getsize(tmp_path / n) for n in beside(path) if (tmp_path / n).exists()))
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert max(sizes) <= MIB, max(sizes)
    # THEN the file is under the bound, alone, and holds every tick (not one: the old 20 MiB)
    assert beside(path) == ["huge.db"] and path.stat().st_size <= MIB
    check = memtop("replay", "--check", path)
    assert check.returncode == 0, check.stderr
    ticks = int(check.stdout.split(": ", 1)[1].split()[0])
    assert ticks >= 8, check.stdout
    # AND replay shows each huge command line cut, with its start as it was
    from memtop.output.record import CMDLINE_LIMIT, RecordReader

    reader = RecordReader(path)
    try:
        shown = {v.pid: v.sample.cmdline for v in reader.load(len(reader) - 1).snapshot.processes}
    finally:
        reader.close()
    for p in huge_cmdlines:
        assert len(shown[p.pid]) == CMDLINE_LIMIT and shown[p.pid].endswith("…")
        assert shown[p.pid].startswith("sh -c sleep 600; : $# memtop-huge-")


# --- crafted files --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def v2_recording(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("v2") / "v2.db"
    record_in_process(path, 4, interval_s=0.5, root=TREE)
    return path


def crafted(tmp_path: Path, base: Path, *statements) -> Path:
    target = tmp_path / "crafted.db"
    shutil.copy(base, target)
    conn = sqlite3.connect(target)
    for statement in statements:
        if isinstance(statement, tuple):
            conn.execute(*statement)
        else:
            conn.execute(statement)
    conn.commit()
    conn.close()
    return target


def _meta(key: str, value: str):
    return ("UPDATE meta SET value = ? WHERE key = ?", (value, key))


CRAFTED = {
    "clock_ticks=0": [_meta("clock_ticks", "0")],
    "clock_ticks=-100": [_meta("clock_ticks", "-100")],
    "interval=0": [_meta("interval_s", "0")],
    "interval=-5": [_meta("interval_s", "-5")],
    "interval=NaN": [_meta("interval_s", "NaN")],
    "interval=1e999": [_meta("interval_s", "1e999")],
    "interval=text": [_meta("interval_s", '"fast"')],
    "start_time=1e300": [_meta("start_time", "1e300")],
    "no hostname": ["DELETE FROM meta WHERE key = 'hostname'"],
    "hostname=list": [_meta("hostname", "[1,2]")],
    "meta not JSON": [_meta("kernel", "{")],
    "wall_time=1e300": ["UPDATE ticks SET wall_time = 1e300 WHERE seq = 1"],
    "wall_time=text": ["UPDATE ticks SET wall_time = 'noon' WHERE seq = 1"],
    "monotonic=-1": ["UPDATE ticks SET monotonic = -1 WHERE seq = 2"],
    "keyframe elsewhere": ["UPDATE ticks SET keyframe = 99 WHERE seq = 2"],
    "schema_version 3 in meta": [_meta("schema_version", "3")],
    "user_version 3": ["PRAGMA user_version = 3"],
    "section too large": [("UPDATE sections SET data = zeroblob(20000000) WHERE seq = 1 AND name = 'system'",)],
    "section as text": [("UPDATE sections SET data = 'abc' WHERE seq = 1 AND name = 'system'",)],
}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("kind", list(CRAFTED))
def test_a_crafted_file_is_one_line_and_status_1(tmp_path, v2_recording, version, kind):
    target = crafted(tmp_path, V1 if version == 1 else v2_recording, *CRAFTED[kind])
    one_line_failure(memtop("replay", "--check", target, timeout=60))
    # Without --check, replay decodes the newest tick only (the TUI says a damaged one when it
    # gets there): one line either way, 1 for the file, 2 for the missing terminal.
    plain = memtop("replay", target, timeout=60)
    assert plain.returncode in (1, 2) and plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr
    assert beside(target) == ["crafted.db"]  # replay never writes beside it


def test_schema_version_2_on_a_version_1_file_is_refused(tmp_path):
    # A file of the first format that claims the second (the old reader accepted any claim)
    target = crafted(tmp_path, V1, _meta("schema_version", "2"), "PRAGMA user_version = 2")
    one_line_failure(memtop("replay", "--check", target))


def _bomb_blob(version: int, declared: int | None) -> bytes:
    """A section whose one part is a zlib stream of 600 MB of zeros (about 580 KB)."""
    bomb = zlib.compress(bytes(600_000_000), 9)
    entry = ["", len(bomb), 0] if version == 1 else ["", len(bomb), 0, declared]
    header = json.dumps([entry]).encode()
    return struct.pack("<I", len(header)) + header + bomb


def peak_rss_of_check(path: Path) -> tuple[int, int, str]:
    """Run `memtop replay --check PATH`; its exit status, its peak RSS in bytes (ru_maxrss of that
    child alone, from wait4), and what it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "memtop", "replay", "--check", str(path)], cwd=WORKTREE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out, err = proc.stdout.read(), proc.stderr.read()  # a line or two: no pipe fills up
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (communicate would reap it)
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss * 1024, (out + err).decode()


@pytest.mark.parametrize("version, section, declared", [
    (1, "rss", None), (1, "system", None), (2, "system", 1000), (2, "system", 600_000_000),
])
def test_a_zlib_bomb_is_refused_without_raising_rss(tmp_path, v2_recording, version, section, declared):
    base = V1 if version == 1 else v2_recording
    status, baseline, text = peak_rss_of_check(base)
    assert status == 0, text
    blob = zlib.compress(bytes(600_000_000), 9) if section == "rss" and version == 1 else _bomb_blob(version, declared)
    target = crafted(tmp_path, base, ("UPDATE sections SET data = ? WHERE seq = 3 AND name = ?", (blob, section)))
    status, peak, text = peak_rss_of_check(target)
    assert status == 1 and text.startswith("memtop: ") and text.count("\n") == 1, text
    # 600 MB of output; the check's peak RSS is within a few MiB of checking the valid file
    assert peak - baseline < 4 * MIB, (baseline, peak)


# --- creating the file ------------------------------------------------------------------------------

def test_the_recording_is_mode_0600_whatever_the_umask(tmp_path):
    path = tmp_path / "r.db"
    result = subprocess.run(["sh", "-c", f'umask 000 && exec "$0" -m memtop record "$1" --duration 1 --interval 0.5',
                             sys.executable, str(path)], cwd=WORKTREE, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("planted", ["", "-wal", "-shm", "-journal"])
def test_a_planted_symbolic_link_is_refused_and_its_target_untouched(tmp_path, planted):
    # GIVEN a link where the recording (or a file SQLite makes beside it) would be, to a file
    # root should never write, and one to a file that does not exist yet
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    path = tmp_path / "rec.db"
    os.symlink(victim, tmp_path / f"rec.db{planted}")
    result = memtop("record", path, "--duration", "1", "--interval", "0.5")
    text = one_line_failure(result)
    assert ("symbolic link" in text) if not planted else ("already exists" in text)
    assert victim.read_text() == "precious\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    os.unlink(tmp_path / f"rec.db{planted}")
    missing = tmp_path / "would-be-created"
    os.symlink(missing, tmp_path / f"rec.db{planted}")
    one_line_failure(memtop("record", path, "--duration", "1", "--interval", "0.5"))
    assert not missing.exists()


def test_a_symbolic_link_as_the_directory_is_refused(tmp_path):
    # GIVEN tmp/link -> tmp/real (SQLite resolves links in the path: it would write in real/)
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    text = one_line_failure(memtop("record", tmp_path / "link" / "rec.db", "--duration", "1", "--interval", "0.5"))
    assert "symbolic link" in text
    assert list(real.iterdir()) == []


@pytest.mark.skipif(not IS_ROOT, reason="makes a directory owned by another user")
@pytest.mark.parametrize("kind", ["world-writable", "group-writable", "other-owner"])
def test_a_directory_another_user_can_write_is_refused(tmp_path, kind):
    shared = tmp_path / "shared"
    shared.mkdir()
    if kind == "world-writable":
        os.chmod(shared, 0o777)
    elif kind == "group-writable":
        os.chmod(shared, 0o775)
    else:
        os.chown(shared, 65534, 65534)
        os.chmod(shared, 0o755)
    text = one_line_failure(memtop("record", shared / "rec.db", "--duration", "1", "--interval", "0.5"))
    assert "does not record into" in text
    assert list(shared.iterdir()) == []


def test_a_sticky_world_writable_directory_is_accepted(tmp_path):
    # like /tmp: others cannot remove or rename root's files there
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    result = memtop("record", sticky / "rec.db", "--duration", "1", "--interval", "0.5")
    assert result.returncode == 0, result.stderr
    assert beside(sticky / "rec.db") == ["rec.db"]


def test_an_existing_file_is_never_overwritten_even_empty(tmp_path):
    path = tmp_path / "rec.db"
    path.write_bytes(b"")
    text = one_line_failure(memtop("record", path, "--duration", "1"))
    assert "already exists" in text and path.read_bytes() == b""


def test_what_record_and_check_print_about_a_file_is_printable(tmp_path, v2_recording):
    # GIVEN a file name and a recorded host name holding escape sequences
    path = tmp_path / "x\x1b]0;owned\x07.db"
    result = memtop("record", path, "--duration", "1", "--interval", "0.5")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stderr and "x\\e]0;owned\\a.db" in result.stderr
    target = crafted(tmp_path, v2_recording, _meta("hostname", json.dumps("evil\x1b[2J\x1b]52;c;cm0gLXJmIC8=\x07")),
                     _meta("kernel", json.dumps("6.1\u202e\udcff")))
    check = memtop("replay", "--check", target)
    assert check.returncode == 0, check.stderr
    assert "\x1b" not in check.stdout and "\u202e" not in check.stdout
    assert "host evil\\e[2J\\e]52;c;cm0gLXJmIC8=\\a" in check.stdout and "kernel 6.1\\u202e\\xff" in check.stdout


# --- failures leave nothing beside the file -----------------------------------------------------------

def test_a_replay_open_when_the_recorder_ends_leaves_no_wal_behind(tmp_path):
    from memtop.output.record import RecordReader

    path = tmp_path / "live.db"
    proc = subprocess.Popen([sys.executable, "-m", "memtop", "record", path, "--interval", "0.5", "--quiet"],
                            cwd=WORKTREE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until(lambda: path.exists() and os.path.exists(f"{path}-wal") and _ticks(path) >= 2, timeout=30)
        reader = RecordReader(path)  # a replay of the file being written
        try:
            assert reader.live
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            # THEN the recorder removed its -wal and -shm though the replay still has them open
            assert beside(path) == ["live.db"]
            # AND the open replay still reads, as does a new one (from the file alone)
            assert reader.load(len(reader) - 1).snapshot.processes
            reader.refresh()
            assert reader.load(len(reader) - 1).snapshot.processes
        finally:
            reader.close()
        after = RecordReader(path)
        try:
            assert not after.live and len(after) >= len(reader.seqs)
            after.verify()
        finally:
            after.close()
        assert beside(path) == ["live.db"]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _ticks(path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT count(*) FROM ticks").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_the_smallest_bound_holds_or_nothing_is_left(tmp_path):
    # The real machine's ticks may not fit in the smallest bound: then none is written (and the
    # file goes), else the file and its -wal stay under it
    path = tmp_path / "tiny.db"
    result = memtop("record", path, "--max-size", "64K", "--duration", "1", "--interval", "0.5")
    assert "Traceback" not in result.stderr
    if result.returncode == 0:
        assert sum(os.path.getsize(tmp_path / n) for n in beside(path)) <= 64 * 1024
    else:
        assert result.returncode == 1 and "not recorded" in result.stderr
        assert beside(path) == []


@pytest.mark.skipif(not IS_ROOT, reason="mounts a small tmpfs")
def test_on_a_full_disk_the_ticks_written_stay_readable_and_nothing_is_left_beside(tmp_path):
    # GIVEN a file system of 640 KiB or four times a 2-second recording of this machine: it fills after
    # about as many ticks again (a fixed size either held the first tick of 1,000 processes or
    # took a minute to fill with 150)
    sized = tmp_path / "sized.db"
    assert memtop("record", sized, "--interval", "0.5", "--duration", "2", "--quiet").returncode == 0
    size_kib = max(640, -(-4 * sized.stat().st_size // 4096) * 4)  # SQLite needs room for its -wal too
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "memtop-test-full", str(disk)],
                   check=True)
    try:
        path = disk / "rec.db"
        # WHEN memtop records into it until it is full (a bound far larger than the disk)
        result = memtop("record", path, "--max-size", "100M", "--interval", "0.5", "--duration", "120", "--quiet",
                        timeout=200)
        # THEN it stops with one line and status 1 ...
        text = one_line_failure(result)
        assert "disk is full" in text and "stay readable" in text
        # ... the file alone (no -wal, no -shm) holds the ticks written, whole
        assert beside(path) == ["rec.db"]
        check = memtop("replay", "--check", path)
        assert check.returncode == 0, check.stderr
        ticks = int(check.stdout.split(": ", 1)[1].split()[0])
        assert ticks >= 2 and f"the {ticks} ticks recorded" in text
        # AND a recording that cannot even be created on the full disk leaves nothing either
        again = disk / "again.db"
        one_line_failure(memtop("record", again, "--duration", "1", "--quiet"))
        assert beside(again) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
