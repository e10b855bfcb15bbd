"""Live: contrib/systemd/memtop-guard.service's hardening is enough for the guard to act.

systemd is not PID 1 where these tests run, so the unit is not started; instead the guard runs
under the same restrictions, applied by hand: no_new_privs and the unit's capability bounding set
(setpriv), and memory-deny-write-execute (prctl PR_SET_MDWE, the kernel's version of
MemoryDenyWriteExecute), and trims another user's process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from memtop.guard.config import build_config, read_config_file
from tests.actions_support import target_binary
from tests.guard_support import GuardProcess, status_bytes
from tests.support import IS_ROOT, Child

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "contrib" / "systemd" / "memtop-guard.service"
EXAMPLE = REPO / "contrib" / "systemd" / "guard.toml"

pytestmark = [pytest.mark.live, pytest.mark.skipif(not IS_ROOT, reason="runs the guard as root with fewer capabilities")]


def unit_settings() -> dict[str, str]:
    settings = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings[key] = value
    return settings


def test_the_unit_file_is_valid_for_systemd(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / "memtop-guard.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/memtop", str(Path(sys.executable).parent / "memtop")))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "memtop-guard.service" not in done.stderr  # no warning about this unit


def test_the_example_config_loads(tmp_path):
    copy = tmp_path / "guard.toml"
    shutil.copy(EXAMPLE, copy)
    os.chmod(copy, 0o644)
    config = build_config(read_config_file(str(copy)), config_file=str(copy))
    assert config.dry_run is True and config.trigger.text() == "some 100000 1000000"


def test_the_guard_trims_another_users_process_under_the_units_restrictions(tmp_path, state_home_tmp, gcc):
    settings = unit_settings()
    assert settings["NoNewPrivileges"] == "yes" and settings["MemoryDenyWriteExecute"] == "yes"
    caps = [c.lower().removeprefix("cap_") for c in settings["CapabilityBoundingSet"].split()]
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    # GIVEN a process of user nobody, with 48 MiB of free-but-kept heap
    directory = Path(tempfile.mkdtemp(prefix="memtop-guard-unit-", dir="/var/tmp"))
    os.chmod(directory, 0o755)  # nobody must reach it
    binary = directory / "gd-nobody"
    shutil.copy(target_binary(), binary)
    os.chmod(binary, 0o711)  # executable, not readable, by others: gdb reads it with CAP_DAC_READ_SEARCH
    child = Child(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", binary, "48"])
    try:
        before = status_bytes(child.pid, "RssAnon")
        # WHEN the guard runs with no_new_privs, the unit's bounding set only, and MDWE
        wrapper = ("import ctypes, os, sys\n"
                   "libc = ctypes.CDLL(None, use_errno=True)\n"
                   "if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN\n"
                   "    sys.exit('PR_SET_MDWE: errno %d' % ctypes.get_errno())\n"
                   "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n")
        restricted = ["setpriv", "--no-new-privs", "--inh-caps=-all",
                      "--bounding-set=-all," + ",".join("+" + c for c in caps), sys.executable, "-c", wrapper]
        guard = GuardProcess("--act", "--allow-name", "gd-nobody", "--min-release", "16M", "--no-idle-walks",
                             "--trigger", "some 200000 2000000", inject=True, python=restricted)
        try:
            guard.wait_event("start")
            guard.inject()
            (event,) = guard.wait_event("trim")
            assert guard.stop() == 0
        finally:
            guard.close()
        # THEN the trim went through as it does with every capability
        assert event["status"] == "ok", event
        assert status_bytes(child.pid, "RssAnon") < before - 40 * 2**20
        assert child.alive() and child.ask("ping") == "pong"
    finally:
        child.close()
        shutil.rmtree(directory)


@pytest.fixture
def state_home_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
