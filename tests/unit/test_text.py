"""memtop.text: the one helper that makes a system string safe for a terminal and for JSON."""

import json
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from memtop.text import json_safe, json_value, printable

UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def test_escape_sequences_become_visible():
    # GIVEN the names an unprivileged user can give a process (exec -a) or a file
    assert printable("x \x1b]0;TITLE\x07\x1b[2J") == "x \\e]0;TITLE\\a\\e[2J"
    assert printable("a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert printable("\x1b]52;c;aGk=\x07") == "\\e]52;c;aGk=\\a"  # OSC 52: clipboard write
    assert printable("del\x7f nul\x00 \x01") == "del\\x7f nul\\0 \\x01"


def test_c1_bidi_and_invalid_utf8():
    assert printable("csi\u009b2J") == "csi\\u009b2J"
    assert printable("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    assert printable("\u2066iso\u2069") == "\\u2066iso\\u2069"
    raw = b"bad\xff\xfename".decode("utf-8", "surrogateescape")
    assert printable(raw) == "bad\\xff\\xfename"
    assert printable("lone\ud800") == "lone\\ud800"


def test_printable_text_is_unchanged_and_limit_cuts_first():
    for text in ("python3 -m http.server", "日本語 é ñ", "a b", "[red]markup[/] is not our job here"):
        assert printable(text) == text
    assert printable("x" * 100, limit=10) == "x" * 9 + "…"
    assert printable(None) == ""


def test_json_value_is_exact_and_valid():
    raw = b"/tmp/bad\xffname"
    text = raw.decode("utf-8", "surrogateescape")
    value = json_value(text)
    assert value == list(raw)  # journalctl -o json's convention: the bytes
    encoded = json.dumps(json_safe({"path": text, "ok": "fine", text: 1}), ensure_ascii=False)
    encoded.encode("utf-8")  # strict: no lone surrogate can be encoded
    back = json.loads(encoded)
    assert bytes(back["path"]) == raw and back["ok"] == "fine"
    assert "/tmp/bad\\xffname" in back


@given(st.text())
def test_printable_leaves_nothing_that_acts_on_a_terminal(text):
    shown = printable(text)
    assert not any(unicodedata.category(ch) in UNSAFE for ch in shown)
    shown.encode("utf-8")


@given(st.binary())
def test_json_round_trips_any_bytes(raw):
    text = raw.decode("utf-8", "surrogateescape")
    value = json.loads(json.dumps(json_value(text)))
    got = bytes(value) if isinstance(value, list) else value.encode("utf-8")
    assert got == raw
