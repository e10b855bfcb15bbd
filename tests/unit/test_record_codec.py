"""The record file's encoding: model records by name (and schema 1's by position), typed and
bounded decoding, parts against a keyframe, damaged bytes; the size and duration arguments of
`memtop record`."""

from __future__ import annotations

import argparse
import json
import zlib
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memtop.commands.record import duration_arg, size_arg
from memtop.model.kernel import FileNr, NetNamespace, SlabCache, SlabRow, Sockstat, SockProtocol
from memtop.model.pressure import CgroupMemory, PressureSample, PsiLine, PsiResource
from memtop.model.process import Rollup
from memtop.output.record import (
    MAX_PART_BYTES,
    RecordDataError,
    RecordFileError,
    decode,
    encode,
    pack_parts,
    section_doc,
    section_parts,
    slab_columns,
    slab_rows,
    to_json,
    unpack_parts,
)
from memtop.collect.recording.codec import inflate


def test_model_records_survive_json():
    psi = PressureSample(12.5, MappingProxyType({"memory": PsiResource(PsiLine(0.1, 0.2, 0.3, 42), None)}),
                         MappingProxyType({"cpu": "no such file"}))
    cgroup = CgroupMemory(1, "/a/b", 10, None, events=MappingProxyType({"oom_kill": 1}),
                          unknown=MappingProxyType({"high": "cgroup v1 has none"}))
    ns = NetNamespace(4026531833, (1, 2), "1 init", True,
                      Sockstat(7, (SockProtocol("TCP", MappingProxyType({"inuse": 3, "mem": 2}), 8192),)))
    for record, hint in ((psi, PressureSample), (cgroup, CgroupMemory), (ns, NetNamespace), (FileNr(1, 0, 9), FileNr),
                         ((psi, None, cgroup), tuple[PressureSample | CgroupMemory | None, ...])):
        # through real JSON, as in the file
        assert decode(json.loads(to_json(encode(record))), hint) == record


def test_fields_are_stored_by_name():
    data = json.loads(to_json(encode(FileNr(1, 0, 9))))
    assert data == {"@": "FileNr", "f": {"allocated": 1, "unused": 0, "maximum": 9}}


def test_a_field_added_since_the_file_was_written_is_unknown_and_one_unknown_to_us_is_ignored():
    # GIVEN a CgroupMemory written by a memtop that had no swap_max and one that has a new field
    data = json.loads(to_json(encode(CgroupMemory(2, "/a", 10, None))))
    del data["f"]["swap_max"], data["f"]["events"]
    data["f"]["added_in_a_later_version"] = [1, 2, 3]
    # THEN it decodes: the missing field is its default or unknown, the new one is ignored
    cgroup = decode(data, CgroupMemory)
    assert cgroup.swap_max is None and dict(cgroup.events) == {} and cgroup.path == "/a"
    # but a field without which the record means nothing is damage
    del data["f"]["path"]
    with pytest.raises(RecordDataError, match="without path"):
        decode(data, CgroupMemory)


def test_schema_1_records_are_read_by_position_in_the_order_of_then():
    v1 = {"@": "Rollup", "f": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, "smaps"]}
    rollup = decode(v1, Rollup, version=1)
    assert rollup.rss == 1 and rollup.private_dirty == 9 and rollup.swap_pss == 14 and rollup.source == "smaps"
    with pytest.raises(RecordDataError):
        decode({"@": "Rollup", "f": [1, 2]}, Rollup, version=1)


def test_only_model_types_are_built_from_a_file():
    with pytest.raises(RecordDataError):
        decode({"@": "Popen", "f": {"args": ["rm", "-rf", "/"]}}, FileNr)


@pytest.mark.parametrize("value", ["12", 1.5, True, None, 10**30, [1], {"m": {}}])
def test_a_count_must_be_a_whole_number(value):
    with pytest.raises(RecordDataError):
        decode({"@": "FileNr", "f": {"allocated": value, "unused": 0, "maximum": 9}}, FileNr)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "1", 1e300, False])
def test_a_ratio_must_be_a_finite_number(value):
    with pytest.raises(RecordDataError):
        decode({"@": "PsiLine", "f": {"avg10": value, "avg60": 0, "avg300": 0, "total_us": 0}}, PsiLine)


def test_inflate_refuses_a_zlib_bomb_without_inflating_it():
    # GIVEN 100 MB of zeros compressed to ~100 KB
    bomb = zlib.compress(bytes(100_000_000), 9)
    assert len(bomb) < 200_000
    # THEN it is refused as more than a part may hold, with or without a declared size
    with pytest.raises(RecordDataError, match="more than"):
        inflate(bomb)
    with pytest.raises(RecordDataError, match="more than"):
        inflate(bomb, declared=100)
    with pytest.raises(RecordDataError, match="more than"):
        inflate(bomb, declared=MAX_PART_BYTES + 1)
    # AND a stream that is what its header says is read whole
    small = bytes(range(256)) * 1000
    assert inflate(zlib.compress(small), declared=len(small)) == small
    with pytest.raises(RecordDataError):
        inflate(zlib.compress(small), declared=len(small) - 1)
    with pytest.raises(RecordDataError, match="after the end"):
        inflate(zlib.compress(small) + b"xx")


def test_slab_table_as_columns_and_back():
    rows = (SlabRow(SlabCache("dentry", 10, 12, 192, 21, 1, 1, 1, 4096), 1024.0, True),
            SlabRow(SlabCache("kmalloc-8", 5, 512, 8, 512, 1, 1, 1, 4096), None, None))
    assert slab_rows(json.loads(to_json(slab_columns(rows)))) == rows
    assert slab_rows(slab_columns(None)) is None


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.recursive(st.none() | st.integers() | st.text(max_size=20),
                                                     lambda inner: st.lists(inner, max_size=6), max_leaves=30),
                       max_size=6),
       st.dictionaries(st.text(max_size=8), st.binary(max_size=200), max_size=6))
