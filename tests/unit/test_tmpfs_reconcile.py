"""The reconciliation with meminfo Shmem and the JSON section, on fixed records."""

from __future__ import annotations

import json

from memtop.collect.tmpfs import reconcile
from memtop.model.tmpfs import ShmemMapping, ShmemObject
from memtop.output.tmpfs import report_json
from tests.tmpfs_report import DELETED, MAPPINGS, MEMINFO, MiB, MOUNTS, OBJECTS, SYSV, fixed_report


def parts(rec):
    return {p.name: p for p in rec.parts}


def test_parts_count_each_object_once_and_leave_the_remainder():
    rec = reconcile(MEMINFO, MOUNTS, SYSV, OBJECTS, MAPPINGS, deleted_open=DELETED)
    p = parts(rec)
    # /dev/shm (40 MiB) + /run/user/1000 (8 MiB); /dev counted once although two namespaces show
    # it; the covered /dev/shm is unknown, so the part is a lower bound.
    assert p["tmpfs files"].bytes == 48 * MiB
    assert p["tmpfs files"].quality == "lower bound"
    assert "deleted-but-open" in p["tmpfs files"].note
    assert p["SysV segments"].bytes == 16 * MiB
    assert p["memfd"].bytes == 6 * MiB and p["memfd"].quality == "measured"
    # Two processes map the same shared anonymous object: counted once.
    assert p["shared anonymous"].bytes == 2 * MiB
    assert rec.remainder_bytes == 80 * MiB - (48 + 16 + 6 + 2) * MiB
    assert p["not explained"].bytes == rec.remainder_bytes
    assert [o.name for o in rec.outside_shmem] == ["ramfs"]
    assert rec.outside_shmem[0].bytes is None


def test_unsized_objects_fall_back_to_the_largest_mapper_summed_per_process():
    objects = (ShmemObject("memfd", "exe", "0:1", 9, None, None, (), reason="map_files not readable"),)
    mappings = (
        ShmemMapping(10, "a", "memfd", "exe", 9, 4 * MiB, 1 * MiB),
        ShmemMapping(10, "a", "memfd", "exe", 9, 4 * MiB, 2 * MiB),  # same process, second segment
        ShmemMapping(11, "b", "memfd", "exe", 9, 4 * MiB, 2 * MiB),
    )
    p = parts(reconcile({"Shmem": 10 * MiB}, (), (), objects, mappings))
    assert p["memfd"].bytes == 3 * MiB
    assert p["memfd"].quality == "lower bound"


def test_hugetlb_objects_are_left_out_and_negative_remainder_is_explained():
    objects = (ShmemObject("memfd", "huge", "0:15", 1, 2 * MiB, 2 * MiB, (), hugetlb=True),
               ShmemObject("memfd", "small", "0:1", 2, 8 * MiB, 8 * MiB, ()))
    rec = reconcile({"Shmem": 4 * MiB, "SwapTotal": 8 * MiB, "SwapFree": 2 * MiB}, (), (), objects, ())
    assert parts(rec)["memfd"].bytes == 8 * MiB
    assert "huge pages left out" in parts(rec)["memfd"].note
    # one object sized: the singular
    assert parts(rec)["memfd"].note.startswith("1 memfd_create(2) file sized exactly")
    assert parts(rec)["shared anonymous"].note.startswith("0 MAP_SHARED|MAP_ANONYMOUS objects (")
    assert rec.remainder_bytes == -4 * MiB
    assert "swapped out" in parts(rec)["not explained"].note


def test_unknown_shmem_gives_unknown_remainder():
    rec = reconcile({}, (), (), (), ())
    assert rec.shmem_bytes is None and rec.remainder_bytes is None


def test_json_section_is_deterministic_and_complete():
    doc = report_json(fixed_report())
    again = report_json(fixed_report())
    assert json.dumps(doc, sort_keys=True) == json.dumps(again, sort_keys=True)
    mount = doc["mounts"][2]
    assert {k: mount[k] for k in ("mountpoint", "fstype", "size_bytes", "used_bytes")} == {
        "mountpoint": "/dev/shm", "fstype": "tmpfs", "size_bytes": 24 * 2**30, "used_bytes": 40 * MiB}
    assert doc["mounts"][1]["used_bytes"] is None and "covered" in doc["mounts"][1]["unknown_reason"]
    (deleted,) = doc["deleted_open"]
    assert deleted["path"] == "/dev/shm/cache.tmp" and deleted["bytes"] == 24 * MiB
    assert deleted["holders"][0] == {"pid": 4242, "comm": "worker", "fd": 7, "mapped": False}
    assert deleted["holders"][1] == {"pid": 4242, "comm": "worker", "fd": None, "mapped": True}
    orphan = doc["sysv"][0]
    assert orphan["orphan"] is True and orphan["nattch"] == 0 and orphan["perms"] == "640"
    assert doc["sysv"][1]["marked_for_removal"] is True
    rec = doc["shmem_reconciliation"]
    assert rec["shmem_bytes"] == 80 * MiB
    assert sum(p["bytes"] for p in rec["parts"]) == rec["shmem_bytes"]
    json.dumps(doc)  # serialisable


def test_unreadable_processes_make_object_parts_lower_bounds():
    rec = reconcile({"Shmem": 4 * MiB}, (), (), (), (), processes_unreadable=7)
    p = parts(rec)
    for name in ("memfd", "shared anonymous"):
        assert p[name].quality == "lower bound" and "7 processes not readable" in p[name].note
    assert "not readable (needs root)" in p["not explained"].note
