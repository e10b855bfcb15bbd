from memtop.format import fmt_bytes, sparkline


def test_fmt_bytes_units_and_unknown():
    assert fmt_bytes(None) == "?"
    assert fmt_bytes(0) == "0 B"
    assert fmt_bytes(1536) == "1.50 KiB"
    assert fmt_bytes(64 * 2**20) == "64.0 MiB"
    assert fmt_bytes(-2 * 2**30, signed=True) == "-2.00 GiB"
    assert fmt_bytes(5, signed=True) == "+5 B"


def test_sparkline_scales_and_marks_unknown():
    assert sparkline([1, 2, 3], 3) == "▁▅█"
    assert sparkline([None, 5, 5], 3) == " ▁▁"
    assert sparkline([], 4) == "    "


def test_counted_says_one_arena_and_two_arenas():
    from memtop.format import counted

    assert [counted(n, "arena") for n in (0, 1, 2)] == ["0 arenas", "1 arena", "2 arenas"]
    assert counted(1, "process", "processes") == "1 process" and counted(3, "process", "processes") == "3 processes"
    assert counted(12_345, "file") == "12.3k files"
