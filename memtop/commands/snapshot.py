"""``memtop snapshot [--json] [--pid PID]``: one sample of everything, for scripts and bug reports."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from memtop.commands import CliError, pid_arg, positive_int
from memtop.format import fmt_bytes, fmt_count, counted
from memtop.procfs import ProcfsError
from memtop.model.snapshot import buff_cache, memory_used
from memtop.text import json_dumps, printable

NAME = "snapshot"
HELP = "one sample of the system and its processes, as text or JSON"


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (schema in README)")
    # SUPPRESS: not given here, memtop's own --pid stands (`memtop --pid N snapshot` was
    # silently the whole machine: this default of None hid the one given before the command)
    parser.add_argument("--pid", type=pid_arg, default=argparse.SUPPRESS, metavar="PID", help="only this process")
    parser.add_argument("--top", type=positive_int, default=25, metavar="N",
                        help="text: show the N largest processes by RSS (default 25)")


def run(args) -> int:
    root = Path(args.proc)
    if args.pid is not None and not os.path.isdir(root / str(args.pid)):
        raise CliError(f"no process with PID {args.pid}")
    try:
        doc = build_snapshot(root, args.pid)
    except ProcfsError as e:
        raise CliError(str(e)) from e
    if args.pid is not None and not doc["processes"]:
        raise CliError(f"process {args.pid} exited while being read")
    if args.json:
        sys.stdout.write(json_dumps(doc, indent=1) + "\n")
    else:
        sys.stdout.write(render_text(doc, top=args.top))
    return 0


def take_sample(root: Path, pid: int | None = None, timeout_s: float = 120.0):
    """One Sample with the snapshot's parts read (and, with ``pid``, that process's arenas)."""
    from memtop.collect.collector import Collector
    from memtop.collect.parts import default_parts
    from memtop.model.process import ProcessIdentity
    from memtop.output.snapshot import PARTS
    from memtop.procfs.process import read_stat

    collector = Collector(root, parts=default_parts(root), workers=4)
    try:
        target = None
        if pid is not None:
            collector.sampler.visible = frozenset({pid})
            try:
                target = ProcessIdentity(pid, read_stat(pid, root).start_ticks)
            except ProcfsError:
                target = None  # gone: the sample says so (no process row)
        parts = PARTS + (("arenas",) if target is not None else ())
        return collector.collect_once(parts, target=target, timeout=timeout_s, all_rollups=pid is None)
    finally:
        collector.close()


def build_snapshot(root: Path = Path("/proc"), pid: int | None = None) -> dict:
    """The JSON document of ``memtop snapshot --json`` (read, then formatted)."""
    from memtop.output.snapshot import snapshot_json  # imported when used: `memtop` starts faster

    return snapshot_json(take_sample(root, pid), pid=pid)


def render_text(doc: dict, top: int = 25) -> str:
    system = doc["system"]
    mi = system["meminfo"]
    lines = [
        f"{printable(system['hostname'])}  kernel {printable(system['kernel'])}  {doc['time']}",
        "memory  total {}  available {}  used {}  buff/cache {}  shmem {}  swap {}/{}".format(
            fmt_bytes(mi.get("MemTotal")),
            fmt_bytes(mi.get("MemAvailable")),
            fmt_bytes(memory_used(mi)),
            fmt_bytes(buff_cache(mi)),
            fmt_bytes(mi.get("Shmem")),
            fmt_bytes(_swap_used(mi)),
            fmt_bytes(mi.get("SwapTotal")),
        ),
        "",
        f"{'PID':>7} {'USER':<9} {'RSS':>9} {'PSS':>9} {'USS':>9} {'ANON':>9} {'SWAP':>9} {'THR':>4} {'FDS':>5}  COMMAND",
    ]
    procs = sorted(doc["processes"], key=lambda p: p["rss_bytes"] or 0, reverse=True)[:top]
    for p in procs:
        lines.append(
            f"{p['pid']:>7} {printable(p['user'] or '?', 9):<9} {fmt_bytes(p['rss_bytes']):>9} {fmt_bytes(p['pss_bytes']):>9} "
            f"{fmt_bytes(p['uss_bytes']):>9} {fmt_bytes(p['anon_bytes']):>9} {fmt_bytes(p['swap_bytes']):>9} "
            f"{fmt_count(p['threads']):>4} {fmt_count(p['fd_count']):>5}  {printable(p['cmdline'] or '[' + p['comm'] + ']', 60)}"
        )
    total = len(doc["processes"])
    if total > 1:  # how much of the list is shown (not with --pid: one process)
        lines.append("")
        lines.append(f"{len(procs)} of {counted(total, 'process', 'processes')}, largest RSS first"
                     + (" (--top N shows more)" if len(procs) < total else ""))
    unknown = [p for p in doc["processes"] if p["pss_bytes"] is None and not p["kernel_thread"] and p["state"] != "Z"]
    if unknown:
        lines.append("")
        lines.append(f"? = unknown: smaps_rollup unreadable for {counted(len(unknown), 'process', 'processes')}, e.g. PID {unknown[0]['pid']}: "
                     f"{printable(unknown[0]['unknown_reasons'].get('smaps_rollup'))}")
    return "\n".join(lines) + "\n"


def _swap_used(mi: dict) -> int | None:
    if "SwapTotal" not in mi or "SwapFree" not in mi:
        return None
    return mi["SwapTotal"] - mi["SwapFree"]
