"""``memtop export [--listen 127.0.0.1:9105] [--interval S] [--top N] [--heap]``: a Prometheus
exporter.

A background thread samples every ``--interval`` seconds (memtop.collect.export) and publishes
the metric families (memtop.output.prometheus); the HTTP server answers ``GET /metrics`` (and
``HEAD``) from the latest sample, so scrapes never read /proc. Nothing else is served: no action,
no other path (404), no other method (405). It listens on loopback unless told otherwise, and
warns when not. Ctrl-C or SIGTERM stops it with exit status 0.

Hostile clients: one thread holds every connection (no thread per client), each connection has
a deadline of REQUEST_TIMEOUT_S, and at most MAX_CONNECTIONS are held (a new one closes the one
that waited longest), so idle or slow clients cost bounded memory and never keep scrapes out.
A sampler that dies or stops delivering makes ``/metrics`` answer 503 with the reason (also on
stderr), never a frozen sample.
"""

from __future__ import annotations

import argparse
import errno
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from memtop.commands import CliError, interval_seconds
from memtop.text import printable

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


# --- the HTTP server ----------------------------------------------------------------------------------
# One thread runs an asyncio event loop that holds every connection: an idle or slow client costs
# a few KiB, never a thread. Every connection has a deadline (REQUEST_TIMEOUT_S from its start or
# its last response, for the next request to arrive whole and the response to be taken), and at
# most MAX_CONNECTIONS are held: one more closes the one that has waited longest, so that idle or
# slow clients never keep a scrape out (a scrape sends its request at once and is answered from
# memory in well under a millisecond).
REQUEST_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 256
MAX_REQUEST_HEAD = 8192  # request line and headers; more is refused (431)
LISTEN_BACKLOG = 128  # ten concurrent scrapers overflowed the default 5 (a dropped SYN costs 1 s)

# What generate_latest writes (prometheus-client >= 0.22 names its 1.0.0 variant "latest",
# which Prometheus before 3.0 does not know; every Prometheus reads 0.0.4).
TEXT_FORMAT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
_PLAIN = "text/plain; charset=utf-8"

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    version: str  # "HTTP/1.0" or "HTTP/1.1"
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    close: bool = False  # close the connection once sent

    def encode(self, head_only: bool, keep_alive: bool) -> bytes:
        import email.utils  # here: every command's module is imported to build the parser (7 ms)

        lines = [f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Error')}",
                 f"Date: {email.utils.formatdate(usegmt=True)}", *(f"{k}: {v}" for k, v in self.headers),
                 f"Content-Length: {len(self.body)}"]
        if not keep_alive or self.close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


