"""memtop's read-only figures for jemalloc, tcmalloc, mimalloc and musl against each allocator's
own report, the time the reader takes, and each release's predicted vs actual RSS drop; then
Debian's redis-server against its INFO memory. Run by hand, as root:

    .venv/bin/python -m bench.allocators [--scenario freed] [--redis-keys 300000]

Prints one Markdown table of figures and one of releases (the figures of the closing report).
The C targets are tests/allocator_targets.py's; `--scenario` is one of mixed, freed, allfree.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from memtop.actions import identity_of
from memtop.actions import trim as trim_action
from memtop.format import fmt_bytes
from memtop.heap import analyze
from tests.allocator_targets import parse_stats, target
from tests.support import Child, wait_until

# (memtop figure, allocator's own name in the target's STATS line, what the allocator calls it)
COMPARE = {
    "jemalloc": [("allocated_bytes", "allocated", "stats.allocated"), ("active_bytes", "active", "stats.active"),
                 ("detail:dirty_bytes", "pdirty", "stats.arenas.<all>.pdirty x page"),
                 ("retained_bytes", "retained", "stats.retained")],
    "tcmalloc": [("allocated_bytes", "allocated", "generic.current_allocated_bytes"),
                 ("mapped_bytes", "heap", "generic.heap_size"),
                 ("free_kept_bytes", "pageheap_free", "tcmalloc.pageheap_free_bytes"),
                 ("detail:central_cache_free_bytes", "central", "tcmalloc.central_cache_free_bytes")],
    "mimalloc": [("allocated_bytes", "live", "sum of mi_usable_size of live blocks"),
                 ("detail:stats_committed_bytes", "commit", "mi_process_info current_commit")],
    "musl": [("allocated_bytes", "live", "sum of malloc_usable_size of live blocks"),
             ("detail:slots_in_use", "count", "live blocks")],
    "musl-static": [("allocated_bytes", "live", "sum of malloc_usable_size of live blocks")],
}


def figure(report, key: str):
    return report.detail(key[7:]) if key.startswith("detail:") else getattr(report, key)


def pct(a, b) -> str:
    if a is None or b is None:
        return "?"
    if b == 0:
        return "exact" if a == 0 else "—"
    d = (a - b) / b * 100
    return "exact" if a == b else f"{d:+.2f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="freed", choices=("mixed", "freed", "allfree"))
    parser.add_argument("--redis-keys", type=int, default=300000)
    args = parser.parse_args()
    rows, releases = [], []
    for kind in ("jemalloc", "tcmalloc", "mimalloc", "musl", "musl-static"):
        child = Child([target(kind), args.scenario])
        try:
            truth = parse_stats(child.ask("stats"))
            started = time.monotonic()
            report = analyze(child.pid).allocator
            seconds = time.monotonic() - started
            for key, name, words in COMPARE[kind]:
                mine = figure(report, key)
                value = truth[name]
                fmt = (lambda v: f"{v:,}") if key.endswith("slots_in_use") else fmt_bytes
                rows.append(f"| {kind} | {words} | {fmt(value)} | {fmt(mine)} | {pct(mine, value)} | {seconds:.2f} s |")
            if kind in ("jemalloc", "tcmalloc", "mimalloc"):
                scenario = "allfree" if kind == "mimalloc" and args.scenario == "freed" else args.scenario
                if scenario != args.scenario:
                    child.close()
                    child = Child([target(kind), scenario])
                identity = identity_of(child.pid, Path("/proc"))
                prediction = trim_action.predict(identity)
                result = trim_action.trim(identity, prediction=prediction, log=False)
                releases.append(f"| {kind} ({scenario}) | {prediction.call} | {fmt_bytes(prediction.release_bytes)} | "
                                f"{fmt_bytes(result.released_bytes)} | {pct(result.released_bytes, prediction.release_bytes)} | "
                                f"{'?' if result.stopped_s is None else f'{result.stopped_s * 1000:.0f} ms'} |")
        finally:
            child.close()
    server = shutil.which("redis-server")
    if server:
        with tempfile.TemporaryDirectory(prefix="memtop-bench-redis-") as tmp:
            sock = Path(tmp) / "redis.sock"
            child = Child([server, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
                           "--dir", tmp, "--enable-debug-command", "local"], ready=False)
            try:
                wait_until(sock.exists, timeout=15)
                cli = ["redis-cli", "-s", str(sock)]
                subprocess.run(cli + ["DEBUG", "POPULATE", str(args.redis_keys), "key", "200"], check=True,
                               capture_output=True, timeout=120)
                subprocess.run(cli + ["FLUSHALL"], check=True, capture_output=True, timeout=60)
                subprocess.run(cli + ["DEBUG", "POPULATE", str(args.redis_keys // 3), "key", "200"], check=True,
                               capture_output=True, timeout=120)
                time.sleep(0.3)
                started = time.monotonic()
                report = analyze(child.pid).allocator
                seconds = time.monotonic() - started
                out = subprocess.run(cli + ["INFO", "memory"], check=True, capture_output=True, text=True).stdout
                info = {k: v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}
                for key, name in (("allocated_bytes", "allocator_allocated"), ("active_bytes", "allocator_active")):
                    value = int(info[name])
                    rows.append(f"| redis-server (jemalloc) | INFO {name} | {fmt_bytes(value)} | "
                                f"{fmt_bytes(getattr(report, key))} | {pct(getattr(report, key), value)} | {seconds:.2f} s |")
                rows.append(f"| redis-server (jemalloc) | dirty+muzzy resident, background_thread "
                            f"{report.setting('background_thread').value} | — | {fmt_bytes(report.release_bytes)} | — | |")
            finally:
                child.close()
    print("| allocator | the allocator's own figure | its value | memtop read-only | difference | read time |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("| allocator | release | predicted | RSS drop (kernel) | difference | stopped |")
    print("|---|---|---|---|---|---|")
    print("\n".join(releases))


if __name__ == "__main__":
    main()
