"""Which gdb memtop runs (memtop/heap/gdb.py gdb_path): never one another user can change, never
one too old to restore a process's registers on this CPU."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from memtop.heap import gdb as gdbmod
from memtop.heap.gdb import GdbUnavailable, cpu_has_amx, gdb_path, gdb_version
from tests.support import IS_ROOT

SYSTEM_GDB = "/usr/bin/gdb"  # Debian's package (13.1 on Debian 12)


def test_cpu_flags_are_read_from_cpuinfo():
    assert cpu_has_amx("processor : 0\nflags\t\t: fpu vme avx512f amx_bf16 amx_tile amx_int8\n")
    assert not cpu_has_amx("processor : 0\nflags\t\t: fpu vme avx2 avx512f\n")


@pytest.mark.skipif(not os.path.exists(SYSTEM_GDB), reason="Debian's gdb package is not installed")
def test_system_gdb_13_is_refused_exactly_on_a_cpu_with_amx(monkeypatch):
    """GIVEN Debian 12's gdb 13.1 (which fails with "Couldn't write extended state status" on AMX
    CPUs and leaves the process's vector registers unrestored)
    THEN memtop refuses it on such a CPU, with what to do, and uses it elsewhere."""
    version = gdb_version(SYSTEM_GDB)
    assert version is not None
    monkeypatch.setenv("MEMTOP_GDB", SYSTEM_GDB)
    gdbmod._gdb_checked.clear()
    if version[0] < 14 and cpu_has_amx():
        with pytest.raises(GdbUnavailable, match="cannot restore a process.s registers.*make setup. builds gdb"):
            gdb_path()
    else:
        assert gdb_path() == os.path.realpath(SYSTEM_GDB)


def test_the_gdb_memtop_picks_can_call_into_a_process(tmp_path):
    """The gdb memtop picks (after make setup) calls malloc_trim in a real process and restores it:
    the call returns and the process keeps running."""
    path = gdb_path()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = subprocess.run([path, "-nx", "-batch", "-p", str(child.pid), "-ex", "call (int)malloc_trim(0)"],
                             capture_output=True, text=True, timeout=60)
        assert "Couldn't write" not in out.stdout + out.stderr, out.stdout + out.stderr
        assert "$1 = " in out.stdout, out.stdout + out.stderr
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(not IS_ROOT, reason="root runs gdb; the check is about what root would run")
def test_a_gdb_another_user_can_change_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # any user could replace the file in it
    fake = shared / "gdb"
    shutil.copy(gdb_path(), fake)
    monkeypatch.setenv("MEMTOP_GDB", str(fake))
    gdbmod._gdb_checked.clear()
    with pytest.raises(GdbUnavailable, match="can be changed by another user"):
        gdb_path()
    shared.chmod(0o755)
    fake.chmod(0o757)
    with pytest.raises(GdbUnavailable, match="can be changed by another user"):
        gdb_path()
