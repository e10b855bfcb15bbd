"""The arenas object of `memtop snapshot --json --pid` / `memtop explain`, and its text, on a
captured analysis of the 16-thread target: deterministic (fixed data)."""

from __future__ import annotations

import json
from pathlib import Path

from memtop.output.arenas import analysis_json, analysis_lines, bucket_histogram, snapshot_process_fields
from memtop.output.snapshot import PROCESS_FIELDS
from tests.arenas_support import load_analysis


def test_analysis_json_of_the_captured_walk():
    doc = analysis_json(load_analysis())
    assert json.loads(json.dumps(doc)) == doc  # plain JSON, nothing else
    assert doc["threads"] == 17 and doc["arena_count"] == 16
    assert doc["cap"] == {"limit": 16, "cpus": 2, "basis": "8 x 2 CPUs, mp_.arena_max unset"}
    assert doc["environment"]["MALLOC_ARENA_MAX"] is None and doc["environment"]["GLIBC_TUNABLES"] is None
    assert doc["walk"] == {"valid": True, "status": "valid", "reason": None, "glibc_version": "2.36"}
    main = doc["arenas"][0]
    assert main["index"] == 0 and main["is_main"] and main["heaps"][0]["size"] == main["system_bytes"] == 3702784
    assert abs(main["utilization"] - main["in_use_bytes"] / main["system_bytes"]) < 1e-12
    for arena in doc["arenas"]:
        assert set(arena) >= {"address", "system_bytes", "in_use_bytes", "free_bytes", "fastbin_bytes", "tcache_bytes",
                              "top_bytes", "utilization", "resident_bytes", "attached_threads", "free_size_histogram"}
        assert sum(h["total_bytes"] for h in arena["free_size_histogram"]) == arena["free_bytes"] + arena["fastbin_bytes"]
    p = doc["prediction"]
    assert p["arena_max"] == 2 and p["thread_arenas"] == 15
    # (captured before the saving had a range: its bounds are unknown, shown as null)
    assert p["saving_bytes"] <= p["thread_resident_bytes"] - p["thread_live_bytes"]
    assert p["saving_if_threads_take_turns_bytes"] is None and p["overlap_assumed"] is None
    assert doc["setting_line"] == "MALLOC_ARENA_MAX=2 ./t"
    assert [f["severity"] for f in doc["findings"]] == ["info", "warning"]
    assert doc["findings"][1]["next_step"] == "restart it with MALLOC_ARENA_MAX=2 ./t"
    assert doc["tuning"]["threshold_moved"] is False and doc["tuning"]["top_pad_bytes"] == 128 * 1024
    census = doc["census"]
    assert census["arena_heaps"]["count"] == 15 and census["thread_stacks"]["count"] == 16
    assert census["cannot_tell"] and doc["census_reason"] is None


def test_prediction_json_says_the_range_and_the_assumption():
    from dataclasses import replace

    from memtop.heap.arena_advice import predict_saving

    analysis = load_analysis()
    prediction = predict_saving(analysis.heap.arenas)
    p = analysis_json(replace(analysis, prediction=prediction))["prediction"]
    assert p["saving_bytes"] == prediction.saving_bytes
    assert p["saving_if_threads_peak_together_bytes"] <= p["saving_bytes"] <= p["saving_if_threads_take_turns_bytes"]
    # this target's 16 threads take turns: its turns bound is what the capture of issue 5 measured
    assert p["saving_if_threads_take_turns_bytes"] > 0.9 * analysis.prediction.saving_bytes
    assert p["overlap_assumed"] == 0.5 and "cannot tell" in p["overlap_basis"]
    assert "take turns" in p["basis"] and "coincide" in p["basis"]


def test_analysis_text_lines():
    lines = analysis_lines(load_analysis())
    assert lines[0] == "17 threads, 16 arenas, cap 16 (8 x 2 CPUs, mp_.arena_max unset)"
    assert lines[2].split()[:3] == ["0", "main", "1"]
    assert any(line.startswith("MALLOC_ARENA_MAX=2 would save about 39.4 MiB") for line in lines)
    assert "set: MALLOC_ARENA_MAX=2 ./t" in lines
    assert any("64 MiB-aligned heaps: 15" in line for line in lines)


def test_histogram_buckets():
    assert bucket_histogram([(32, 2, 64), (48, 1, 48), (64, 1, 64), (1 << 30, 1, 1 << 30)]) == [
        (32, 63, 3, 112), (64, 127, 1, 64), (1 << 24, None, 1, 1 << 30)]
    assert bucket_histogram([]) == []


def test_the_field_is_registered_and_only_answers_for_the_pid_asked():
    assert snapshot_process_fields in PROCESS_FIELDS

    class View:
        pid = 1

    assert snapshot_process_fields(None, View(), None) == {}
    assert snapshot_process_fields(None, View(), 2) == {}
