"""Parsers and readers of PSI and memory cgroup files, on text captured here (v1, PSI) and on
hand-written v2 text (tests/fixtures/pressure/README says which is which)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memtop.model.pressure import PressureSample, PsiLine, PsiResource, StallRate, stall_rate, stall_series
from memtop.procfs import NoSuchProcess, ParseError, ProcfsError
from memtop.procfs.cgroup import (
    MemoryHierarchy,
    locate_memory_hierarchy,
    memory_cgroup_of,
    parse_cgroup_file,
    parse_flat_keyed_file,
    parse_limit_value,
    parse_mountinfo_cgroups,
    read_cgroup_memory,
    walk_memory_cgroups,
)
from memtop.procfs.pressure import (
    has_cap_sys_resource,
    parse_pressure_file,
    parse_trigger_spec,
    pressure_unavailable_reason,
    read_system_pressure,
    unprivileged_spec,
)

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "pressure"


# --- PSI ------------------------------------------------------------------------------------------


def test_captured_memory_pressure_parses_both_lines():
    psi = parse_pressure_file((FIX / "proc-pressure" / "memory").read_text())
    assert psi.some == PsiLine(5.97, 1.08, 0.27, 1791050)
    assert psi.full == PsiLine(1.81, 0.32, 0.11, 940907)


def test_captured_cpu_pressure_has_a_full_line_of_zeros():
    psi = parse_pressure_file((FIX / "proc-pressure" / "cpu").read_text())
    assert psi.full is not None and psi.full.total_us == 0
    assert psi.some.total_us > 0


def test_cpu_file_without_full_line_before_linux_5_13():
    psi = parse_pressure_file("some avg10=1.00 avg60=0.50 avg300=0.10 total=12345\n")
    assert psi.full is None
    assert psi.some.total_us == 12345


@pytest.mark.parametrize("text", [
    "",
    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    "some avg10=x avg60=0.00 avg300=0.00 total=0\n",
    "some avg10=0.00 avg60=0.00 total=0\n",
    "some 0.00 0.00 0.00 0\n",
    "partial avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
])
def test_malformed_pressure_text_is_a_parse_error(text):
    with pytest.raises(ParseError):
        parse_pressure_file(text, "/proc/pressure/memory")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_pressure_text_parses_or_raises_parse_error(text):
    try:
        psi = parse_pressure_file(text)
    except ParseError:
        return
    assert isinstance(psi, PsiResource)


def test_system_pressure_from_the_captured_tree():
    sample = read_system_pressure(FIX / "tree" / "proc", now=5.0)
    assert sorted(sample.resources) == ["cpu", "io", "memory"]
    assert sample.resources["memory"].full.avg10 == 1.81
    assert dict(sample.unknown) == {}
    assert sample.time == 5.0


def test_a_root_without_pressure_says_why(tmp_path):
    reason = pressure_unavailable_reason(tmp_path)
    assert "CONFIG_PSI" in reason and "psi=" in reason
    sample = read_system_pressure(tmp_path)
    assert sample.resources == {}
    assert set(sample.unknown) == {"memory", "io", "cpu"}
    assert sample.unknown["memory"] == reason


def test_stall_ms_per_second_from_totals():
    before = PsiResource(PsiLine(0, 0, 0, 1_000_000), PsiLine(0, 0, 0, 500_000))
    after = PsiResource(PsiLine(0, 0, 0, 1_400_000), PsiLine(0, 0, 0, 600_000))
    # 400 ms of some-stall in 2 s = 200 ms/s; 100 ms full in 2 s = 50 ms/s.
    assert stall_rate(before, after, 2.0) == StallRate(200.0, 50.0)
    assert stall_rate(before, after, 0.0) is None


def test_stall_series_skips_a_sample_missing_the_resource():
    line = lambda total: PsiResource(PsiLine(0, 0, 0, total), None)  # noqa: E731
    samples = [PressureSample(0.0, {"memory": line(0)}), PressureSample(1.0, {}),
               PressureSample(2.0, {"memory": line(3000)}), PressureSample(4.0, {"memory": line(7000)})]
    assert stall_series(samples, "memory") == [(2.0, 1.5, None), (4.0, 2.0, None)]


def test_stall_series_skips_a_reading_milliseconds_after_the_previous():
    line = lambda total: PsiResource(PsiLine(0, 0, 0, total), PsiLine(0, 0, 0, total // 2))  # noqa: E731
    # A trigger wake read at 2.01 s right after the tick read at 2.0 s: the rate spans 0 -> 4 s.
    samples = [PressureSample(0.0, {"memory": line(0)}), PressureSample(2.0, {"memory": line(400_000)}),
               PressureSample(2.01, {"memory": line(400_000)}), PressureSample(4.0, {"memory": line(1_000_000)})]
    assert stall_series(samples, "memory") == [(2.0, 200.0, 100.0), (4.0, 300.0, 150.0)]


# --- triggers -------------------------------------------------------------------------------------


def test_trigger_spec_default_and_errors():
    spec = parse_trigger_spec("some 100000 1000000")
    assert (spec.kind, spec.threshold_us, spec.window_us) == ("some", 100000, 1000000)
    assert spec.text() == "some 100000 1000000"
    assert spec.describe() == "some 100 ms per 1 s window"
    for bad in ("", "some", "most 1 1000000", "some x 1000000", "some 100000 100000000", "some 0 1000000",
                "full 2000000 1000000", "some 100 1000 extra"):
        with pytest.raises(ValueError):
            parse_trigger_spec(bad)


def test_unprivileged_spec_rounds_the_window_to_2_s_and_keeps_the_share():
    assert unprivileged_spec(parse_trigger_spec("some 100000 1000000")).text() == "some 200000 2000000"
    assert unprivileged_spec(parse_trigger_spec("full 150000 3000000")).text() == "full 200000 4000000"
    assert unprivileged_spec(parse_trigger_spec("some 500000 2000000")).text() == "some 500000 2000000"
    assert unprivileged_spec(parse_trigger_spec("some 9000000 9500000")).text() == "some 9473684 10000000"


def test_cap_sys_resource_from_status_text():
    # This machine's CapEff (captured): every capability except CAP_SYS_RESOURCE (bit 24).
    assert has_cap_sys_resource("CapEff:\t000001fffeffffff\n") is False
    assert has_cap_sys_resource("CapEff:\t000001ffffffffff\n") is True
    assert has_cap_sys_resource("Name: x\n") is False


# --- /proc/PID/cgroup and mountinfo ---------------------------------------------------------------


def test_captured_v1_proc_cgroup():
    lines = parse_cgroup_file((FIX / "proc-self-cgroup").read_text())
    memory = [line for line in lines if "memory" in line.controllers]
    assert len(memory) == 1 and memory[0].path.startswith("/process_api/")
    assert lines[-1].hierarchy_id == 0 and lines[-1].controllers == () and lines[-1].path == "/"
    named = [line for line in lines if line.controllers == ("name=systemd",)]
    assert named and named[0].hierarchy_id == 9


def test_v2_proc_cgroup():
    (line,) = parse_cgroup_file((FIX / "v2" / "proc-pid-cgroup").read_text())
    assert (line.hierarchy_id, line.controllers, line.path) == (0, (), "/system.slice/postgresql.service")


def test_malformed_proc_cgroup():
    with pytest.raises(ParseError):
        parse_cgroup_file("garbage\n")
    with pytest.raises(ParseError):
        parse_cgroup_file("x:memory:/a\n")


def test_captured_mountinfo_has_v1_memory_and_empty_v2():
    mounts = parse_mountinfo_cgroups((FIX / "proc-self-mountinfo").read_text())
    memory = [m for m in mounts if "memory" in m.super_options]
    assert [(m.mount_point, m.fstype, m.root) for m in memory] == [("/sys/fs/cgroup/memory", "cgroup", "/")]
    assert [m.mount_point for m in mounts if m.fstype == "cgroup2"] == ["/sys/fs/cgroup/unified"]


def test_mountinfo_escapes_and_non_cgroup_lines():
    text = ("24 1 252:1 / / rw - ext4 /dev/vda1 rw\n"
            "40 24 0:35 /kubepods/pod1 /sys/fs/cgroup/my\\040dir rw - cgroup2 cgroup2 rw\n")
    (mount,) = parse_mountinfo_cgroups(text)
    assert mount.mount_point == "/sys/fs/cgroup/my dir" and mount.root == "/kubepods/pod1"


def test_locate_v1_in_the_captured_tree_and_map_a_process():
    root = FIX / "tree" / "proc"
    hierarchy = locate_memory_hierarchy(root)
    assert hierarchy.version == 1
    assert hierarchy.directory == FIX / "tree" / "sys/fs/cgroup/memory"
    assert hierarchy.mount_point == "/sys/fs/cgroup/memory"
    pids = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit())
    paths = {memory_cgroup_of(pid, hierarchy, root) for pid in pids}
    assert "/memtop-test" in paths


def test_locate_v2_in_the_written_tree():
    root = FIX / "v2tree" / "proc"
    hierarchy = locate_memory_hierarchy(root)
    assert (hierarchy.version, hierarchy.mount_root) == (2, "/")
    assert memory_cgroup_of(4242, hierarchy, root) == "/system.slice/postgresql.service"


def test_locate_without_memory_controller_says_why(tmp_path):
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "mountinfo").write_text(
        "30 24 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    (tmp_path / "sys" / "fs" / "cgroup").mkdir(parents=True)
    (tmp_path / "sys" / "fs" / "cgroup" / "cgroup.controllers").write_text("cpu io pids\n")
    with pytest.raises(ProcfsError, match="no memory cgroup controller.*no memory controller"):
        locate_memory_hierarchy(tmp_path / "proc")


def test_cgroup_namespace_mount_root():
    h = MemoryHierarchy(2, Path("/sys/fs/cgroup"), "/kubepods/pod1")
    assert h.directory_of("/kubepods/pod1/app") == Path("/sys/fs/cgroup/app")
    assert h.directory_of("/kubepods/pod1") == Path("/sys/fs/cgroup")
    assert h.directory_of("/kubepods/pod2") is None
    assert h.path_of(Path("/sys/fs/cgroup/app")) == "/kubepods/pod1/app"


# --- memory files -----------------------------------------------------------------------------------


def test_limit_values():
    assert parse_limit_value("max\n") is None
    assert parse_limit_value("9223372036854771712\n") is None  # v1's "no limit" (captured)
    assert parse_limit_value("33554432\n") == 32 << 20
    with pytest.raises(ParseError):
        parse_limit_value("lots\n")


def test_flat_keyed_errors():
    assert parse_flat_keyed_file("a 1\n\nb 2\n") == {"a": 1, "b": 2}
    with pytest.raises(ParseError):
        parse_flat_keyed_file("a 1 2\n")
    with pytest.raises(ParseError):
        parse_flat_keyed_file("a x\n")


def test_captured_v1_limited_cgroup():
    h = MemoryHierarchy(1, FIX / "v1")
    cg = read_cgroup_memory(h, "/limited")
    assert cg.version == 1 and cg.path == "/limited" and cg.name == "limited"
    assert cg.max == 32 << 20
    assert cg.current == int((FIX / "v1/limited/memory.usage_in_bytes").read_text())
    assert cg.usage_fraction > 0.9 and cg.headroom == cg.max - cg.current
    assert cg.events["oom_kill"] == 1 and cg.events["failcnt"] > 1000 and cg.events["under_oom"] == 0
    raw = cg.raw_stat
    # v1 -> v2 names: hierarchical total_rss is anon, total_cache is file.
    assert cg.stat["anon"] == raw["total_rss"] and cg.stat["file"] == raw["total_cache"]
    assert cg.stat["kernel"] == int((FIX / "v1/limited/memory.kmem.usage_in_bytes").read_text())
    assert cg.swap_current == raw["total_swap"] == 0  # memory.stat's swap; no swap on this machine
    assert cg.memsw_limit is None and cg.soft_limit is None  # both "unlimited"
    assert cg.max_usage == 32 << 20
    assert cg.pressure is None and "per-cgroup memory.pressure" in cg.unknown["pressure"]
    assert cg.high is None and "memory.high" in cg.unknown["high"]


def test_captured_v1_root_is_unlimited():
    cg = read_cgroup_memory(MemoryHierarchy(1, FIX / "v1"), "/root")
    assert cg.max is None and "max" not in cg.unknown
    assert cg.usage_fraction is None and cg.headroom is None


def test_written_v2_cgroup():
    h = MemoryHierarchy(2, FIX / "v2tree" / "sys/fs/cgroup")
    cg = read_cgroup_memory(h, "/system.slice/postgresql.service")
    assert (cg.current, cg.max, cg.high, cg.low, cg.min) == (267386880, 256 << 20, 240 << 20, 0, 0)
    assert cg.swap_current == 0 and cg.swap_max is None
    assert dict(cg.events) == {"low": 0, "high": 1843, "max": 340, "oom": 2, "oom_kill": 1, "oom_group_kill": 0}
    assert cg.stat["anon"] == 205520896 and cg.stat["sock"] == 4096 and cg.stat["slab"] == 8 << 20
    assert "pgfault" not in cg.stat and cg.raw_stat["pgfault"] == 5123456
    assert cg.pressure.full.avg10 == 1.10
    assert dict(cg.unknown) == {}


def test_v2_root_has_no_memory_current():
    h = MemoryHierarchy(2, FIX / "v2tree" / "sys/fs/cgroup")
    cg = read_cgroup_memory(h, "/")
    assert cg.current is None and "root cgroup has no memory.current" in cg.unknown["current"]
    assert cg.stat["file"] == 4 << 30


def test_removed_cgroup_is_no_such_process(tmp_path):
    with pytest.raises(NoSuchProcess):
        read_cgroup_memory(MemoryHierarchy(2, tmp_path), "/gone")


def test_walk_the_v2_tree_parents_first():
    h = MemoryHierarchy(2, FIX / "v2tree" / "sys/fs/cgroup")
    tree = walk_memory_cgroups(h)
    assert [c.path for c in tree] == ["/", "/system.slice", "/system.slice/postgresql.service", "/user.slice"]
    assert [c.depth for c in tree] == [0, 1, 2, 1]
    assert tree[2].stat == {}  # the walk skips memory.stat


def test_walk_the_captured_v1_tree():
    h = locate_memory_hierarchy(FIX / "tree" / "proc")
    paths = [c.path for c in walk_memory_cgroups(h)]
    assert paths[0] == "/" and "/memtop-test" in paths and any(p.startswith("/process_api/") for p in paths)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_fuzzed_cgroup_texts_parse_or_raise_parse_error(text):
    for parser in (parse_cgroup_file, parse_flat_keyed_file, parse_limit_value):
        try:
            parser(text)
        except ParseError:
            pass
    parse_mountinfo_cgroups(text)  # skips what it does not understand
