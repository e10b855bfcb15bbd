"""``memtop export [--listen 127.0.0.1:9105] [--interval S] [--top N] [--heap]``: a Prometheus
exporter.

A background thread samples every ``--interval`` seconds (memtop.collect.export) and publishes
the metric families (memtop.output.prometheus); the HTTP server answers ``GET /metrics`` from the
latest sample, so scrapes never read /proc. Nothing else is served: no action, no other path
(404), no other method (405). It listens on loopback unless told otherwise, and warns when not.
Ctrl-C or SIGTERM stops it with exit status 0.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from memtop.commands import CliError, interval_seconds

NAME = "export"
HELP = "Prometheus exporter: serve memtop's figures on http://127.0.0.1:9105/metrics"

DEFAULT_LISTEN = "127.0.0.1:9105"
DEFAULT_INTERVAL_S = 5.0
MAX_TOP = 1000


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT``, ``:PORT`` (every address) or ``PORT`` (loopback).

    Port 0 asks the kernel for a free port (the one chosen is printed).
    """
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise argparse.ArgumentTypeError(f"{text!r}: expected [IPv6]:PORT, e.g. [::1]:9105")
    elif text.isdigit():
        host, port = "127.0.0.1", text
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:9105")
        if ":" in host:
            raise argparse.ArgumentTypeError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9105")
    if not port.isascii() or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: the port {port!r} is not a number")
    number = int(port)
    if number > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: the port must be 0-65535, not {number}")
    return host or "0.0.0.0", number


def top_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not (1 <= value <= MAX_TOP):
        raise argparse.ArgumentTypeError(f"must be 1-{MAX_TOP} (it bounds the pid/comm label values), not {value}")
    return value


def add_arguments(parser) -> None:
    # Checked in run(), not by argparse: a bad address is one line (exit 2), not usage + a line.
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                        help=f"address to serve /metrics on (default {DEFAULT_LISTEN}; port 0 picks a free one; "
                             "any other than loopback is reachable from other machines and prints a warning)")
    parser.add_argument("--interval", dest="export_interval", type=interval_seconds, default=DEFAULT_INTERVAL_S,
                        metavar="S", help=f"seconds between samples, 0.5-3600 (default {DEFAULT_INTERVAL_S:g}); "
                                          "scrapes read the latest sample")
    parser.add_argument("--top", type=top_arg, default=20, metavar="N",
                        help="per-process metrics for the N largest processes by RSS (default 20, at most 1000)")
    parser.add_argument("--heap", action="store_true",
                        help="also export glibc heap figures (in use / free / top) of the largest processes, "
                             "from a read-only walk of their heaps through /proc/PID/mem, each at most once a "
                             "minute; off by default: it reads other processes' memory (root or "
                             "CAP_SYS_PTRACE) and costs CPU in proportion to their heaps")
    parser.add_argument("--heap-top", type=top_arg, default=5, metavar="K",
                        help="with --heap: walk the heaps of the K largest processes (default 5)")


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        """No line per request: Prometheus scrapes every few seconds."""


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a stuck client never holds up the exit
    # socketserver's default listen backlog is 5: ten concurrent scrapers overflowed it and a
    # dropped SYN costs the client a 1 s retransmit (seen: p99 44 ms, max 2 s at concurrency 10).
    request_queue_size = 128


