"""A real Prometheus server (Debian package `prometheus`) scrapes `memtop export` every second;
its HTTP API then answers with memtop's metrics: a test child's RSS equal to its VmRSS, meminfo
exact, rates of the vmstat counters, and every PromQL expression of the Grafana dashboard valid."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from tests.export_support import REPO, start_exporter, vm_rss
from tests.support import IS_ROOT, python_child

PROMETHEUS = "/usr/bin/prometheus"


def prometheus_binary() -> str:
    path = PROMETHEUS if os.access(PROMETHEUS, os.X_OK) else shutil.which("prometheus")
    if path is None:
        if IS_ROOT:
            pytest.fail(f"{PROMETHEUS} is missing: run `make test` (scripts/setup.sh --test installs the Debian "
                        "package `prometheus` as root)")
        pytest.skip(f"{PROMETHEUS} is missing and installing it needs root (apt-get install prometheus)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port: int, path: str, **params) -> dict:
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def query(port: int, expr: str) -> list:
    doc = api(port, "/api/v1/query", query=expr)
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError as e:  # not listening yet
            last_error = e
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


@pytest.fixture
def prometheus(tmp_path):
    """A function starting Prometheus on a free loopback port that scrapes the given target every
    second; the server is killed (its whole process group) at teardown, even on failure."""
    binary = prometheus_binary()
    started: list[subprocess.Popen] = []

    def start(target_port: int) -> int:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: memtop\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{target_port}']\n")
        log = open(tmp_path / "prometheus.log", "wb")
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=tmp_path)
        log.close()
        started.append(proc)
        try:
            wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2).status == 200,
                     60, "Prometheus to be ready")
        except AssertionError:
            raise AssertionError(f"Prometheus did not start: {(tmp_path / 'prometheus.log').read_text()[-2000:]}")
        return port

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_prometheus_scrapes_memtop_and_answers_with_its_metrics(children, prometheus):
    target = python_child("import sys\nblock = bytearray(40 << 20)\nfor i in range(0, len(block), 4096): block[i] = 1\n"
                          "print('READY', flush=True)\nsys.stdin.readline()\n")
    children.append(target)
    _exporter, _host, exporter_port = start_exporter(children, "--interval", "1", "--top", "1000")
    port = prometheus(exporter_port)

    # Two scrapes stored.
    wait_for(lambda: query(port, 'count_over_time(memtop_exporter_samples_total{job="memtop"}[1m])')
             and float(query(port, 'count_over_time(memtop_exporter_samples_total{job="memtop"}[1m])')[0]["value"][1]) >= 2,
             60, "two scrapes of memtop")
    # Prometheus parsed the exposition without complaint.
    targets = api(port, "/api/v1/targets")["data"]["activeTargets"]
    assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]
    assert float(query(port, 'up{job="memtop"}')[0]["value"][1]) == 1

    # The child's RSS as Prometheus stored it, against its VmRSS read now.
    rss = query(port, f'memtop_process_rss_bytes{{pid="{target.pid}"}}')
    assert len(rss) == 1 and rss[0]["metric"]["comm"].startswith("python")
    assert float(rss[0]["value"][1]) == pytest.approx(vm_rss(target.pid), rel=0.05)
    assert float(query(port, f'memtop_process_pss_bytes{{pid="{target.pid}"}}')[0]["value"][1]) > 40 << 20

    memtotal = query(port, 'memtop_meminfo_bytes{field="MemTotal"}')
    with open("/proc/meminfo") as f:
        expected = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    assert float(memtotal[0]["value"][1]) == expected

    # Counters give rates; PSI ratios are ratios.
    faults = query(port, "rate(memtop_vmstat_page_faults_total[1m])")
    assert len(faults) == 1 and float(faults[0]["value"][1]) >= 0
    ratios = query(port, 'memtop_pressure_ratio{resource="memory"}')
    assert len(ratios) == 6 and all(0 <= float(r["value"][1]) <= 1 for r in ratios)

    # Every expression of the Grafana dashboard is valid PromQL for this Prometheus.
    dashboard = json.loads((REPO / "contrib" / "grafana" / "memtop-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    answered = 0
    for expr in exprs:
        concrete = expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
        if query(port, concrete):
            answered += 1
    assert answered >= len(exprs) // 2  # most panels have data already (heap needs --heap)


@pytest.mark.skipif(not IS_ROOT, reason="reading another mount namespace's mounts needs root")
def test_prometheus_stores_a_mount_point_that_is_not_utf8_as_its_escaped_name(children, prometheus, tmp_path):
    from memtop.text import printable
    from tests.export_support import HostileMount

    # GIVEN a tmpfs that a user mounted on a directory whose name is not UTF-8
    mount = HostileMount(tmp_path)
    try:
        _exporter, _host, exporter_port = start_exporter(children, "--interval", "1")
        port = prometheus(exporter_port)
        # THEN Prometheus scrapes memtop without error and stores the mount, its name escaped
        # (this test's own mount: the machine may hold others of the kind)
        shown = printable(mount.mountpoint)
        assert shown.endswith("memtop-hostile-\\xff\\xfe")
        series = wait_for(lambda: [s for s in query(port, 'memtop_tmpfs_used_bytes{mountpoint=~".*memtop-hostile-.*"}')
                                   if s["metric"]["mountpoint"] == shown], 60, "the hostile mount in Prometheus")
        targets = api(port, "/api/v1/targets")["data"]["activeTargets"]
        assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]
        assert len(series) == 1
        assert float(series[0]["value"][1]) >= 1 << 20
    finally:
        mount.close()
