"""`memtop export` against hostile users and clients: idle and slow connections cost no thread
and never stop a scrape, every connection has a deadline, labels from names any user chooses
(a tmpfs mount point that is not UTF-8, a device with escape sequences) are valid and escaped,
no source stops the sampling, a dead sampler makes /metrics fail with the reason, HEAD and
Accept-Encoding q-values."""

from __future__ import annotations

import gzip
import http.client
import os
import re
import socket
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from memtop.commands.export import MAX_CONNECTIONS, REQUEST_TIMEOUT_S
from memtop.text import printable
from tests.export_support import HostileMount, get, metric_value, start_exporter, vm_rss
from tests.support import wait_until


def threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def urlopen(port: int, path: str = "/metrics", method: str = "GET", headers: dict | None = None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers or {})
    return urllib.request.urlopen(request, timeout=10)


def closed_by_server(s: socket.socket) -> bool:
    """True once the server has closed (or reset) the connection."""
    s.setblocking(False)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        s.setblocking(True)


@pytest.fixture
def sockets():
    held: list[socket.socket] = []
    yield held
    for s in held:
        s.close()


def connect(port: int, held: list, partial: bool = False) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    held.append(s)
    if partial:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    return s


def test_idle_connections_cost_no_thread_and_scrapes_go_on(children, sockets):
    # GIVEN an exporter, and 200 idle connections (half of them with a request cut in the middle)
    exporter, _host, port = start_exporter(children, "--interval", "1")
    assert urlopen(port).status == 200
    threads_before, rss_before = threads(exporter.pid), vm_rss(exporter.pid)
    for i in range(200):
        connect(port, sockets, partial=bool(i % 2))
    time.sleep(1)
    # THEN the exporter has no more threads than before (no thread per connection), little more
    # memory, and a scrape is answered at once
    assert threads(exporter.pid) == threads_before, (threads_before, threads(exporter.pid))
    assert vm_rss(exporter.pid) - rss_before < 8 << 20
    t0 = time.monotonic()
    with urlopen(port) as response:
        assert response.status == 200 and b"memtop_exporter_samples_total" in response.read()
    assert time.monotonic() - t0 < REQUEST_TIMEOUT_S / 2
    assert not any(closed_by_server(s) for s in sockets)  # within their deadline, all still held


def test_more_connections_than_the_cap_close_the_oldest_and_a_scrape_still_gets_in(children, sockets):
    exporter, _host, port = start_exporter(children, "--interval", "1")
    # WHEN more idle connections than the cap are opened
    for _ in range(MAX_CONNECTIONS + 40):
        connect(port, sockets)
    # THEN the oldest ones are closed by the server, the newest held, never more than the cap
    wait_until(lambda: sum(closed_by_server(s) for s in sockets[:40]) == 40, timeout=10)
    assert not any(closed_by_server(s) for s in sockets[-100:])
    open_sockets = sum(1 for fd in os.listdir(f"/proc/{exporter.pid}/fd")
                       if os.readlink(f"/proc/{exporter.pid}/fd/{fd}").startswith("socket:"))
    # + the listening socket and the event loop's wake-up socket pair
    assert open_sockets <= MAX_CONNECTIONS + 3
    # AND a scrape still gets in
    with urlopen(port) as response:
        assert response.status == 200


def test_connections_have_a_deadline_that_trickling_does_not_extend(children, sockets):
    exporter, _host, port = start_exporter(children, "--interval", "1")
    silent = connect(port, sockets)
    partial = connect(port, sockets, partial=True)
    trickler = connect(port, sockets)
    # A keep-alive client that got its answer and then stays idle
    keeper = connect(port, sockets)
    keeper.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    sent = 0
    # WHEN one client sends a byte every 0.25 s (it would take 30 s to finish its request)
    while time.monotonic() - started < REQUEST_TIMEOUT_S + 3:
        try:
            trickler.sendall(request[sent:sent + 1])
            sent += 1
        except OSError:
            break
        time.sleep(0.25)
    # THEN every one of them was closed by the server once the deadline passed, not before
    elapsed = time.monotonic() - started
    assert elapsed < REQUEST_TIMEOUT_S + 3, "the trickling client was never cut off"
    assert elapsed >= REQUEST_TIMEOUT_S - 1
    for s in (silent, partial, trickler, keeper):
        wait_until(lambda: closed_by_server(s), timeout=5)
    assert get("127.0.0.1", port)[0] == 200


def test_a_client_that_does_not_read_never_stops_scrapes(children, sockets):
    exporter, _host, port = start_exporter(children, "--interval", "1", "--top", "200")
    # GIVEN a client that asks for /metrics 200 times in one go and never reads the answers
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", port))
    sockets.append(slow)
    slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
    time.sleep(0.5)
    # THEN other scrapes are answered meanwhile, quickly, and the exporter did not buffer 200 answers
    for _ in range(20):
        t0 = time.monotonic()
        assert get("127.0.0.1", port, timeout=5)[0] == 200
        assert time.monotonic() - t0 < 2
    body_size = len(get("127.0.0.1", port)[1])
    assert vm_rss(exporter.pid) < 200 * body_size + (200 << 20)
    # AND the slow client is cut off at the deadline
    wait_until(lambda: closed_by_server(slow), timeout=REQUEST_TIMEOUT_S + 5)


