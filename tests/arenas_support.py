"""Fixed data for the Arenas tests: a real analysis of the 16-thread target, captured on this
machine (tests/fixtures/arenas/analysis_16threads.json, dataclasses.asdict of ArenaAnalysis),
rebuilt into the real records; and the malloc_info XML of the same target."""

from __future__ import annotations

import json
import time
from pathlib import Path

from memtop.heap.malloc_info import parse_malloc_info
from memtop.model.arenas import (
    AllocatorEnv,
    AnonCensus,
    AnonRegion,
    ArenaAnalysis,
    ArenaCap,
    RegionClass,
    SavingPrediction,
    SizeGroup,
    TuningState,
)
from memtop.model.findings import Finding, Severity
from memtop.model.heap import ArenaReport, HeapReport, Pin, Tunables
from memtop.model.process import ProcessIdentity

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "arenas"


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def load_analysis() -> ArenaAnalysis:
    d = json.loads((FIXTURES / "analysis_16threads.json").read_text())
    h = d["heap"]
    arenas = tuple(ArenaReport(**{k: _tuples(v) for k, v in a.items()}) for a in h["arenas"])
    heap = HeapReport(**{
        **h,
        "identity": ProcessIdentity(**h["identity"]) if h["identity"] else None,
        "arenas": arenas,
        "tunables": Tunables(**h["tunables"]) if h["tunables"] else None,
        "pin": Pin(**h["pin"]) if h["pin"] else None,
    })
    env = d["env"]
    c = d["census"]
    census = AnonCensus(
        allocator=c["allocator"], allocator_evidence=c["allocator_evidence"], mappings=c["mappings"],
        brk_heap=AnonRegion(**c["brk_heap"]) if c["brk_heap"] else None,
        arena_heaps=tuple(AnonRegion(**r) for r in c["arena_heaps"]),
        thread_stacks=RegionClass(**c["thread_stacks"]), other_anon=RegionClass(**c["other_anon"]),
        reserved_only=RegionClass(**c["reserved_only"]),
        size_groups=tuple(SizeGroup(**g) for g in c["size_groups"]),
        can_tell=tuple(c["can_tell"]), cannot_tell=tuple(c["cannot_tell"]),
    )
    return ArenaAnalysis(
        pid=d["pid"], start_ticks=d["start_ticks"], comm=d["comm"], threads=d["threads"], heap=heap,
        heap_reason=d["heap_reason"],
        env=AllocatorEnv(readable=env["readable"], reason=env["reason"], malloc_vars=_tuples(env["malloc_vars"]),
                         tunables=_tuples(env["tunables"]), glibc_tunables=env["glibc_tunables"]),
        cap=ArenaCap(**d["cap"]),
        tuning=TuningState(**{**d["tuning"], "notes": tuple(d["tuning"]["notes"])}),
        prediction=SavingPrediction(**d["prediction"]),
        census=census, census_reason=d["census_reason"], setting_line=d["setting_line"],
        findings=tuple(Finding(Severity(f["severity"]), f["text"], f["next_step"]) for f in d["findings"]),
    )


def load_malloc_info_result(identity: ProcessIdentity):
    from memtop.tui.arenas import MallocInfoResult

    info = parse_malloc_info((FIXTURES / "malloc_info_16threads.xml").read_text())
    return MallocInfoResult(identity=identity, info=info, error=None, seconds=0.42, fetched_at=time.monotonic())
