"""The audit log as root among users who plant links and own directories (issue 15, item 3).

Up to a1cc421 root followed a symbolic link at ``$XDG_STATE_HOME/memtop`` or at
``actions.log`` and appended to (or created) whatever it pointed at, and wrote into a state
directory another user owned. Each case here plants the link or the directory for real and
checks that root's action leaves the victim file as it was, with one clear line saying why.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from memtop.actions import audit
from tests.support import IS_ROOT

pytestmark = [pytest.mark.live, pytest.mark.skipif(not IS_ROOT, reason="plants files owned by another user: needs root")]

NOBODY = 65534  # the `nobody` user of Debian (and most distributions)


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "state"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file of root's that no action of memtop should ever write."""
    path = tmp_path / "victim" / "precious"
    path.parent.mkdir(mode=0o700)
    path.write_text("root's data\n")
    return path


def log_once() -> str | None:
    return audit.log_action("evict", {"paths": ["/some/file"]}, prediction=None, result={"files": 1},
                            duration_s=0.01)


def test_a_plain_state_directory_gets_the_log(state):
    assert log_once() is None
    log = state / "memtop" / "actions.log"
    assert json.loads(log.read_text())["action"] == "evict"
    assert oct(log.stat().st_mode & 0o777) == "0o600" and oct((state / "memtop").stat().st_mode & 0o777) == "0o700"
    records, problems = audit.read_log()
    assert [r["action"] for r in records] == ["evict"] and problems == []


def test_a_symlinked_log_is_neither_appended_to_nor_followed(state, victim):
    # GIVEN actions.log planted as a link to root's file
    (state / "memtop").mkdir(mode=0o700)
    (state / "memtop" / "actions.log").symlink_to(victim)
    # WHEN an action is logged
    warning = log_once()
    # THEN the file is untouched and the warning says why, in one line
    assert victim.read_text() == "root's data\n"
    assert warning is not None and "\n" not in warning
    assert "did not write the audit log" in warning and "symbolic link" in warning
    # AND the log view does not read through it either
    records, problems = audit.read_log()
    assert records == [] and "symbolic link" in problems[0]


def test_a_dangling_symlinked_log_does_not_create_its_target(state, tmp_path):
    target = tmp_path / "victim-dir" / "created-by-root"
    target.parent.mkdir()
    (state / "memtop").mkdir(mode=0o700)
    (state / "memtop" / "actions.log").symlink_to(target)
    warning = log_once()
    assert not target.exists()
    assert "symbolic link" in warning


def test_a_symlinked_memtop_directory_is_refused(state, victim):
    # GIVEN $XDG_STATE_HOME/memtop planted as a link to the victim's directory
    (state / "memtop").symlink_to(victim.parent)
    warning = log_once()
    assert sorted(os.listdir(victim.parent)) == ["precious"]  # no actions.log was created there
    assert victim.read_text() == "root's data\n"
    assert "symbolic link" in warning and str(state / "memtop") in warning


def test_a_symlinked_state_directory_is_refused(tmp_path, monkeypatch, victim):
    link = tmp_path / "state-link"
    link.symlink_to(victim.parent)
    monkeypatch.setenv("XDG_STATE_HOME", str(link))
    warning = log_once()
    assert sorted(os.listdir(victim.parent)) == ["precious"]
    assert "symbolic link" in warning


@pytest.mark.parametrize("which", ["state", "memtop"])
def test_a_directory_owned_by_another_user_is_refused(state, which):
    # GIVEN the state directory (or its memtop/ subdirectory) owned by nobody
    memtop_dir = state / "memtop"
    memtop_dir.mkdir(mode=0o700)
    os.chown(state if which == "state" else memtop_dir, NOBODY, NOBODY)
    # WHEN root logs an action
    warning = log_once()
    # THEN nothing is written there, and the line says whose directory it is
    assert not (memtop_dir / "actions.log").exists()
    assert warning is not None and "\n" not in warning
    assert f"owned by uid {NOBODY}, not by you (uid 0)" in warning


def test_a_state_directory_owned_by_another_user_is_not_even_entered(tmp_path, monkeypatch):
    # GIVEN nobody's state directory, with no memtop/ yet
    state = tmp_path / "nobody-state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    warning = log_once()
    assert os.listdir(state) == []  # root did not create memtop/ in it
    assert f"owned by uid {NOBODY}" in warning


@pytest.mark.parametrize("which, mode, who", [("state", 0o777, "group and others"), ("state", 0o703, "others"),
                                              ("memtop", 0o770, "group")])
def test_a_directory_others_can_write_is_refused(state, which, mode, who):
    memtop_dir = state / "memtop"
    memtop_dir.mkdir(mode=0o700)
    (state if which == "state" else memtop_dir).chmod(mode)
    warning = log_once()
    assert not (memtop_dir / "actions.log").exists()
    assert f"writable by {who} (mode {mode:04o})" in warning


def test_a_log_owned_by_another_user_or_hard_linked_is_refused(state, victim):
    memtop_dir = state / "memtop"
    memtop_dir.mkdir(mode=0o700)
    os.link(victim, memtop_dir / "actions.log")  # a second name of root's file
    warning = log_once()
    assert victim.read_text() == "root's data\n"
    assert "2 links" in warning


def test_a_fifo_in_place_of_the_log_blocks_nothing(state):
    memtop_dir = state / "memtop"
    memtop_dir.mkdir(mode=0o700)
    os.mkfifo(memtop_dir / "actions.log", 0o600)
    outcome = {}

    def work():
        outcome["warning"] = log_once()
        outcome["read"] = audit.read_log()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "opening the log blocked"
    assert "not a regular file" in outcome["warning"] or "No such device" in outcome["warning"]
    assert outcome["read"][0] == []


def test_the_cli_says_why_on_stderr_and_still_acts(state, victim, tmp_path):
    # GIVEN a planted log link, WHEN root evicts a real file with the CLI
    import subprocess
    import sys

    (state / "memtop").mkdir(mode=0o700)
    (state / "memtop" / "actions.log").symlink_to(victim)
    data = tmp_path / "data"
    with open(data, "wb") as f:  # clean pages only (dirty ones would stay cached: exit 1)
        f.write(b"x" * 65536)
        os.fsync(f.fileno())
    done = subprocess.run([sys.executable, "-m", "memtop", "evict", str(data)], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[2], env=dict(os.environ))
    # THEN the eviction happened, the victim is untouched, and stderr has one line about the log
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "root's data\n"
    lines = [line for line in done.stderr.splitlines() if "audit log" in line]
    assert len(lines) == 1 and "symbolic link" in lines[0], done.stderr
