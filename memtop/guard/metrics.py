"""The guard's Prometheus metrics: its own registry (prometheus-client), served or written to a file.

Two ways out, both optional:

- ``--metrics-listen HOST:PORT``: one thread serves ``GET``/``HEAD /metrics`` one connection at a
  time, each with a 5 s socket timeout: a slow or idle client costs a scrape at most 5 s and never
  a thread or memory per connection (issue 15's bounds). Anything else is 404/405.
- ``--metrics-file PATH``: the node_exporter textfile collector's format, rewritten after every
  change (at most once a second) by writing a new file beside it and renaming it over (atomic).
  The directory must be root's or yours and writable by nobody else; the new file is created with
  O_EXCL|O_NOFOLLOW relative to that directory (no planted link is ever followed).

The guard's metrics live apart from ``memtop export``'s (see the README: the guard and the
exporter stay separate processes).
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from memtop import __version__
from memtop.text import printable

TRIM_OUTCOMES = ("ok", "refused", "failed", "gone", "unavailable", "dry_run")
EVICT_OUTCOMES = ("complete", "partial", "unknown", "failed", "refused", "dry_run")
CANDIDATE_STATES = ("eligible", "cooldown", "below_minimum", "unknown_release", "refused", "excluded", "not_walked")


class GuardMetrics:
    """Counters and gauges of one guard process (one registry, not the global one)."""

    def __init__(self, *, dry_run: bool, trigger: str, pressure_file: str):
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.lock = threading.Lock()
        self.changed = threading.Event()
        info = Gauge("memtop_guard_info", "The guard: version, trigger registered, pressure file watched, mode",
                     ["version", "trigger", "pressure_file", "mode"], registry=r)
        info.labels(__version__, trigger, printable(pressure_file), "dry-run" if dry_run else "act").set(1)
        self.dry_run = Gauge("memtop_guard_dry_run", "1 when the guard only logs its choices (--dry-run)", registry=r)
        self.dry_run.set(1 if dry_run else 0)
        self.pressure_active = Gauge("memtop_guard_pressure_active",
                                     "1 while the guard sees memory pressure (an episode is running)", registry=r)
        self.pressure_events = Counter("memtop_guard_pressure_events", "PSI trigger events received",
                                       ["source"], registry=r)
        self.episodes = Counter("memtop_guard_episodes", "Pressure episodes (trigger event to pressure gone)", registry=r)
        self.stall = Counter("memtop_guard_stall_seconds",
                             "Memory stall time (PSI total) accumulated during pressure episodes", ["kind"], registry=r)
        self.action_stall = Counter("memtop_guard_action_stall_seconds",
                                    "Memory stall time (PSI some total) accumulated while the guard's actions ran",
                                    ["action"], registry=r)
        self.actions = Counter("memtop_guard_actions", "Actions decided, by outcome (dry_run: logged, not done)",
                               ["action", "outcome"], registry=r)
        self.released = Counter("memtop_guard_released_bytes",
                                "Bytes released: trim, the RSS drop; evict, the page cache dropped", ["action"], registry=r)
        self.predicted = Counter("memtop_guard_predicted_release_bytes",
                                 "The heap walk's predicted release of the trims attempted", registry=r)
        self.stopped = Counter("memtop_guard_process_stopped_seconds",
                               "Time processes were stopped by the guard's trims (gdb attach to detach)", registry=r)
        self.stop_limit_hits = Counter("memtop_guard_stop_limit_hits",
                                       "Times a trim was held back by the stops-per-minute cap", registry=r)
        self.walks = Counter("memtop_guard_heap_walks", "Read-only heap walks (trim predictions)", registry=r)
        self.walk_cpu = Counter("memtop_guard_heap_walk_cpu_seconds", "CPU time of the heap walks", registry=r)
        self.candidates = Gauge("memtop_guard_candidates", "Processes at the last ranking, by state",
                                ["state"], registry=r)
        self.last_action = Gauge("memtop_guard_last_action_timestamp_seconds",
                                 "Unix time of the last action decided", registry=r)
        for outcome in TRIM_OUTCOMES:
            self.actions.labels("trim", outcome)
        for outcome in EVICT_OUTCOMES:
            self.actions.labels("evict", outcome)
        for action in ("trim", "evict"):
            self.released.labels(action)
            self.action_stall.labels(action)
        for kind in ("some", "full"):
            self.stall.labels(kind)
        for source in ("trigger", "injected"):
            self.pressure_events.labels(source)
        for state in CANDIDATE_STATES:
            self.candidates.labels(state).set(0)

    def touch(self) -> None:
        self.changed.set()

    def render(self) -> bytes:
        with self.lock:
            return generate_latest(self.registry)


# --- serving -----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    timeout = 5  # StreamRequestHandler: the socket's timeout, for reading the request and writing
    server_version = "memtop-guard"
    sys_version = ""

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        pass

    def _send(self, head_only: bool) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404)
            return
        body = self.server.metrics.render()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE_LATEST)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - the stdlib's name
        self._send(False)

    def do_HEAD(self):  # noqa: N802
        self._send(True)

    def _refuse(self):
        self.send_error(405)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815


class _Server(HTTPServer):
    """One connection at a time (no thread per connection): bounded whatever clients do."""

    allow_reuse_address = True
    request_queue_size = 16

    def handle_error(self, request, client_address):
        pass  # a client that timed out or went away: nothing to report


def serve(metrics: GuardMetrics, host: str, port: int) -> tuple[_Server, threading.Thread]:
    """Start the server in a daemon thread; OSError if the address cannot be bound."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("_GuardServer", (_Server,), {"address_family": family})
    server = server_class((host, port), _Handler)
    server.metrics = metrics
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                              name="memtop-guard-metrics", daemon=True)
    thread.start()
    return server, thread


