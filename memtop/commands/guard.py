"""``memtop guard``: reclaim free-but-kept heap and one-pass page cache under memory pressure.

A foreground daemon (systemd: contrib/systemd/memtop-guard.service). ``--dry-run`` is the
default: it logs the choices it would make and touches nothing; ``--act`` acts. See
:mod:`memtop.guard` and the README's "Pressure guard" section.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from memtop.commands import CliError
from memtop.text import printable

NAME = "guard"
HELP = ("under memory pressure (a PSI trigger), trim the processes holding the most free heap, then evict "
        "configured files; dry run by default")


def add_arguments(parser) -> None:
    from memtop.guard import defaults as c

    parser.add_argument("--config", metavar="FILE",
                        help="a TOML file with the same settings (owned by root or you, writable by nobody else); "
                             "flags win over it, lists add up")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", dest="dry_run", action="store_const", const=True, default=None,
                      help="log the choices, act on nothing (the default)")
    mode.add_argument("--act", dest="dry_run", action="store_const", const=False,
                      help="act: trim and evict (every action is written to the audit log)")
    parser.add_argument("--trigger", metavar="SPEC",
                        help=f"PSI trigger 'some|full THRESHOLD_US WINDOW_US' (default '{c.DEFAULT_TRIGGER}': "
                             "100 ms of memory stall per 1 s)")
    parser.add_argument("--pressure-cgroup", metavar="PATH",
                        help="watch this cgroup v2 cgroup's memory.pressure instead of /proc/pressure/memory")
    parser.add_argument("--min-release", metavar="SIZE",
                        help=f"do not stop a process for a predicted release under SIZE (default "
                             f"{c.DEFAULT_MIN_RELEASE >> 20}M)")
    parser.add_argument("--cooldown", metavar="S",
                        help=f"never the same process twice within S seconds (default {c.DEFAULT_COOLDOWN_S:g}; "
                             "90s, 5m)")
    parser.add_argument("--max-stops-per-minute", metavar="N",
                        help=f"at most N trims (process stops) in any minute (default {c.DEFAULT_MAX_STOPS_PER_MINUTE})")
    parser.add_argument("--walk-budget", metavar="S",
                        help=f"CPU seconds of read-only heap walks per minute (default {c.DEFAULT_WALK_BUDGET_S:g})")
    parser.add_argument("--cache-age", metavar="S",
                        help=f"keep a process's predicted release S seconds (default {c.DEFAULT_CACHE_AGE_S:g})")
    parser.add_argument("--timeout", metavar="S",
                        help=f"a trim's timeout: lock wait and call (default {c.DEFAULT_TIMEOUT_S:g})")
    idle = parser.add_mutually_exclusive_group()
    idle.add_argument("--idle-walks", dest="idle_walks", action="store_const", const=True, default=None,
                      help="keep the ranking warm while there is no pressure (the default)")
    idle.add_argument("--no-idle-walks", dest="idle_walks", action="store_const", const=False,
                      help="walk heaps only under pressure")
    for side in ("allow", "deny"):
        parser.add_argument(f"--{side}-name", dest=f"{side}_names", action="append", metavar="GLOB",
                            help=f"{side} processes whose name (comm) matches GLOB (repeatable)")
        parser.add_argument(f"--{side}-cgroup", dest=f"{side}_cgroups", action="append", metavar="GLOB",
                            help=f"{side} processes whose cgroup path matches GLOB, e.g. '/workload/*' (repeatable)")
        parser.add_argument(f"--{side}-user", dest=f"{side}_users", action="append", metavar="USER",
                            help=f"{side} processes of USER (name or uid; repeatable)")
    parser.add_argument("--evict", action="append", metavar="GLOB",
                        help="after trims, drop the page cache of the regular files matching GLOB (absolute; ** "
                             "for subdirectories; repeatable)")
    parser.add_argument("--evict-interval", metavar="S",
                        help="at most one evict pass per S seconds (default 60)")
    parser.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics at /metrics")
    parser.add_argument("--metrics-file", metavar="PATH",
                        help="write Prometheus metrics to PATH (node_exporter textfile format)")
    parser.add_argument("--json", action="store_true", help="log one JSON object per line")
    parser.add_argument("--duration", type=float, metavar="S", default=None,
                        help="stop after S seconds (default: run until SIGTERM or Ctrl-C)")
    # Test hook (README, "Pressure guard"): a pipe inherited from the test; every byte written to
    # it counts as one PSI trigger event. The real trigger stays registered beside it.
    parser.add_argument("--inject-events-fd", type=int, metavar="FD", default=None, help=argparse.SUPPRESS)


def _config(args):
    from memtop.guard.config import ConfigError, UnsafeConfig, build_config, read_config_file

    file_values = None
    if args.config:
        try:
            file_values = read_config_file(args.config)
        except UnsafeConfig as e:
            raise CliError(str(e)) from None
    return build_config(
        file_values, config_file=args.config, dry_run=args.dry_run, trigger=args.trigger,
        pressure_cgroup=args.pressure_cgroup, min_release=args.min_release, cooldown=args.cooldown,
        max_stops_per_minute=args.max_stops_per_minute, walk_budget=args.walk_budget, cache_age=args.cache_age,
        timeout=args.timeout, idle_walks=args.idle_walks,
        allow_names=args.allow_names, deny_names=args.deny_names, allow_cgroups=args.allow_cgroups,
        deny_cgroups=args.deny_cgroups, allow_users=args.allow_users, deny_users=args.deny_users,
        evict=args.evict, evict_interval=args.evict_interval, metrics_listen=args.metrics_listen,
        metrics_file=args.metrics_file)


def _is_loopback(address: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    from memtop.guard.config import ConfigError
    from memtop.guard.engine import AuditFailure, EventLog, Guard
    from memtop.guard.pressure import PressureSource, PressureSourceError

    try:
        config = _config(args)
    except ConfigError as e:
        print(f"memtop guard: {printable(str(e))}", file=sys.stderr)
        return 2
    if args.duration is not None and not 0 < args.duration <= 10 * 365 * 86400:
        print("memtop guard: --duration must be more than 0 seconds", file=sys.stderr)
        return 2
    if getattr(args, "read_only", False) and not config.dry_run:
        raise CliError("memtop runs with --read-only: the guard can only --dry-run")
    log = EventLog(sys.stdout, json_lines=args.json)
    if not config.dry_run:
        from memtop.heap import gdb

        try:
            gdb.gdb_path()
        except gdb.GdbUnavailable as e:
            raise CliError(f"cannot act: {e}") from None
    if os.geteuid() != 0:
        log.emit("note", f"note: not root (uid {os.geteuid()}): only your own processes can be walked and trimmed",
                 note="not root")
    inject = args.inject_events_fd
    if inject is not None:
        try:
            os.fstat(inject)
        except OSError:
            print(f"memtop guard: --inject-events-fd {inject}: not an open file descriptor", file=sys.stderr)
            return 2
    try:
        source = PressureSource(config.trigger, cgroup=config.pressure_cgroup, inject_fd=inject, root=Path(args.proc))
    except PressureSourceError as e:
        raise CliError(str(e)) from None

    metrics = server = writer = None
    old_handlers = {}
    try:
        if config.metrics_listen or config.metrics_file:
            from memtop.guard import metrics as metrics_mod

            metrics = metrics_mod.GuardMetrics(dry_run=config.dry_run, trigger=source.spec.text(),
                                               pressure_file=source.path)
            if config.metrics_listen:
                host, port = config.metrics_listen
                try:
                    server, _ = metrics_mod.serve(metrics, host, port)
                except OSError as e:
                    raise CliError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
                bound = server.server_address
                log.emit("metrics", f"metrics at http://{bound[0]}:{bound[1]}/metrics", host=bound[0], port=bound[1])
                if not _is_loopback(bound[0]):
                    log.emit("note", f"note: the metrics at {bound[0]}:{bound[1]} can be reached from other machines, "
                                     "with no authentication", note="metrics not on loopback")
            if config.metrics_file:
                writer = metrics_mod.TextfileWriter(metrics, config.metrics_file,
                                                    lambda msg: log.emit("error", f"memtop guard: {msg}", error=msg))
                writer.write_now()
                writer.start()
        guard = Guard(config, source, log, metrics, root=Path(args.proc))

        # A signal only asks the loop to stop: a trim in flight (a gdb call) finishes or times out
        # first (killing memtop mid-call could leave the process inside malloc_trim with gdb's frame).
        def request_stop(signum, frame):
            source.request_stop()

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            old_handlers[sig] = signal.signal(sig, request_stop)
        return guard.run(args.duration)
    except AuditFailure as e:  # the start record could not be written
        raise CliError(f"{e}; the guard does not act without its audit log") from None
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        if writer is not None:
            writer.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
        source.close()
