"""The guard's metrics: its own registry, a bounded server, a textfile written safely."""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request

import pytest

from memtop.guard.metrics import GuardMetrics, UnsafeMetricsPath, serve, write_textfile


@pytest.fixture
def metrics():
    return GuardMetrics(dry_run=False, trigger="some 100000 1000000", pressure_file="/proc/pressure/memory")


@pytest.fixture
def server(metrics):
    srv, thread = serve(metrics, "127.0.0.1", 0)
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def test_every_series_is_there_from_the_start(metrics):
    text = metrics.render().decode()
    for line in ('memtop_guard_actions_total{action="trim",outcome="ok"} 0.0',
                 'memtop_guard_actions_total{action="evict",outcome="dry_run"} 0.0',
                 'memtop_guard_released_bytes_total{action="trim"} 0.0',
                 'memtop_guard_stall_seconds_total{kind="full"} 0.0',
                 'memtop_guard_candidates{state="eligible"} 0.0',
                 "memtop_guard_dry_run 0.0"):
        assert line in text
    assert 'mode="act"' in text and 'pressure_file="/proc/pressure/memory"' in text


def test_get_head_404_and_405(server, metrics):
    port = server.server_address[1]
    metrics.actions.labels("trim", "ok").inc(2)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'memtop_guard_actions_total{action="trim",outcome="ok"} 2.0' in body
    head = urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/metrics", method="HEAD"), timeout=10)
    assert head.status == 200 and head.read() == b""
    for path, method, code in (("/", "GET", 404), ("/metrics", "POST", 405)):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                                          data=b"x" if method == "POST" else None), timeout=10)
        assert e.value.code == code


def test_an_idle_client_delays_a_scrape_by_at_most_the_socket_timeout(server):
    port = server.server_address[1]
    # GIVEN a client that connects and never sends a request
    idle = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        # WHEN a scraper comes (with 15 s of patience)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=15).read()
        # THEN it is served once the idle connection timed out (5 s), and the server is still one thread
        assert b"memtop_guard_info" in body
        assert idle.recv(1) == b""  # the server closed the idle connection
    finally:
        idle.close()


def test_the_textfile_is_replaced_atomically_and_never_through_a_link(metrics, tmp_path):
    directory = tmp_path / "textfile"
    directory.mkdir(mode=0o755)
    path = directory / "guard.prom"
    write_textfile(metrics, str(path))
    assert b"memtop_guard_info" in path.read_bytes() and os.listdir(directory) == ["guard.prom"]
    # a planted link where the file goes is replaced, not followed
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    path.unlink()
    os.symlink(target, path)
    write_textfile(metrics, str(path))
    assert target.read_text() == "keep" and not path.is_symlink()
    # a directory others can write, or a link to a directory, is refused
    os.chmod(directory, 0o777)
    with pytest.raises(UnsafeMetricsPath):
        write_textfile(metrics, str(path))
    os.chmod(directory, 0o755)
    os.symlink(directory, tmp_path / "link")
    with pytest.raises(OSError):
        write_textfile(metrics, str(tmp_path / "link" / "guard.prom"))
