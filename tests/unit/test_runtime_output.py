"""The runtime section of explain: every string that came from the process (a GC's name from a
hostile hsperfdata file, a postgres backend's title) is escaped for the terminal and exact JSON."""

from __future__ import annotations

import json
from pathlib import Path

from memtop.model.runtime import Figure, Region, RuntimeReport, Unknown
from memtop.output.runtime import runtime_json, runtime_lines
from memtop.runtime.hsperfdata import parse_perfdata

CAPTURED = Path(__file__).resolve().parent.parent / "fixtures" / "hsperfdata" / "jdk17-g1.bin"


def _hostile_report() -> RuntimeReport:
    # The captured file with its GC name rewritten in place, as the JVM's user could.
    data = CAPTURED.read_bytes().replace(b"GarbageFirst", b"\x1b]0;PWN\x07\xff\xfeXY")  # same length
    gc_name = parse_perfdata(data).string("sun.gc.policy.name")
    assert "\x1b" in gc_name
    return RuntimeReport("jvm", "17\x1b[2J", "ok", None, "/tmp/hsperfdata_x/1\x9b2J",
                         (Figure("gc_policy", "garbage collector", gc_name, "text", "hsperfdata sun.gc.policy.name"),
                          Figure("role", "process \u202e", "idle\nin transaction", "text", "cmdline")),
                         (Region("java_heap", "Java heap", 0x1000, 0x2000, 4096, "maps"),),
                         (Unknown("x\x1b", "y\x07"),))


def test_text_lines_escape_what_could_act_on_a_terminal():
    text = "\n".join(runtime_lines(_hostile_report()))
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text and "\u202e" not in text
    assert "\\e]0;PWN\\a\\xff\\xfeXY" in text and "idle\\nin transaction" in text and "17\\e[2J" in text


def test_json_is_valid_and_exact():
    doc = runtime_json(_hostile_report())
    text = json.dumps(doc, ensure_ascii=False)
    back = json.loads(text)
    value = back["figures"]["gc_policy"]["value"]
    assert isinstance(value, list) and bytes(value) == b"\x1b]0;PWN\x07\xff\xfeXY"  # not UTF-8: its bytes
    assert back["figures"]["role"]["value"] == "idle\nin transaction"  # valid UTF-8 stays a string