# --- the textfile --------------------------------------------------------------------------------


class UnsafeMetricsPath(OSError):
    def __init__(self, message: str):
        super().__init__(errno.EPERM, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def write_textfile(metrics: GuardMetrics, path: str) -> None:
    """Write the metrics to ``path`` atomically (see the module doc); OSError if it cannot."""
    directory, name = os.path.split(path)
    if not name or name.startswith("."):
        raise UnsafeMetricsPath(f"{printable(path)}: not a file name")
    dir_fd = os.open(directory or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        st = os.fstat(dir_fd)
        if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
            raise UnsafeMetricsPath(f"the metrics directory {printable(directory)} is owned by uid {st.st_uid} or "
                                    f"writable by group or others (mode {stat_mod.S_IMODE(st.st_mode):04o})")
        tmp = f".{name}.{os.getpid()}.tmp"
        try:
            os.unlink(tmp, dir_fd=dir_fd)  # a leftover of this PID (a crash); never a link followed
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
        try:
            os.write(fd, metrics.render())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


class TextfileWriter(threading.Thread):
    """Rewrites the textfile when the metrics changed, at most once a second; reports a failure once."""

    def __init__(self, metrics: GuardMetrics, path: str, on_error):
        super().__init__(name="memtop-guard-textfile", daemon=True)
        self.metrics = metrics
        self.path = path
        self.on_error = on_error
        self.finished = threading.Event()
        self._failed = False

    def write_now(self) -> None:
        try:
            write_textfile(self.metrics, self.path)
            self._failed = False
        except OSError as e:
            if not self._failed:
                self.on_error(f"cannot write the metrics file {printable(self.path)}: {e.strerror or e}")
            self._failed = True

    def run(self) -> None:
        while not self.finished.is_set():
            if self.metrics.changed.wait(timeout=15):
                self.metrics.changed.clear()
            if self.finished.is_set():
                break
            self.write_now()
            time.sleep(1.0)

    def stop(self) -> None:
        self.finished.set()
        self.metrics.changed.set()
        self.join(timeout=5)
        self.write_now()
