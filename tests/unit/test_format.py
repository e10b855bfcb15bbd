from memtop.format import fmt_bytes, sparkline


def test_fmt_bytes_units_and_unknown():
    assert fmt_bytes(None) == "?"
    assert fmt_bytes(0) == "0 B"
    assert fmt_bytes(1536) == "1.50 KiB"
    assert fmt_bytes(64 * 2**20) == "64.0 MiB"
    assert fmt_bytes(-2 * 2**30, signed=True) == "-2.00 GiB"
    assert fmt_bytes(5, signed=True) == "+5 B"
    # never four digits before the unit: up a unit from 1,000 as shown
    assert fmt_bytes(999) == "999 B"
    assert fmt_bytes(1000) == "0.98 KiB"
    assert fmt_bytes(999 * 1024) == "999 KiB"
    assert fmt_bytes(int(999.6 * 1024)) == "0.98 MiB"
    assert fmt_bytes(1023 * 2**20) == "1.00 GiB"


def test_sparkline_scales_and_marks_unknown():
    assert sparkline([1, 2, 3], 3) == "▁▅█"
    assert sparkline([None, 5, 5], 3) == " ▁▁"
    assert sparkline([], 4) == "    "


def test_counted_says_one_arena_and_two_arenas():
    from memtop.format import counted

    assert [counted(n, "arena") for n in (0, 1, 2)] == ["0 arenas", "1 arena", "2 arenas"]
    assert counted(1, "process", "processes") == "1 process" and counted(3, "process", "processes") == "3 processes"
    assert counted(12_345, "file") == "12.3k files"


def test_a_clock_time_out_of_any_clock_is_unknown_not_a_traceback():
    """Recorded times reach time.localtime, which raises past its range (a crafted recording's
    Containers section gave a traceback in replay)."""
    import time

    from memtop.format import fmt_clock

    assert fmt_clock(0.0) == time.strftime("%H:%M:%S", time.localtime(0.0))
    for bad in (None, 1e17, 1.8e19, -1.8e19, float("nan")):
        assert fmt_clock(bad) == "?", bad


def test_the_oom_list_draws_a_crafted_recordings_times_as_unknown():
    from types import MappingProxyType

    from memtop.model.oom import OomEvent, OomSample, TimeToLimit
    from memtop.format import fmt_clock
    from memtop.tui.containers import oom_text

    eta = TimeToLimit(None, None, None, 60.0, 0, None, None, "MemAvailable", "no points")
    empty = OomSample(0.0, (), eta, MappingProxyType({}), None, MappingProxyType({}), since_wall=1e17)
    assert "watching since ?" in oom_text(empty).plain
    # a watch younger than the 10 minutes listed says since when it watches, not "the last 10 minutes"
    young = OomSample(0.0, (), eta, MappingProxyType({}), None, MappingProxyType({}), since_wall=1000.0, wall=1300.0)
    assert f"no OOM kill since {fmt_clock(1000.0)}, when memtop started watching" in oom_text(young).plain
    old = OomSample(0.0, (), eta, MappingProxyType({}), None, MappingProxyType({}), since_wall=1000.0, wall=1700.0)
    assert f"no OOM kill in the last 10 minutes (watching since {fmt_clock(1000.0)})" in oom_text(old).plain
    event = OomEvent(5.0, 1.8e19, 1.0, "cgroup", "", "/a", 1, MappingProxyType({"oom_kill": 1}))
    assert "seen ?: 1 kill in /a" in oom_text(OomSample(0.0, (event,), eta, MappingProxyType({}), None,
                                                         MappingProxyType({}))).plain