class BadRequest(Exception):
    def __init__(self, status: int, why: str):
        super().__init__(why)
        self.status = status


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def parse_request(head: bytes) -> Request:
    """The request line and headers (RFC 9112), ``head`` without the blank line that ends it."""
    lines = head.decode("latin-1").split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while lines and not lines[0]:
        lines.pop(0)  # RFC 9112 2.2: a server SHOULD ignore empty lines before the request line
    if not lines:
        raise BadRequest(400, "empty request")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadRequest(505, f"unsupported version {version[:16]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):  # also refuses obsolete line folding (a leading space)
            raise BadRequest(400, "malformed header line")
        name = name.lower()
        value = value.strip(" \t")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if version == "HTTP/1.1" and "host" not in headers:
        raise BadRequest(400, "HTTP/1.1 request without Host")
    if "transfer-encoding" in headers or headers.get("content-length", "0").strip() not in ("", "0"):
        raise BadRequest(400, "a request body is not accepted")
    return Request(method, target, version, headers)


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether Accept-Encoding (RFC 9110 12.5.3) allows gzip: named (or ``x-gzip``, or ``*`` when
    gzip is not named) with a weight above 0; ``gzip;q=0`` means "not gzip"."""
    if not accept_encoding:
        return False
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, *params = (p.strip() for p in item.split(";"))
        coding = coding.lower()
        if not coding:
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not (0.0 <= q <= 1.0):  # also nan
                    q = 0.0
        weights[coding] = q
    for name in ("gzip", "x-gzip"):
        if name in weights:
            return weights[name] > 0
    return weights.get("*", 0.0) > 0


class _Connection:
    """One client (an asyncio protocol: the loop calls these methods). Not a subclass of
    asyncio.Protocol, so that importing this module does not import asyncio (and with it ssl:
    every command's module is imported to build the parser, the TUI's included)."""

    def __init__(self, server: "MetricsServer"):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.timer: asyncio.TimerHandle | None = None
        self.paused = False  # the client does not read: no further request is answered until it does
        self.closing = False

    def connection_made(self, transport):
        self.transport = transport
        self.server._opened(self)
        self._arm()

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.server.loop.call_later(self.server.timeout, self._expire)

    def _expire(self) -> None:
        # No whole request within the timeout, or the response not taken: drop it (abort also
        # drops what is still buffered for a client that does not read).
        self.close(abort=True)

    def close(self, abort: bool = False) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort() if abort else self.transport.close()
        self.closing = True

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.buffer += data
        self._answer()

    def _answer(self) -> None:
        while not self.closing and not self.paused:
            end = _head_end(self.buffer)
            if end is None:
                if len(self.buffer) > MAX_REQUEST_HEAD:
                    self._send(Response(431, (("Content-Type", _PLAIN),), b"request head too large\n", close=True),
                               False, False)
                return
            head, cut = end
            if head > MAX_REQUEST_HEAD:
                self._send(Response(431, (("Content-Type", _PLAIN),), b"request head too large\n", close=True),
                           False, False)
                return
            raw = bytes(self.buffer[:head])
            del self.buffer[:cut]
            try:
                request = parse_request(raw)
            except BadRequest as e:
                self._send(Response(e.status, (("Content-Type", _PLAIN),), f"{e}\n".encode(), close=True),
                           False, False)
                return
            response = self.server.app(request)
            self._send(response, request.method == "HEAD", request.keep_alive)

    def _send(self, response: Response, head_only: bool, keep_alive: bool) -> None:
        self.transport.write(response.encode(head_only, keep_alive))
        if response.close or not keep_alive:
            self.close()  # once what is buffered is sent (still under the deadline)
        self.server._answered(self)
        self._arm()

    def pause_writing(self) -> None:
        self.paused = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused = False
        if not self.closing:
            self.transport.resume_reading()
            self._answer()

    def eof_received(self) -> None:
        return None  # the transport closes (asyncio.Protocol's default)

    def connection_lost(self, exc) -> None:
        self.closing = True
        if self.timer is not None:
            self.timer.cancel()
        self.server._closed(self)


def _head_end(buffer: bytearray) -> tuple[int, int] | None:
    """(end of the request head, start of what follows) when the buffer holds a whole head."""
    crlf = buffer.find(b"\r\n\r\n")
    lf = buffer.find(b"\n\n")
    if crlf < 0 and lf < 0:
        return None
    if lf < 0 or (0 <= crlf < lf):
        return crlf, crlf + 4
    return lf, lf + 2


class MetricsServer:
    """Serves ``app(Request) -> Response`` on a listening socket, from one thread
    (:meth:`serve_forever`) that holds every connection; :meth:`shutdown` from any other thread."""

    def __init__(self, sock: socket.socket, app, *, timeout: float = REQUEST_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS):
        self.socket = sock
        self.server_address = sock.getsockname()
        self.app = app
        self.timeout = timeout
        self.max_connections = max_connections
        import asyncio

        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._loop_error)
        # Insertion-ordered: the first is the one that has waited longest (moved to the end
        # whenever it is answered).
        self.connections: dict[_Connection, None] = {}
        self.evicted = 0

    def _opened(self, conn: _Connection) -> None:
        self.connections[conn] = None
        while len(self.connections) > self.max_connections:
            oldest = next(iter(self.connections))
            del self.connections[oldest]
            self.evicted += 1
            oldest.close(abort=True)

    def _answered(self, conn: _Connection) -> None:
        if conn in self.connections:
            self.connections.pop(conn)
            self.connections[conn] = None

    def _closed(self, conn: _Connection) -> None:
        self.connections.pop(conn, None)

    def _loop_error(self, loop, context) -> None:
        # asyncio would log a traceback; one line is enough, and the loop goes on.
        error = context.get("exception")
        what = f"{type(error).__name__}: {error}" if error is not None else context.get("message", "?")
        print(f"memtop export: http: {printable(what, limit=300)}", file=sys.stderr, flush=True)

    def serve_forever(self) -> None:
        import asyncio

        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _Connection(self), sock=self.socket, backlog=LISTEN_BACKLOG))
        try:
            self.loop.run_forever()
        finally:
            server.close()
            for conn in list(self.connections):
                conn.close(abort=True)
            self.loop.run_until_complete(asyncio.sleep(0))  # let the transports close
            self.loop.close()

    def shutdown(self) -> None:
        if not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:  # closed meanwhile
                pass

    def server_close(self) -> None:
        self.socket.close()


def make_server(host: str, port: int, app, **kw) -> MetricsServer:
    """Bind ``host:port`` (IPv4 or IPv6). Raises CliError with one line when that fails."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise CliError(f"cannot listen on {host}:{port}: unknown host {host!r} ({e.strerror})") from None
    except (UnicodeError, ValueError) as e:
        raise CliError(f"cannot listen on {host}:{port}: bad host name {host!r} ({e})") from None
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr[:2] if family == socket.AF_INET else sockaddr)
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        why = e.strerror or str(e)
        if e.errno == errno.EADDRINUSE:
            why = "the port is already in use (is another exporter running?)"
        elif e.errno == errno.EACCES:
            why = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        elif e.errno == errno.EADDRNOTAVAIL:
            why = "no interface of this machine has that address"
        raise CliError(f"cannot listen on {_url_host(host)}:{port}: {why}") from None
    return MetricsServer(sock, app, **kw)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_loopback(address: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


# --- what /metrics answers ------------------------------------------------------------------------------


class SamplerHealth:
    """Whether the sampling thread still delivers: it is alive and its last sample is recent.

    The sampling thread calls :meth:`published` after every sample and :meth:`died` if it ends;
    a scrape calls :meth:`problem` (None: serve the latest sample).
    """

    def __init__(self, interval: float, stale_after: float | None = None, clock=time.monotonic):
        self.interval = interval
        # A sample may be slow on a big machine: stale only well past its due time.
        self.stale_after = stale_after if stale_after is not None else 3 * interval + 10.0
        self._clock = clock
        self.last_published: float | None = None
        self.last_error: str | None = None
        self.dead: str | None = None

    def published(self) -> None:
        self.last_published = self._clock()
        self.last_error = None

    def failed(self, reason: str) -> None:
        self.last_error = reason

    def died(self, reason: str) -> None:
        self.dead = reason

    def problem(self) -> str | None:
        if self.dead is not None:
            return f"the sampling thread stopped: {self.dead}"
        if self.last_published is None:
            return f"no sample yet{f' ({self.last_error})' if self.last_error else ''}"
        age = self._clock() - self.last_published
        if age > self.stale_after:
            why = f"; last error: {self.last_error}" if self.last_error else " (a read may be stuck)"
            return f"no new sample for {age:.0f} s (every {self.interval:g} s expected){why}"
        return None


def metrics_app(collector, health: SamplerHealth | None = None):
    """``GET`` and ``HEAD /metrics`` (any query string): 404 for any other path, 405 for any other
    method, 503 when the sampler is dead or stuck (with the reason).

    The body is the collector's latest exposition, rendered once per sample by the sampling
    thread (text format 0.0.4, which every Prometheus reads; gzip when the client accepts it).
    """
    def app(request: Request) -> Response:
        plain = (("Content-Type", _PLAIN),)
        if request.path != "/metrics":
            return Response(404, plain, b"memtop export serves only GET /metrics\n")
        if request.method not in ("GET", "HEAD"):
            return Response(405, plain + (("Allow", "GET, HEAD"),),
                            b"memtop export serves only GET /metrics: it takes no action\n", close=True)
        problem = health.problem() if health is not None else None
        if problem is not None:
            return Response(503, plain + (("Retry-After", "10"),),
                            f"memtop export: {printable(problem, limit=500)}\n".encode())
        exposition = collector.exposition  # one read: the sampling thread may swap it meanwhile
        headers = [("Content-Type", TEXT_FORMAT_0_0_4), ("Vary", "Accept-Encoding")]
        if accepts_gzip(request.headers.get("accept-encoding")):
            body = exposition.gzip
            headers.append(("Content-Encoding", "gzip"))
        else:
            body = exposition.text
        return Response(200, tuple(headers), body)

    return app


class _Stop(Exception):
    """Raised in the main thread by the SIGTERM/SIGINT handler."""


def _raise_stop(signum, frame):
    raise _Stop(signum)


def _say(text: str) -> None:
    print(f"memtop export: {printable(text, limit=2000)}", file=sys.stderr, flush=True)


def _sampling_loop(sampler, collector, health: SamplerHealth, interval: float, stop: threading.Event,
                   first_done: float) -> None:
    """Sample every ``interval`` seconds (measured start to start) until ``stop`` is set.

    A sample that fails (or whose exposition cannot be built) keeps the previous one served and
    is said once on stderr; if this thread ends any other way, ``health`` says why, so that
    scrapes get 503 rather than a frozen sample.
    """
    try:
        last_error = None
        next_time = first_done + interval
        while not stop.wait(max(0.0, next_time - time.monotonic())):
            next_time = max(next_time + interval, time.monotonic())
            try:
                sample = sampler.sample()
                previous = collector.latest
                collector.publish(sample)
            except Exception as e:  # keep serving the last sample; say what went wrong, once
                reason = f"sampling failed ({type(e).__name__}: {e})"
                health.failed(reason)
                if reason != last_error:
                    _say(f"{reason}; serving the previous sample")
                    last_error = reason
                continue
            last_error = None
            health.published()
            _report_sources(sample, previous)
    except BaseException as e:
        reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        health.died(reason)
        _say(f"the sampling thread stopped ({reason}): /metrics answers 503 from now on")
        # Not raised again: threading's hook would print a traceback; the line above says it.


def _report_sources(sample, previous) -> None:
    """Say on stderr when a source becomes unreadable (once, with the reason) or readable again."""
    before = previous.errors if previous is not None else {}
    for source, reason in sample.errors.items():
        if source not in before:
            _say(f"{source}: not exported: {reason}")
    if previous is not None:
        for source in before:
            if source not in sample.errors:
                _say(f"{source}: readable again")


class Exporter:
    """The running exporter: the HTTP server (bound at construction) and the sampling thread."""

    def __init__(self, sampler, host: str, port: int, interval: float, *, stale_after: float | None = None,
                 timeout: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS):
        from memtop.output.prometheus import MemtopCollector

        self.sampler = sampler
        self.interval = interval
        self.collector = MemtopCollector()
        self.health = SamplerHealth(interval, stale_after)
        self.server = make_server(host, port, metrics_app(self.collector, self.health), timeout=timeout,
                                  max_connections=max_connections)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    @property
    def address(self) -> tuple[str, int]:
        return self.server.server_address[:2]

    def start(self) -> None:
        """Take the first sample (so that the first scrape has data), then start both threads."""
        try:
            sample = self.sampler.sample()
            self.collector.publish(sample)
        except Exception as e:
            reason = f"sampling failed ({type(e).__name__}: {e})"
            self.health.failed(reason)
            _say(f"{reason}; /metrics answers 503 until a sample succeeds")
        else:
            self.health.published()
            _report_sources(sample, None)
        first_done = time.monotonic()
        self.threads = [
            threading.Thread(target=_sampling_loop, name="memtop-export-sampler", daemon=True,
                             args=(self.sampler, self.collector, self.health, self.interval, self.stop_event,
                                   first_done)),
            threading.Thread(target=self.server.serve_forever, name="memtop-export-http", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    @property
    def http_alive(self) -> bool:
        return len(self.threads) == 2 and self.threads[1].is_alive()

    def stop(self) -> None:
        self.stop_event.set()
        self.server.shutdown()
        for thread in self.threads:
            thread.join(timeout=10)
        self.server.server_close()
        if not any(t.is_alive() for t in self.threads):
            self.sampler.close()


def run(args) -> int:
    from memtop.collect.export import ExportSampler

    try:
        host, port = listen_address(args.listen)
    except argparse.ArgumentTypeError as e:
        print(f"memtop export: bad --listen {e}", file=sys.stderr)
        return 2
    # SIGTERM and Ctrl-C both end the exporter cleanly (status 0), whenever they come.
    old_handlers = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    exporter = None
    status = 0
    try:
        sampler = ExportSampler(Path(args.proc), top=args.top, heap=args.heap, heap_top=args.heap_top)
        try:
            exporter = Exporter(sampler, host, port, args.export_interval)  # bad --listen fails here
        except BaseException:
            sampler.close()
            raise
        bound_host, bound_port = exporter.address
        if not is_loopback(bound_host):
            _say(f"warning: listening on {_url_host(bound_host)}:{bound_port}, which other machines "
                 "can reach: the metrics name processes and their commands, with no authentication")
        exporter.start()
        print(f"memtop export: serving http://{_url_host(bound_host)}:{bound_port}/metrics "
              f"(sampling every {args.export_interval:g} s, top {args.top} processes"
              f"{', heap walks on' if args.heap else ''}); Ctrl-C stops", flush=True)
        while exporter.http_alive:
            time.sleep(1.0)
        _say("the HTTP server stopped")
        status = 1
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        for sig in old_handlers:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        if exporter is not None:
            exporter.stop()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    return status