def test_parts_round_trip_with_and_without_a_keyframe(doc, base):
    parts = {k: to_json(v) for k, v in doc.items()}
    for dictionary in (None, base, parts):
        blob = pack_parts(parts, dictionary)
        assert unpack_parts(blob, dictionary) == parts


def test_a_part_compressed_against_a_keyframe_is_small_and_needs_it():
    keyframe = {"rss": to_json(list(range(0, 4096 * 300, 4096)))}
    tick = {"rss": to_json(list(range(0, 4096 * 299, 4096)) + [7])}
    alone, against = pack_parts(tick, None), pack_parts(tick, keyframe)
    assert len(against) < len(alone) / 3
    assert unpack_parts(against, keyframe) == tick
    with pytest.raises(RecordDataError, match="keyframe"):
        unpack_parts(against, None)


@pytest.mark.parametrize("cut", [4, 20, -3])
def test_damaged_parts_raise(cut):
    blob = pack_parts({"a": to_json(list(range(100))), "b": to_json("x" * 50)}, None)
    with pytest.raises((ValueError, zlib.error)):
        unpack_parts(blob[:cut], None)
    flipped = bytearray(blob)
    flipped[-5] ^= 0xFF
    with pytest.raises((ValueError, zlib.error)):
        unpack_parts(bytes(flipped), None)


def test_sections_split_into_parts_and_back():
    kernel = {"slabs": {"name": ["a"], "num_slabs": [1]}, "file_nr": None, "slab_reason": None}
    assert section_doc("kernel", section_parts("kernel", kernel)) == kernel
    no_slabs = {"slabs": None, "slab_reason": "needs root"}
    assert section_doc("kernel", section_parts("kernel", no_slabs)) == no_slabs
    assert section_doc("vmstat", section_parts("vmstat", {"pgpgin": 1})) == {"pgpgin": 1}


def test_record_file_errors_are_one_line_and_printable():
    assert str(RecordFileError("damaged:\n*** in database main ***\nPage 8: bad\n")) == \
        "damaged:; *** in database main ***; Page 8: bad"
    assert str(RecordFileError("host \x1b]0;x\x07 \udcff")) == "host \\e]0;x\\a \\xff"


@pytest.mark.parametrize("text, value", [("100M", 100 * 2**20), ("64K", 65536), ("1G", 2**30),
                                         ("1.5MiB", 3 * 2**19), ("70000", 70000)])
def test_size_argument(text, value):
    assert size_arg(text) == value


@pytest.mark.parametrize("text", ["10", "1X", "", "-5M"])
def test_bad_size_argument(text):
    with pytest.raises(argparse.ArgumentTypeError):
        size_arg(text)


@pytest.mark.parametrize("text, value", [("90", 90), ("90s", 90), ("10m", 600), ("2h", 7200), ("0.5", 0.5)])
def test_duration_argument(text, value):
    assert duration_arg(text) == value


@pytest.mark.parametrize("text", ["0", "soon", "5y", "-1"])
def test_bad_duration_argument(text):
    with pytest.raises(argparse.ArgumentTypeError):
        duration_arg(text)


def test_the_command_line_default_size_is_the_writers():
    from memtop.commands import record as command
    from memtop.output import record as output

    assert command.DEFAULT_MAX_BYTES == output.DEFAULT_MAX_BYTES


def test_every_field_of_a_recorded_section_has_a_type_the_reader_can_build():
    """What the writer encodes by name (the taken sections, PSI, cgroups) must decode: a field
    typed ``tuple``, ``object`` or ``Any`` would make every tick holding it "damaged" at replay
    (an OOM report's tasks table was ``tuple[tuple, ...]``)."""
    import collections.abc
    import dataclasses
    import enum
    import types
    import typing

    from memtop.collect.recording.codec import MODEL_TYPES, TAKEN_SECTIONS, field_hints
    from memtop.collect.recording.reader import TAKEN_TYPES

    assert set(TAKEN_TYPES) == set(TAKEN_SECTIONS)
    problems, seen = [], set()

    def check(hint, where):
        if hint in (int, float, str, bool, type(None), None) or hint in seen:
            return
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            for arg in args:
                check(arg, where)
        elif origin is tuple and args:
            for arg in args:
                if arg is not Ellipsis:
                    check(arg, f"{where}[]")
        elif origin in (collections.abc.Mapping, dict) and args:
            check(args[0], f"{where} key")
            check(args[1], f"{where}[]")
        elif isinstance(hint, type) and (dataclasses.is_dataclass(hint) or issubclass(hint, enum.Enum)):
            if MODEL_TYPES.get(hint.__name__) is not hint:
                problems.append(f"{where}: {hint.__name__} is not a memtop.model record")
            seen.add(hint)
            if dataclasses.is_dataclass(hint):
                for name, sub in field_hints(hint).items():
                    check(sub, f"{hint.__name__}.{name}")
        elif isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):
            seen.add(hint)
            for name, sub in typing.get_type_hints(hint, localns=MODEL_TYPES).items():
                check(sub, f"{hint.__name__}.{name}")
        else:
            problems.append(f"{where}: {hint!r}")

    for name, cls in {**TAKEN_TYPES, "psi": PressureSample, "cgroups": CgroupMemory}.items():
        check(cls, name)
    assert not problems, problems
