"""The guard's settings: flags, the TOML file (and its safety checks), the allow/deny rules."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from memtop.guard.config import (
    ConfigError,
    ProcessFacts,
    Rules,
    UnsafeConfig,
    build_config,
    parse_seconds,
    parse_size,
    read_config_file,
)

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0

EXAMPLE = """
dry_run = false
trigger = "some 150000 2000000"
min_release = "64M"
cooldown = "10m"
max_stops_per_minute = 2
walk_budget = 3
[allow]
cgroups = ["/workload/*"]
[deny]
names = ["postgres*"]
users = ["0"]
[evict]
paths = ["/var/log/*.log"]
interval = "2m"
[metrics]
listen = "127.0.0.1:9106"
"""


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_defaults_are_a_dry_run_on_the_system_trigger():
    config = build_config()
    assert config.dry_run is True
    assert config.trigger.text() == "some 100000 1000000" and config.pressure_cgroup is None
    assert config.min_release_bytes == 32 << 20 and config.cooldown_s == 300 and config.max_stops_per_minute == 4
    assert config.rules == Rules() and config.evict_globs == ()


def test_the_file_sets_everything_and_flags_win_while_lists_add_up(tmp_path):
    path = write(tmp_path / "guard.toml", EXAMPLE)
    table = read_config_file(str(path))
    config = build_config(table, config_file=str(path))
    assert config.dry_run is False and config.trigger.text() == "some 150000 2000000"
    assert config.min_release_bytes == 64 << 20 and config.cooldown_s == 600 and config.max_stops_per_minute == 2
    assert config.walk_budget_s == 3 and config.evict_interval_s == 120
    assert config.rules.allow_cgroups == ("/workload/*",) and config.rules.deny_names == ("postgres*",)
    assert config.rules.deny_uids == (0,) and config.evict_globs == ("/var/log/*.log",)
    assert config.metrics_listen == ("127.0.0.1", 9106)
    # a flag wins over the file; lists from both add up
    config = build_config(table, config_file=str(path), dry_run=True, min_release="8M", deny_names=["java"],
                          evict=["/backup/*.tar"])
    assert config.dry_run is True and config.min_release_bytes == 8 << 20
    assert config.rules.deny_names == ("postgres*", "java")
    assert config.evict_globs == ("/var/log/*.log", "/backup/*.tar")


@pytest.mark.parametrize("table, complaint", [
    ({"min_relase": "1M"}, "unknown setting 'min_relase'"),
    ({"deny": {"name": ["x"]}}, "unknown setting 'name'"),
    ({"dry_run": "no"}, "dry_run: expected true or false"),
    ({"trigger": "some 1 1"}, "trigger: the window must be"),
    ({"min_release": "lots"}, "not a size"),
    ({"cooldown": -1}, "cooldown: must be between"),
    ({"max_stops_per_minute": 0}, "must be between 1 and 60"),
    ({"allow": {"cgroups": ["workload"]}}, "starts with '/'"),
    ({"deny": {"users": ["no-such-user-memtop"]}}, "unknown user"),
    ({"evict": {"paths": ["relative/*.log"]}}, "must be absolute"),
    ({"metrics": {"listen": "localhost"}}, "expected HOST:PORT"),
    ({"pressure_cgroup": "/a/../b"}, "cgroup v2 path"),
])
def test_bad_settings_are_one_line_errors(table, complaint):
    with pytest.raises(ConfigError) as e:
        build_config(table)
    assert complaint in str(e.value) and "\n" not in str(e.value)


def test_sizes_and_durations():
    assert parse_size("1.5G") == 3 << 29 and parse_size(4096) == 4096 and parse_size("500K") == 500 << 10
    assert parse_seconds("90s") == 90 and parse_seconds("5m") == 300 and parse_seconds(2.5) == 2.5
    for bad in ("nan", "inf", "1e9", True):
        with pytest.raises(ConfigError):
            parse_seconds(bad)


# --- the file's safety -----------------------------------------------------------------------------


def test_a_symbolic_link_is_never_followed(tmp_path):
    real = write(tmp_path / "real.toml", "dry_run = false\n")
    os.symlink(real, tmp_path / "link.toml")
    with pytest.raises(UnsafeConfig) as e:
        read_config_file(str(tmp_path / "link.toml"))
    assert "symbolic link" in str(e.value)


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_a_file_others_can_write_is_refused(tmp_path, mode):
    path = write(tmp_path / "guard.toml", "dry_run = false\n", mode)
    with pytest.raises(UnsafeConfig) as e:
        read_config_file(str(path))
    assert "writable by group or others" in str(e.value)


@pytest.mark.skipif(not IS_ROOT, reason="chown to another user needs root")
def test_a_file_owned_by_another_user_is_refused(tmp_path):
    path = write(tmp_path / "guard.toml", "dry_run = false\n")
    os.chown(path, 65534, 65534)
    with pytest.raises(UnsafeConfig) as e:
        read_config_file(str(path))
    assert "owned by uid 65534" in str(e.value)


def test_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "guard.toml"
    os.mkfifo(fifo, 0o600)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(_try_read(str(fifo))), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert outcome and "not a regular file" in outcome[0]


def _try_read(path: str) -> str:
    try:
        read_config_file(path)
    except (UnsafeConfig, ConfigError) as e:
        return str(e)
    return "read"


def test_a_huge_or_binary_file_is_refused(tmp_path):
    big = write(tmp_path / "big.toml", "# " + "x" * (1 << 20) + "\n")
    with pytest.raises(UnsafeConfig):
        read_config_file(str(big))
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"dry_run = \xff\n")
    os.chmod(binary, 0o644)
    with pytest.raises(ConfigError) as e:
        read_config_file(str(binary))
    assert "not UTF-8" in str(e.value)


# --- rules ---------------------------------------------------------------------------------------------


def facts(comm="worker", uid=1000, cgroups=("/workload/a", "/")) -> ProcessFacts:
    return ProcessFacts(100, comm, uid, cgroups)


def test_deny_wins_over_allow():
    rules = Rules(allow_names=("work*",), deny_names=("worker",))
    assert "deny" in rules.exclusion(facts())
    assert rules.exclusion(facts(comm="workhorse")) is None


def test_every_allow_kind_that_is_set_must_match():
    rules = Rules(allow_cgroups=("/workload/*",), allow_uids=(1000,))
    assert rules.exclusion(facts()) is None
    assert rules.exclusion(facts(uid=1001)) == "user matches no allow entry"
    assert rules.exclusion(facts(cgroups=("/other", "/"))) == "cgroup matches no allow entry"
    assert "cgroup unknown" in rules.exclusion(facts(cgroups=()))


def test_cgroup_globs_match_the_memory_or_the_v2_path_and_deny_by_uid():
    rules = Rules(deny_cgroups=("/system.slice/*",), deny_uids=(0,))
    assert "cgroup /system.slice/sshd.service" in rules.exclusion(facts(cgroups=("/", "/system.slice/sshd.service")))
    assert rules.exclusion(facts(uid=0)) == "uid 0 is denied"
    assert Rules().exclusion(facts(uid=None, cgroups=())) is None


# --- the command line ----------------------------------------------------------------------------------


def memtop_guard(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "memtop", "guard", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args, complaint", [
    (["--trigger", "lots"], "trigger: a PSI trigger is"),
    (["--min-release", "-1"], "not a size"),
    (["--cooldown", "soon"], "cooldown: not a duration"),
    (["--max-stops-per-minute", "1000"], "must be between 1 and 60"),
    (["--allow-cgroup", "workload"], "starts with '/'"),
    (["--duration", "-1"], "--duration must be more than 0"),
    (["--inject-events-fd", "999"], "not an open file descriptor"),
])
def test_bad_flags_are_usage_errors(args, complaint):
    done = memtop_guard(*args)
    assert done.returncode == 2, done.stderr
    assert complaint in done.stderr and len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr


def test_an_unsafe_or_invalid_config_file_is_one_line(tmp_path):
    writable = write(tmp_path / "w.toml", "dry_run = true\n", 0o666)
    done = memtop_guard("--config", str(writable))
    assert done.returncode == 1 and "writable by group or others" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    typo = write(tmp_path / "t.toml", "[deny]\nname = ['x']\n")
    done = memtop_guard("--config", str(typo))
    assert done.returncode == 2 and "unknown setting 'name'" in done.stderr
    missing = memtop_guard("--config", str(tmp_path / "none.toml"))
    assert missing.returncode == 1 and "No such file" in missing.stderr


def test_act_without_a_usable_gdb_is_refused_before_anything(tmp_path):
    env = dict(os.environ, MEMTOP_GDB=str(tmp_path / "no-gdb"))
    done = subprocess.run([sys.executable, "-m", "memtop", "guard", "--act"], cwd=REPO, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, env=env)
    assert done.returncode == 1 and "cannot act: gdb is not installed" in done.stderr
    assert done.stdout == ""


def test_read_only_allows_only_a_dry_run():
    done = subprocess.run([sys.executable, "-m", "memtop", "--read-only", "guard", "--act"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1 and "can only --dry-run" in done.stderr
