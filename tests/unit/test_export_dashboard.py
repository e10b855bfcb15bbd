"""The Grafana dashboard (contrib/grafana/memtop-dashboard.json) cannot drift from the exporter:
every metric its PromQL names is in the exporter's real output, counters are only used through
rate()/increase(), and every panel takes its data source from the ${datasource} variable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from memtop.collect.export import ExportSampler
from memtop.output.prometheus import METRICS, MemtopCollector

REPO = Path(__file__).resolve().parent.parent.parent
DASHBOARD = REPO / "contrib" / "grafana" / "memtop-dashboard.json"
TREE = REPO / "tests" / "fixtures" / "export" / "proc"

_METRIC = re.compile(r"\bmemtop_[a-zA-Z0-9_]+")


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in all_panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            exprs.append(query)
    return exprs


@pytest.fixture(scope="module")
def exported_names() -> set[str]:
    """The metric names in the exporter's real exposition text (a sample of the captured tree)."""
    sampler = ExportSampler(TREE)
    collector = MemtopCollector()
    collector.publish(sampler.sample())
    sampler.close()
    text = generate_latest(collector).decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}


def test_every_metric_in_the_dashboard_is_exported(exported_names):
    exprs = expressions(load_dashboard())
    assert len(exprs) >= 20
    used = {name for expr in exprs for name in _METRIC.findall(expr)}
    missing = used - exported_names
    assert not missing, f"the dashboard uses metrics the exporter does not expose: {sorted(missing)}"
    # Every selector in the dashboard is one of memtop's (no stray node_exporter names).
    for expr in exprs:
        for name in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr):
            assert name.startswith("memtop_"), (name, expr)


def test_the_dashboard_covers_each_area(exported_names):
    used = {name for expr in expressions(load_dashboard()) for name in _METRIC.findall(expr)}
    for needed in ("memtop_meminfo_bytes", "memtop_pressure_ratio", "memtop_pressure_stall_seconds_total",
                   "memtop_vmstat_major_page_faults_total", "memtop_vmstat_workingset_refault_pages_total",
                   "memtop_slab_cache_bytes", "memtop_sockstat_memory_bytes", "memtop_tmpfs_used_bytes",
                   "memtop_cgroup_memory_usage_bytes", "memtop_process_rss_bytes", "memtop_process_pss_bytes",
                   "memtop_process_heap_bytes"):
        assert needed in used, needed


def test_counters_are_only_used_through_rate_or_increase_and_gauges_never_are():
    kinds = {spec.name: spec.kind for spec in METRICS}
    for expr in expressions(load_dashboard()):
        for match in _METRIC.finditer(expr):
            name = match.group(0)
            before = expr[: match.start()].rstrip()
            wrapped = before.endswith(("rate(", "increase(", "irate("))
            if kinds.get(name) == "counter":
                assert wrapped, f"counter {name} used without rate()/increase(): {expr}"
            elif name in kinds and not expr.startswith("label_values"):
                assert not wrapped, f"gauge {name} inside rate(): {expr}"


def test_panels_take_the_data_source_from_the_variable():
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = set()
    for panel in all_panels(dashboard):
        assert panel["id"] not in ids
        ids.add(panel["id"])
        assert panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'instance=~"$instance"' in target["expr"], target["expr"]
