"""malloc_info(3) XML parser: the real output of a 16-thread process on this machine, edge cases,
and hypothesis fuzzing (truncated input, unknown elements, huge numbers, arbitrary text)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memtop.heap.malloc_info import parse_malloc_info
from memtop.procfs import ParseError

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "arenas" / "malloc_info_16threads.xml"
REAL = FIXTURE.read_text()
# Boundaries between elements of the real document (where an unknown element may be inserted).
BOUNDARIES = [m.end() for m in re.finditer(r">\n", REAL)][:-1]


def test_real_output_of_sixteen_threads():
    # GIVEN malloc_info of the 16-thread target (glibc 2.36, Debian: with <aspace type="subheaps">)
    info = parse_malloc_info(REAL)
    # THEN every arena is there, in order, and the per-arena system bytes add up to the total
    assert info.version == "1"
    assert len(info.arenas) == 16
    assert [a.nr for a in info.arenas] == list(range(16))
    assert sum(a.system_current for a in info.arenas) == info.system_current == 53354496
    main = info.arenas[0]
    assert main.aspace_subheaps is None  # glibc prints subheaps only for thread arenas
    assert all(a.aspace_subheaps == 1 for a in info.arenas[1:])
    assert info.mmap_count == 0 and info.mmap_bytes == 0
    # the per-arena <sizes> lines add up to <total type="rest"> minus the top chunk, which glibc
    # counts in "rest" (one chunk more; here main_arena's top is 51488 bytes)
    for arena in info.arenas:
        assert sum(s.count for s in arena.sizes) + 1 == arena.rest_count + arena.fast_count
        assert sum(s.total_bytes for s in arena.sizes) < arena.rest_bytes + arena.fast_bytes
    assert main.rest_bytes - sum(s.total_bytes for s in main.sizes) == 51488
    assert info.rest_bytes == sum(a.rest_bytes for a in info.arenas)
    assert info.unknown == () and all(a.unknown == () for a in info.arenas)
    assert any(s.kind == "unsorted" for s in info.arenas[1].sizes)


def test_bytes_input_and_xml_declaration():
    info = parse_malloc_info(b'<?xml version="1.0"?>\n' + REAL.encode())
    assert len(info.arenas) == 16


@pytest.mark.parametrize("text, message", [
    ("", "empty document"),
    ("   \n", "empty document"),
    ("<malloc>", "not closed"),
    ('<malloc version="1">\n<heap nr="0">\n', "<heap> opened at offset"),
    ('<malloc><heap nr="0"><sizes><size from="33" to="33" tot', "is not closed"),
    ("<heap></heap>", "not <malloc>"),
    ('<malloc><heap nr="x"></heap></malloc>', "not a number"),
    ('<malloc><total type="fast" count="1e9" size="2"/></malloc>', "not a number"),
    ("<malloc></heap></malloc>", "closes malloc"),
    ("<malloc>hello</malloc>", "unexpected text"),
    ("<malloc></malloc><malloc></malloc>", "second root"),
    ('<malloc><size from="1" from="2"/></malloc>', "twice"),
    ('<malloc><!ENTITY a "b"></malloc>', "malformed tag"),
    ('<malloc><heap nr="0"><total type="fast" size="1"/></heap></malloc>', "has no count"),
])
def test_bad_input_is_a_clear_parse_error(text, message):
    with pytest.raises(ParseError, match=re.escape(message)):
        parse_malloc_info(text)


def test_no_entity_expansion():
    # The text comes from another process: a DTD must be refused, never expanded.
    bomb = '<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaa">]><malloc>&a;</malloc>'
    with pytest.raises(ParseError):
        parse_malloc_info(bomb)


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(REAL.rstrip()) - 1))
def test_fuzz_truncated_input_always_raises(cut):
    with pytest.raises(ParseError):
        parse_malloc_info(REAL[:cut])


NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in {"heap", "sizes", "size", "unsorted", "total", "system", "aspace", "malloc"})
ATTRS = st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.from_regex(r"[a-z0-9 ]{0,8}", fullmatch=True), max_size=3)


@st.composite
def unknown_element(draw):
    name = draw(NAMES)
    attrs = "".join(f' {k}="{v}"' for k, v in draw(ATTRS).items())
    if draw(st.booleans()):
        return name, f"<{name}{attrs}/>\n"
    inner = draw(st.sampled_from(["", "<x/>", '<y a="1"><z/></y>']))
    return name, f"<{name}{attrs}>{inner}</{name}>\n"


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inserts=st.lists(st.tuples(st.sampled_from(BOUNDARIES), unknown_element()), min_size=1, max_size=6))
def test_fuzz_unknown_elements_are_tolerated(inserts):
    text = REAL
    for at, (_, element) in sorted(inserts, key=lambda x: -x[0]):
        text = text[:at] + element + text[at:]
    info = parse_malloc_info(text)
    baseline = parse_malloc_info(REAL)
    # the known figures are unchanged, and every unknown element is reported by name
    assert [a.system_current for a in info.arenas] == [a.system_current for a in baseline.arenas]
    assert [a.rest_bytes for a in info.arenas] == [a.rest_bytes for a in baseline.arenas]
    assert info.system_current == baseline.system_current
    seen = list(info.unknown) + [u.split("/")[-1] for a in info.arenas for u in a.unknown]
    assert sorted(seen) == sorted(name for _, (name, _) in inserts)


HUGE = st.integers(min_value=0, max_value=2**256)


@settings(max_examples=100, deadline=None)
@given(system=HUGE, rest=HUGE, count=HUGE, frm=HUGE, total=HUGE, mmap=st.integers(min_value=-2**31, max_value=2**64))
def test_fuzz_huge_numbers_are_kept_exactly(system, rest, count, frm, total, mmap):
    text = (f'<malloc version="1">\n<heap nr="0">\n<sizes>\n'
            f'  <size from="{frm}" to="{frm}" total="{total}" count="{count}"/>\n</sizes>\n'
            f'<total type="fast" count="0" size="0"/>\n<total type="rest" count="{count}" size="{rest}"/>\n'
            f'<system type="current" size="{system}"/>\n<system type="max" size="{system}"/>\n</heap>\n'
            f'<total type="mmap" count="{mmap}" size="{system}"/>\n</malloc>\n')
    info = parse_malloc_info(text)
    arena = info.arenas[0]
    assert arena.system_current == system and arena.rest_bytes == rest and arena.rest_count == count
    assert arena.sizes[0].from_bytes == frm and arena.sizes[0].total_bytes == total
    assert info.mmap_count == mmap


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.sampled_from(list('<>/="? \nmallocheapsizetotal01x!-')), max_size=120))
def test_fuzz_arbitrary_text_parses_or_raises_parse_error(text):
    try:
        parse_malloc_info(text)
    except ParseError:
        pass
