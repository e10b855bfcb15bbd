"""`memtop export` as a user runs it: serving, only GET /metrics, bad --listen, clean exits,
1,000 scrapes at concurrency 10 with bounded RSS."""

from __future__ import annotations

import gzip
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.export_support import REPO, get, metric_value, start_exporter, vm_rss
from tests.support import python_child


def run_export(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memtop", "export", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_serves_metrics_of_a_real_process_and_nothing_else(children):
    target = python_child("import sys\nblock = bytearray(48 << 20)\nfor i in range(0, len(block), 4096): block[i] = 1\n"
                          "print('READY', flush=True)\nsys.stdin.readline()\n")
    children.append(target)
    exporter, host, port = start_exporter(children, "--interval", "1", "--top", "1000")
    status, body = get(host, port)
    text = body.decode()
    assert status == 200
    rss_lines = [line for line in text.splitlines()
                 if line.startswith("memtop_process_rss_bytes{") and f'pid="{target.pid}"' in line]
    assert len(rss_lines) == 1 and 'comm="python' in rss_lines[0]
    assert float(rss_lines[0].split()[-1]) == pytest.approx(vm_rss(target.pid), rel=0.05)
    assert "memtop_process_open_fds{comm=" in text
    # The text format every Prometheus reads, gzipped when asked, the same text
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
    response = conn.getresponse()
    assert response.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    assert response.getheader("Content-Encoding") == "gzip"
    assert b"# TYPE memtop_process_rss_bytes gauge" in gzip.decompress(response.read())
    conn.close()
    # Only GET /metrics: no other path, no other method (it takes no action)
    assert get(host, port, "/")[0] == 404
    assert get(host, port, "/metrics/../admin")[0] == 404
    for method in ("POST", "PUT", "DELETE"):
        assert get(host, port, "/metrics", method=method)[0] == 405
    # SIGTERM ends it cleanly
    exporter.proc.send_signal(signal.SIGTERM)
    assert exporter.proc.wait(timeout=30) == 0
    assert b"Traceback" not in exporter.proc.stderr.read()


def test_ctrl_c_ends_it_with_status_0(children):
    exporter, _host, _port = start_exporter(children, "--interval", "1")
    exporter.proc.send_signal(signal.SIGINT)
    assert exporter.proc.wait(timeout=30) == 0
    assert b"Traceback" not in exporter.proc.stderr.read()


def test_a_port_in_use_is_one_line_and_status_1():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_export("--listen", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert result.stderr.strip() == f"memtop: cannot listen on 127.0.0.1:{port}: the port is already in use (is another exporter running?)"


@pytest.mark.parametrize("listen, words", [
    ("no-such-host.invalid:9105", "unknown host 'no-such-host.invalid'"),
    ("192.0.2.1:9105", "no interface of this machine has that address"),  # TEST-NET-1, never local
])
def test_a_bad_host_is_one_line_and_status_1(listen, words):
    result = run_export("--listen", listen)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr and "Traceback" not in result.stderr


def test_a_non_loopback_address_works_with_a_warning(children):
    exporter, _host, port = start_exporter(children, "--listen", "0.0.0.0:0", "--interval", "1")
    status, body = get("127.0.0.1", port)
    assert status == 200 and b"memtop_meminfo_bytes" in body
    exporter.proc.send_signal(signal.SIGTERM)
    assert exporter.proc.wait(timeout=30) == 0
    err = exporter.proc.stderr.read().decode()
    assert "warning: listening on 0.0.0.0:" in err and "other machines" in err


def test_a_thousand_scrapes_at_concurrency_10_cost_no_sampling_and_bounded_rss(children):
    interval = 1.0
    exporter, host, port = start_exporter(children, "--interval", str(interval), "--top", "50")

    def scrape(_):
        status, body = get(host, port)
        ok = status == 200 and b"memtop_exporter_samples_total " in body and body.endswith(b"\n")
        return ok, body

    def batch(n):
        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(scrape, range(n)))
        assert all(ok for ok, _ in results), [body[:200] for ok, body in results if not ok][:3]
        return results

    started = time.monotonic()
    first = batch(100)
    samples_at_start = min(metric_value(body.decode(), "memtop_exporter_samples_total") for _, body in first)
    rss_after_100 = vm_rss(exporter.pid)
    last = batch(900)
    rss_after_1000 = vm_rss(exporter.pid)
    elapsed = time.monotonic() - started
    samples_at_end = max(metric_value(body.decode(), "memtop_exporter_samples_total") for _, body in last)
    # Scrapes never sample: the sample count follows the clock (one per interval), not the 1,000 scrapes.
    assert samples_at_end - samples_at_start <= elapsed / interval + 2
    # RSS bounded: 900 more scrapes add no more than a generous 24 MiB (a leak of one 30 KiB
    # response per scrape would be 26 MiB).
    assert rss_after_1000 - rss_after_100 < 24 << 20, (rss_after_100, rss_after_1000)
    assert exporter.alive()


HEAP_TARGET = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* 4800 chunks of 64 KiB (below the 128 KiB mmap threshold: all in the brk heap), every other
   one freed: ~150 MiB in use, ~150 MiB free in glibc's bins that no trim can return. */
int main(void) {
    enum { N = 4800, SIZE = 64 << 10 };
    static char *blocks[N];
    for (int i = 0; i < N; i++) { blocks[i] = malloc(SIZE); memset(blocks[i], 1, SIZE); }
    for (int i = 0; i < N; i += 2) free(blocks[i]);
    printf("READY\n"); fflush(stdout);
    getchar();
    return 0;
}
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's heap through /proc/PID/mem needs root")
def test_heap_figures_with_the_heap_switch(children, gcc):
    from tests.support import compile_c
    target = children.start([compile_c(HEAP_TARGET, name="export-heap")])
    exporter, host, port = start_exporter(children, "--interval", "1", "--top", "1000", "--heap", "--heap-top", "5")
    heap = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(heap) < 3:
        text = get(host, port)[1].decode()
        heap = {line.split('state="')[1].split('"')[0]: float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("memtop_process_heap_bytes{") and f'pid="{target.pid}"' in line}
        time.sleep(0.5)
    assert set(heap) == {"in_use", "free", "top"}, heap
    assert 150 << 20 <= heap["in_use"] < 170 << 20
    assert 140 << 20 <= heap["free"] <= 155 << 20
    assert 'memtop_exporter_source_ok{source="heap"} 1.0' in text
