"""Lines that break between words, never between a figure and its unit (memtop.tui.widgets.flow)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from rich.text import Text

from memtop.format import fmt_bytes
from memtop.tui.widgets import figure_words, flow, flow_text


def test_a_figure_keeps_its_unit_and_punctuation():
    words = [w.plain for _, w in figure_words("heap 20.8 MiB, top 1.00 MiB; 6 arenas in 0.26 s (12 %)")]
    assert words == ["heap", "20.8 MiB,", "top", "1.00 MiB;", "6", "arenas", "in", "0.26 s", "(12 %)"]


def test_lines_break_between_items_with_their_separators():
    items = [Text("■ file 6.00 MiB"), Text("■ other anon 976 KiB"), Text("■ stacks 32.0 KiB")]
    assert flow(items, 40, "  ").plain == "■ file 6.00 MiB  ■ other anon 976 KiB\n■ stacks 32.0 KiB"
    # (separator, item) sets the separator before that item; a "\n" item ends the line
    assert flow([Text("a"), ("   ", Text("b")), Text("\n"), Text("c")], 80).plain == "a   b\nc"
    # an item wider than the line gets a line of its own
    assert flow([Text("x"), Text("y" * 50), Text("z")], 10).plain == "x\n" + "y" * 50 + "\nz"


@given(st.lists(st.integers(min_value=0, max_value=2**50), min_size=1, max_size=30), st.integers(min_value=12, max_value=120))
def test_no_figure_is_ever_cut_from_its_unit(values, width):
    sentence = ", ".join(f"part {i} {fmt_bytes(v)}" for i, v in enumerate(values))
    lines = flow(figure_words(sentence), width).plain.split("\n")
    for line in lines:
        assert len(line) <= width
        # no line starts with a unit (cut from its figure)
        assert line.split(" ")[0] not in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "B,", "KiB,", "MiB,", "GiB,", "TiB,", "PiB,")
    assert " ".join(lines) == sentence


def test_flow_text_keeps_indents_and_comparisons_with_their_figures():
    text = " bi 0 B/s bo 12.0 KiB/s\n no thrashing: file refaults 8.78 KiB/s (thrashing: >= 1.00 MiB/s and >= 25%)"
    laid = flow_text(text, 60).plain
    assert laid == (" bi 0 B/s bo 12.0 KiB/s\n no thrashing: file refaults 8.78 KiB/s (thrashing:\n"
                    ">= 1.00 MiB/s and >= 25%)")
    # runs of spaces are kept: a sparkline's blank start
    assert flow_text(" refaults        ▁▁▁▁ THRASHING: 10.0 MiB/s", 80).plain == " refaults        ▁▁▁▁ THRASHING: 10.0 MiB/s"


def test_flow_text_keeps_each_words_style():
    text = Text("used ")
    text.append("473 MiB", style="bold")
    text.append(" of limit none; dirty 96.0 KiB)\n")
    text.append("▲ a finding", style="bold red")
    laid = flow_text(text, 30)
    assert laid.plain == "used 473 MiB of limit none;\ndirty 96.0 KiB)\n▲ a finding"
    style_at = [" ".join(str(s.style) for s in laid.spans if s.start <= i < s.end) for i in range(len(laid.plain))]

    def styles_of(words):
        at = laid.plain.index(words)
        return set(style_at[at:at + len(words)])

    assert styles_of("473 MiB") == {"bold"}
    assert styles_of("▲ a finding") == {"bold red"}  # the spaces between its words too
    assert styles_of("used ") == styles_of(" of limit none;") == {""}