def test_head_is_get_without_the_body(children):
    exporter, _host, port = start_exporter(children, "--interval", "60")  # one sample: same body
    with urlopen(port) as response:
        body = response.read()
    with urlopen(port, method="HEAD") as response:
        assert response.status == 200
        assert int(response.getheader("Content-Length")) == len(body)
        assert response.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
        assert response.read() == b""
    # On the wire: the head, then nothing (the connection is closed as asked)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and rest == b""
    # Other methods are still refused, and say what is allowed
    try:
        urlopen(port, method="POST")
        raise AssertionError("POST was accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 405 and e.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("accept, gzipped", [
    ("gzip", True), ("gzip;q=0", False), ("gzip; q=0.0", False), ("GZIP;Q=0.5", True), ("deflate, gzip;q=0", False),
    ("*", True), ("*;q=0", False), ("identity", False), ("br, *;q=0.1", True), ("*, gzip;q=0", False),
    ("x-gzip", True), ("gzip;q=abc", False), ("", False),
])
def test_accept_encoding_weights(children, accept, gzipped):
    exporter, _host, port = start_exporter(children, "--interval", "60")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", "/metrics", skip_accept_encoding=True)
    if accept:
        conn.putheader("Accept-Encoding", accept)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 200
    assert (response.getheader("Content-Encoding") == "gzip") == gzipped
    text = gzip.decompress(body) if gzipped else body
    assert b"# TYPE memtop_meminfo_bytes gauge" in text


@pytest.mark.parametrize("request_bytes, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /metrics HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 400),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
], ids=["garbage", "http2", "no-host", "body", "huge-head"])
def test_malformed_requests_get_an_error_and_a_closed_connection(children, request_bytes, status):
    exporter, _host, port = start_exporter(children, "--interval", "60")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request_bytes)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(f"HTTP/1.1 {status} ".encode()), data[:100]
    assert exporter.alive() and get("127.0.0.1", port)[0] == 200


def _exposition_checks(text: str) -> None:
    """Strict UTF-8, no control character but newlines, and Prometheus' own parser reads it."""
    assert not any(ord(c) < 0x20 and c != "\n" or 0x7F <= ord(c) <= 0x9F for c in text)
    return list(text_string_to_metric_families(text))


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another mount namespace's mounts needs root")
def test_a_mount_point_that_is_not_utf8_is_exported_escaped_from_the_start(children, tmp_path):
    # GIVEN a tmpfs that a user mounted on a directory whose name is not UTF-8
    mount = HostileMount(tmp_path)
    try:
        # WHEN the exporter starts (it crashed here)
        exporter, _host, port = start_exporter(children, "--interval", "0.5")
        status, body = get("127.0.0.1", port)
        # THEN the scrape is valid UTF-8, Prometheus' parser reads it, the mount is a series whose
        # labels show the bytes and the escape sequences as visible escapes, and tmpfs is read
        assert status == 200
        families = _exposition_checks(body.decode("utf-8"))
        shown = printable(mount.mountpoint)  # this test's own mount: the machine may hold others
        assert shown.endswith("memtop-hostile-\\xff\\xfe")
        used = [s for f in families if f.name == "memtop_tmpfs_used_bytes" for s in f.samples
                if s.labels["mountpoint"] == shown]
        assert len(used) == 1, [s.labels for f in families if f.name == "memtop_tmpfs_used_bytes" for s in f.samples]
        assert used[0].labels["fstype"] == "tmpfs" and re.fullmatch(r"\d+:\d+", used[0].labels["device"])
        assert used[0].value >= 1 << 20
        assert metric_value(body.decode(), 'memtop_exporter_source_ok{source="tmpfs"}') == 1
    finally:
        mount.close()
    assert exporter.alive()


@pytest.mark.skipif(os.geteuid() != 0, reason="reading another mount namespace's mounts needs root")
def test_a_mount_point_that_is_not_utf8_appearing_later_does_not_stop_sampling(children, tmp_path):
    exporter, _host, port = start_exporter(children, "--interval", "0.5")
    first = metric_value(get("127.0.0.1", port)[1].decode(), "memtop_exporter_samples_total")
    # WHEN the hostile mount appears while the exporter runs (it killed the sampling thread)
    mount = HostileMount(tmp_path)
    try:
        # THEN the samples go on, and they include the mount
        def later():
            text = get("127.0.0.1", port)[1].decode()
            shown = printable(mount.mountpoint).replace("\\", "\\\\")  # as the exposition escapes it
            return metric_value(text, "memtop_exporter_samples_total") >= first + 4 and shown in text and text
        text = wait_until(later, timeout=30)
        _exposition_checks(text)
    finally:
        mount.close()
    exporter.proc.terminate()
    assert exporter.proc.wait(timeout=30) == 0
    err = exporter.proc.stderr.read().decode()
    assert "Traceback" not in err and "sampling failed" not in err, err