def make_server(host: str, port: int, app) -> WSGIServer:
    """Bind ``host:port`` (IPv4 or IPv6). Raises CliError with one line when that fails."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise CliError(f"cannot listen on {host}:{port}: unknown host {host!r} ({e.strerror})") from None
    except (UnicodeError, ValueError) as e:
        raise CliError(f"cannot listen on {host}:{port}: bad host name {host!r} ({e})") from None
    family, _, _, _, sockaddr = infos[0]
    server_class = type("_Server", (_Server,), {"address_family": family})
    try:
        server = server_class(sockaddr[:2] if family == socket.AF_INET else sockaddr, _QuietHandler)
    except OSError as e:
        why = e.strerror or str(e)
        if e.errno == errno.EADDRINUSE:
            why = "the port is already in use (is another exporter running?)"
        elif e.errno == errno.EACCES:
            why = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        elif e.errno == errno.EADDRNOTAVAIL:
            why = "no interface of this machine has that address"
        raise CliError(f"cannot listen on {_url_host(host)}:{port}: {why}") from None
    server.set_app(app)
    return server


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


# What generate_latest writes (prometheus-client >= 0.22 names its 1.0.0 variant "latest",
# which Prometheus before 3.0 does not know; every Prometheus reads 0.0.4).
TEXT_FORMAT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"


def wsgi_app(collector):
    """Only ``GET /metrics``: 404 for any other path, 405 for any other method.

    The body is the collector's latest exposition, rendered once per sample by the sampling
    thread (text format 0.0.4, which every Prometheus reads; gzip when the client accepts it).
    """
    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        plain = [("Content-Type", "text/plain; charset=utf-8")]
        if path != "/metrics":
            start_response("404 Not Found", plain)
            return [b"memtop export serves only GET /metrics\n"]
        if method != "GET":
            start_response("405 Method Not Allowed", plain + [("Allow", "GET")])
            return [b"memtop export serves only GET /metrics: it takes no action\n"]
        exposition = collector.exposition  # one read: the sampling thread may swap it meanwhile
        headers = [("Content-Type", TEXT_FORMAT_0_0_4)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = exposition.gzip
            headers.append(("Content-Encoding", "gzip"))
        else:
            body = exposition.text
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [body]

    return app


class _Stop(Exception):
    """Raised in the main thread by the SIGTERM/SIGINT handler."""


def _raise_stop(signum, frame):
    raise _Stop(signum)


def _sampling_loop(sampler, collector, interval: float, stop: threading.Event, first_done: float) -> None:
    """Sample every ``interval`` seconds (measured start to start) until ``stop`` is set."""
    last_error = None
    next_time = first_done + interval
    while not stop.wait(max(0.0, next_time - time.monotonic())):
        next_time = max(next_time + interval, time.monotonic())
        try:
            sample = sampler.sample()
        except Exception as e:  # keep serving the last sample; say what went wrong, once
            message = f"memtop export: sampling failed ({type(e).__name__}: {e}); serving the previous sample"
            if message != last_error:
                print(message, file=sys.stderr, flush=True)
                last_error = message
            continue
        last_error = None
        _report_sources(sample, collector.latest)
        collector.publish(sample)


def _report_sources(sample, previous) -> None:
    """Say on stderr when a source becomes unreadable (once, with the reason) or readable again."""
    before = previous.errors if previous is not None else {}
    for source, reason in sample.errors.items():
        if source not in before:
            print(f"memtop export: {source}: not exported: {reason}", file=sys.stderr, flush=True)
    if previous is not None:
        for source in before:
            if source not in sample.errors:
                print(f"memtop export: {source}: readable again", file=sys.stderr, flush=True)


def run(args) -> int:
    from memtop.collect.export import ExportSampler
    from memtop.output.prometheus import MemtopCollector

    try:
        host, port = listen_address(args.listen)
    except argparse.ArgumentTypeError as e:
        print(f"memtop export: bad --listen {e}", file=sys.stderr)
        return 2
    # SIGTERM and Ctrl-C both end the exporter cleanly (status 0), whenever they come.
    old_handlers = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = None
    stop = threading.Event()
    threads: list[threading.Thread] = []
    sampler = None
    try:
        collector = MemtopCollector()
        server = make_server(host, port, wsgi_app(collector))  # bad --listen fails here, before any sampling
        bound_host, bound_port = server.server_address[:2]
        if not is_loopback(bound_host):
            print(f"memtop export: warning: listening on {_url_host(bound_host)}:{bound_port}, which other machines "
                  "can reach: the metrics name processes and their commands, with no authentication",
                  file=sys.stderr, flush=True)
        sampler = ExportSampler(Path(args.proc), top=args.top, heap=args.heap, heap_top=args.heap_top)
        sample = sampler.sample()  # the first scrape already has data
        _report_sources(sample, None)
        collector.publish(sample)
        first_done = time.monotonic()
        threads = [
            threading.Thread(target=_sampling_loop, name="memtop-export-sampler", daemon=True,
                             args=(sampler, collector, args.export_interval, stop, first_done)),
            threading.Thread(target=server.serve_forever, name="memtop-export-http", daemon=True,
                             kwargs={"poll_interval": 0.5}),
        ]
        for thread in threads:
            thread.start()
        print(f"memtop export: serving http://{_url_host(bound_host)}:{bound_port}/metrics "
              f"(sampling every {args.export_interval:g} s, top {args.top} processes"
              f"{', heap walks on' if args.heap else ''}); Ctrl-C stops", flush=True)
        while True:
            time.sleep(3600)
    except _Stop:
        pass
    except KeyboardInterrupt:
        pass
    finally:
        for sig in old_handlers:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        stop.set()
        if server is not None:
            if threads:
                server.shutdown()  # waits for serve_forever to return
            server.server_close()
        for thread in threads:
            thread.join(timeout=10)
        if sampler is not None and not any(t.is_alive() for t in threads):
            sampler.close()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    return 0
