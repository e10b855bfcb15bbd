"""The exporter's metrics, from a proc tree captured on this machine (tests/fixtures/export/proc):
GIVEN the real collection (memtop.collect.export) over the captured files, WHEN the collector
renders them, THEN every figure equals the one in the file, in base units, with bounded labels."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from memtop.collect.export import ExportSampler
from memtop.output.prometheus import METRIC_NAMES, METRICS, VMSTAT_COUNTERS, MemtopCollector, metric_families
from memtop.procfs import PAGE_SIZE

TREE = Path(__file__).resolve().parent.parent / "fixtures" / "export" / "proc"
PIDS = sorted(int(p.name) for p in TREE.iterdir() if p.name.isdigit())


def render(collector: MemtopCollector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode()


def samples_of(text: str) -> dict[str, list]:
    """name -> [(labels, value)], parsed back with prometheus-client's own parser."""
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(samples: dict, name: str, **labels) -> float:
    found = [v for lab, v in samples.get(name, []) if all(lab.get(k) == str(x) for k, x in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def kb_line(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


@pytest.fixture(scope="module")
def exposition() -> tuple[str, dict]:
    sampler = ExportSampler(TREE, top=20)
    collector = MemtopCollector()
    collector.publish(sampler.sample())
    sampler.close()
    text = render(collector)
    return text, samples_of(text)


def test_meminfo_is_in_bytes_with_a_label_per_field(exposition):
    _, s = exposition
    assert value(s, "memtop_meminfo_bytes", field="MemTotal") == kb_line(TREE / "meminfo", "MemTotal")
    assert value(s, "memtop_meminfo_bytes", field="MemAvailable") == kb_line(TREE / "meminfo", "MemAvailable")
    assert value(s, "memtop_meminfo_bytes", field="SUnreclaim") == kb_line(TREE / "meminfo", "SUnreclaim")
    # HugePages_* are counts, not kB: their own family, and not in the bytes one
    assert {lab["field"] for lab, _ in s["memtop_meminfo_hugepages"]} == {
        "HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp"}
    assert not any(lab["field"].startswith("HugePages_") for lab, _ in s["memtop_meminfo_bytes"])


def test_psi_averages_are_ratios_and_totals_are_seconds_counters(exposition):
    _, s = exposition
    for resource in ("memory", "io", "cpu"):
        lines = {ln.split()[0]: dict(kv.split("=") for kv in ln.split()[1:])
                 for ln in (TREE / "pressure" / resource).read_text().splitlines()}
        for kind, fields in lines.items():
            for window in ("10", "60", "300"):
                assert value(s, "memtop_pressure_ratio", resource=resource, kind=kind, window=f"{window}s") == \
                    pytest.approx(float(fields[f"avg{window}"]) / 100)
            assert value(s, "memtop_pressure_stall_seconds_total", resource=resource, kind=kind) == \
                pytest.approx(int(fields["total"]) / 1e6)


def test_vmstat_counters_are_cumulative_kernel_values_in_base_units(exposition):
    _, s = exposition
    raw = dict(line.split() for line in (TREE / "vmstat").read_text().splitlines())
    assert value(s, "memtop_vmstat_major_page_faults_total") == int(raw["pgmajfault"])
    assert value(s, "memtop_vmstat_page_faults_total") == int(raw["pgfault"])
    assert value(s, "memtop_vmstat_paged_bytes_total", direction="in") == int(raw["pgpgin"]) * 1024  # KiB
    assert value(s, "memtop_vmstat_workingset_refault_pages_total", type="file") == int(raw["workingset_refault_file"])
    assert value(s, "memtop_vmstat_pages_scanned_total", by="direct") == int(raw["pgscan_direct"])
    # pgscan_anon/file count the same pages again by type: left out, so that sum() is right
    assert {lab["by"] for lab, _ in s["memtop_vmstat_pages_scanned_total"]} <= {"kswapd", "direct", "khugepaged", "proactive"}
    # no home-made rates anywhere
    assert not any("rate" in name or "per_second" in name for name in METRIC_NAMES)


def test_slab_caches_are_the_largest_k_with_the_total_over_all(exposition):
    _, s = exposition
    rows = [ln.split() for ln in (TREE / "slabinfo").read_text().splitlines()[2:]]
    sizes = {r[0]: int(r[14]) * int(r[5]) * PAGE_SIZE for r in rows}
    exported = {lab["cache"]: v for lab, v in s["memtop_slab_cache_bytes"]}
    assert len(exported) == 20
    assert exported == dict(sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:20])
    assert value(s, "memtop_slab_bytes") == sum(sizes.values())
    assert value(s, "memtop_slab_caches") == len(rows)
    name = next(iter(exported))
    row = next(r for r in rows if r[0] == name)
    assert value(s, "memtop_slab_cache_active_objects", cache=name) == int(row[1])
    assert value(s, "memtop_slab_cache_active_bytes", cache=name) == int(row[1]) * int(row[3])


def test_sockstat(exposition):
    _, s = exposition
    lines = {ln.split(":")[0]: ln.split(":")[1].split() for ln in (TREE / "net" / "sockstat").read_text().splitlines()}
    tcp = dict(zip(lines["TCP"][::2], lines["TCP"][1::2]))
    assert value(s, "memtop_sockstat_sockets_used") == int(lines["sockets"][1])
    assert value(s, "memtop_sockstat_sockets", protocol="TCP", state="inuse") == int(tcp["inuse"])
    assert value(s, "memtop_sockstat_memory_bytes", protocol="TCP") == int(tcp["mem"]) * PAGE_SIZE
    assert value(s, "memtop_sockstat_sockets", protocol="TCP6", state="inuse") >= 0  # sockstat6 is read too


def test_processes_carry_pid_and_comm_and_figures_from_status_and_smaps_rollup(exposition):
    _, s = exposition
    for pid in PIDS:
        comm = (TREE / str(pid) / "stat").read_text().split("(")[1].split(")")[0]
        assert value(s, "memtop_process_rss_bytes", pid=pid, comm=comm) == kb_line(TREE / str(pid) / "status", "VmRSS")
        assert value(s, "memtop_process_swap_bytes", pid=pid) == kb_line(TREE / str(pid) / "status", "VmSwap")
        rollup = TREE / str(pid) / "smaps_rollup"
        assert value(s, "memtop_process_pss_bytes", pid=pid) == kb_line(rollup, "Pss")
        assert value(s, "memtop_process_uss_bytes", pid=pid) == kb_line(rollup, "Private_Clean") + kb_line(rollup, "Private_Dirty")
        assert value(s, "memtop_process_lazyfree_bytes", pid=pid) == kb_line(rollup, "LazyFree")
        assert value(s, "memtop_process_open_fds", pid=pid) == len(list((TREE / str(pid) / "fd").iterdir()))
        assert value(s, "memtop_process_page_faults_total", pid=pid, type="minor") == int(
            (TREE / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[7])
    assert value(s, "memtop_processes") == len(PIDS)
    # no --heap: no heap series, and the heap source is not reported at all
    assert "memtop_process_heap_bytes" not in s
    assert all(lab["source"] != "heap" for lab, _ in s["memtop_exporter_source_ok"])


def test_sources_that_cannot_be_read_are_reported_not_zeroed(exposition):
    _, s = exposition
    ok = {lab["source"]: v for lab, v in s["memtop_exporter_source_ok"]}
    # The captured tree has no self/mountinfo: no tmpfs mounts, no cgroup hierarchy.
    assert ok["cgroup"] == 0 and ok["tmpfs"] == 0
    assert ok["meminfo"] == ok["pressure"] == ok["vmstat"] == ok["slabinfo"] == ok["sockstat"] == ok["processes"] == 1
    assert "memtop_cgroup_memory_usage_bytes" not in s and "memtop_tmpfs_used_bytes" not in s


def test_every_family_is_exposed_with_help_and_type_even_without_samples(exposition):
    text, _ = exposition
    for spec in METRICS:
        assert f"# HELP {spec.name} " in text, spec.name
        assert f"# TYPE {spec.name} {spec.kind}\n" in text, spec.name


def test_names_and_units_follow_prometheus_conventions():
    names = [spec.name for spec in METRICS]
    assert len(names) == len(set(names))
    for spec in METRICS:
        assert spec.name.startswith("memtop_"), spec.name
        assert (spec.kind == "counter") == spec.name.endswith("_total"), spec.name
        assert not any(bad in spec.name for bad in ("_kb", "_kib", "_mb", "_mib", "_pages_bytes", "_ms", "_percent")), spec.name
        assert spec.help.endswith(".") and len(spec.help) > 30, spec.name
    bytes_like = ("meminfo", "rss", "pss", "uss", "swap", "lazyfree", "size", "used", "usage", "limit", "memory")
    for spec in METRICS:
        last = spec.name.removesuffix("_total").rsplit("_", 1)[-1]
        if any(w in spec.name for w in bytes_like) and spec.kind == "gauge" and "hugepages" not in spec.name \
                and "inodes" not in spec.name and "sockets" not in spec.name:
            assert last == "bytes", spec.name
    # HELP names the source file or call of every figure that comes from the kernel
    for spec in METRICS:
        if not spec.name.startswith("memtop_exporter_") and spec.name != "memtop_processes":
            assert any(src in spec.help for src in ("/proc/", "statvfs", "memory.", "mountinfo", "--heap")), spec.name
    for name, _label, _help, _keys in VMSTAT_COUNTERS:
        assert name in METRIC_NAMES


def test_top_n_and_top_k_bound_the_labels():
    sampler = ExportSampler(TREE, top=1, slab_top=3)
    sample = sampler.sample()
    sampler.close()
    collector = MemtopCollector()
    collector.publish(sample)
    s = samples_of(render(collector))
    rss = {lab["pid"]: v for lab, v in s["memtop_process_rss_bytes"]}
    largest = max(PIDS, key=lambda p: kb_line(TREE / str(p) / "status", "VmRSS"))
    assert list(rss) == [str(largest)]
    assert len(s["memtop_slab_cache_bytes"]) == 3
    # every per-process family has exactly the processes of the top N
    for name in ("memtop_process_pss_bytes", "memtop_process_open_fds", "memtop_process_threads"):
        assert {lab["pid"] for lab, _ in s[name]} == {str(largest)}


def test_a_scrape_reads_no_file(tmp_path):
    """GIVEN a sample of a tree, WHEN the tree is gone, THEN scrapes still serve the same text:
    collect() hands out what the sampling thread built, it never reads /proc."""
    tree = tmp_path / "proc"
    shutil.copytree(TREE, tree)
    sampler = ExportSampler(tree)
    collector = MemtopCollector()
    collector.publish(sampler.sample())
    sampler.close()
    first = render(collector)
    shutil.rmtree(tree)
    assert render(collector) == first
    assert "memtop_meminfo_bytes{field=\"MemTotal\"}" in first


def test_before_the_first_sample_only_the_info_metric_has_a_value():
    s = samples_of(generate_latest_of(metric_families(None)))
    assert set(s) == {"memtop_exporter_info"}


def generate_latest_of(families) -> str:
    class Fixed:
        def collect(self):
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Fixed())
    return generate_latest(registry).decode()


def test_the_exposition_is_rendered_once_plain_and_gzipped():
    import gzip

    sampler = ExportSampler(TREE)
    collector = MemtopCollector()
    collector.publish(sampler.sample())
    sampler.close()
    exposition = collector.exposition
    assert gzip.decompress(exposition.gzip) == exposition.text == render(collector).encode()
