"""Arena cap (arena.c arena_get2), environment settings, tuning state, the saving model."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from memtop.heap.arena_advice import (
    allocator_env,
    arena_cap,
    parse_cpu_list,
    predict_saving,
    setting_line,
    tuning_state,
)
from memtop.procfs.environ import parse_environ_file

MIB = 1 << 20


def test_environ_and_tunables():
    data = (b"PATH=/bin\0MALLOC_ARENA_MAX=2\0GLIBC_TUNABLES=glibc.malloc.arena_max=4:glibc.rtld.nns=2:"
            b"glibc.malloc.trim_threshold=65536\0MALLOC_ARENA_MAX=9\0NOEQUALS\0=x\0")
    environ = parse_environ_file(data)
    assert environ["MALLOC_ARENA_MAX"] == "2"  # getenv() returns the first
    env = allocator_env(environ)
    assert env.readable and env.get("MALLOC_ARENA_MAX") == "2"
    assert env.tunables == (("glibc.malloc.arena_max", "4"), ("glibc.malloc.trim_threshold", "65536"))
    assert env.arena_max_setting == "MALLOC_ARENA_MAX=2, GLIBC_TUNABLES glibc.malloc.arena_max=4"
    unreadable = allocator_env(None, "permission denied")
    assert not unreadable.readable and unreadable.reason == "permission denied"
    assert unreadable.arena_max_setting is None


@pytest.mark.parametrize("text, count", [("0-1", 2), ("0", 1), ("0-3,8,10-11", 7), ("", None), ("x", None)])
def test_parse_cpu_list(text, count):
    assert parse_cpu_list(text) == count


@pytest.mark.parametrize("arena_max, arena_test, cpus, limit", [
    (0, 8, 2, 16),  # 8 x 2 CPUs
    (0, 8, 1, 9),  # one CPU: arenas are created freely up to arena_test + 1
    (0, 8, 64, 512),
    (2, 8, 64, 2),  # MALLOC_ARENA_MAX wins
    (0, 20, 2, 21),
])
def test_arena_cap(arena_max, arena_test, cpus, limit):
    assert arena_cap(arena_max, arena_test, cpus).limit == limit


def test_arena_cap_unknown_cpus():
    cap = arena_cap(0, 8, None)
    assert cap.limit is None and "unknown" in cap.basis


@dataclass
class Mp:  # the fields of mp_ that tuning_state reads
    trim_threshold: int = 128 * 1024
    top_pad: int = 128 * 1024
    mmap_threshold: int = 128 * 1024
    arena_test: int = 8
    arena_max: int = 0
    no_dyn_threshold: int = 0
    n_mmaps: int = 0


def test_tuning_default_moved_and_fixed():
    default = tuning_state(Mp())
    assert not default.threshold_moved and default.dynamic_threshold
    assert "has not moved" in default.notes[0]
    moved = tuning_state(Mp(mmap_threshold=4 * MIB, trim_threshold=8 * MIB))
    assert moved.threshold_moved and "4 MiB" in moved.notes[0] and "8 MiB" in moved.notes[0]
    fixed = tuning_state(Mp(mmap_threshold=MIB, no_dyn_threshold=1, top_pad=0))
    assert not fixed.threshold_moved and not fixed.dynamic_threshold
    assert any("top_pad is 0 B" in n for n in fixed.notes)
    assert tuning_state(None) is None


@dataclass
class Arena:  # the walk's per-arena figures that the model uses
    is_main: bool
    resident_bytes: int | None
    in_use_bytes: int
    tcache_bytes: int = 0
    fastbin_bytes: int = 0


def test_saving_model():
    # main arena and 15 thread arenas with 3 MiB resident each, 100 KiB live each
    arenas = [Arena(True, 4 * MIB, 200 << 10)] + [Arena(False, 3 * MIB, 100 << 10) for _ in range(15)]
    p = predict_saving(arenas)
    slack = 3 * MIB - (100 << 10)
    assert p.thread_arenas == 15 and p.kept_slack_bytes == slack
    assert p.saving_bytes == 15 * 3 * MIB - 15 * (100 << 10) - slack
    # live data is spread evenly: 80 % of it needs 13 of the 16 arenas
    assert p.concentration_arenas == 13


def test_saving_model_concentrated_and_degenerate():
    arenas = [Arena(True, MIB, 10)] + [Arena(False, 64 * MIB, 60 * MIB)] + [Arena(False, 2 * MIB, 10) for _ in range(9)]
    p = predict_saving(arenas)
    assert p.concentration_arenas == 1
    assert p.kept_slack_bytes == 4 * MIB  # the big arena's slack is the largest
    assert p.saving_bytes == 64 * MIB + 18 * MIB - (60 * MIB + 90) - 4 * MIB
    assert predict_saving([Arena(True, MIB, 10), Arena(False, 5 * MIB, 10)]).saving_bytes == 0
    assert predict_saving([Arena(True, None, 10)]) is None


def test_setting_line():
    assert setting_line(["/usr/bin/app", "--name", "a b"], "0::/user.slice/session-1.scope\n") == \
        "MALLOC_ARENA_MAX=2 /usr/bin/app --name 'a b'"
    line = setting_line(["/usr/sbin/mysqld"], "12:memory:/system.slice/mysql.service\n0::/system.slice/mysql.service\n")
    assert line == "systemctl edit mysql.service  →  [Service] Environment=MALLOC_ARENA_MAX=2"
    assert "MALLOC_ARENA_MAX=2" in setting_line(None, None)
