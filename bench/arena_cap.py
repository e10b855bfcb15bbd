"""MALLOC_ARENA_MAX=2: memtop's predicted RSS saving against two real runs of the same load.

Run by hand, as root (the heap walk reads /proc/PID/mem):

    .venv/bin/python -m bench.arena_cap [--workloads c-turns,c-together,c-free,...] [--pairs 2] [--dump DIR]

Each workload runs twice per pair: as is, and with MALLOC_ARENA_MAX=2 in its environment. Once
the load is over and RSS has settled, memtop walks the heap of the uncapped run and predicts the
saving (memtop.heap.arena_advice.predict_saving: an estimate, and the bounds "the threads' peaks
take turns" / "they coincide"); the measured saving is VmRSS(uncapped) - VmRSS(capped). The
heap's own share is shown too (the arenas' resident pages, pagemap), because a server's other
memory (MariaDB's buffer pool, caches) moves a little from run to run; and the overlap at which
the model would have matched the measure: where the load really sits between the two bounds.

Workloads:
- c-turns / c-together / c-free: tests/live/arena_cap_target.c, 16 threads serving requests one
  at a time / all at once / as the scheduler decides (compiled with gcc); c-turns-small: one at a
  time, 90 % of the blocks fastbin-sized.
- ruby: Debian's ruby, 16 threads building strings, arrays and hashes (the GVL: one thread runs
  at a time), then GC.start and idle.
- python: Debian's python3, 16 threads building lists of 600..3600-byte objects (glibc malloc,
  not obmalloc), then idle.
- mariadb (mariadb-16, mariadb-200): Debian's mariadbd in a private datadir and socket (no
  network), loaded by sysbench oltp_read_write with 64 (16, 200) client threads for 20 s, then idle.

``--dump DIR`` writes each run's walk (every arena's figures) as JSON, to study the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from memtop.heap.arena_advice import analyze_arenas, predict_saving
from tests.support import Child, compile_c, status_kb

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20

RUBY_SCRIPT = r"""
# N threads build strings, arrays and hashes; each keeps a few; GC; then idle.
n = ARGV[0].to_i
rounds = ARGV[1].to_i
$kept = Array.new(n) { [] }
threads = (0...n).map do |t|
  Thread.new(t) do |me|
    r = Random.new(me)
    rounds.times do |i|
      batch = []
      2000.times do
        case r.rand(5)
        when 0 then batch << ("x" * (24 + r.rand(2000)))
        when 1 then batch << Array.new(r.rand(60)) { |k| k }
        when 2 then batch << { a: r.rand, b: "y" * r.rand(100), c: [1, 2, 3] }
        when 3 then batch << ("z" * (24 + r.rand(90)))
        else batch << r.rand.to_s * (1 + r.rand(20))
        end
      end
      $kept[me] << batch[r.rand(batch.size)] if i % 2 == 0
      $kept[me] << batch.sample(5)
    end
  end
end
threads.each(&:join)
GC.start
puts "READY threads=#{n}"
$stdout.flush
while (line = STDIN.gets)
  break if line.start_with?("quit")
  if line.start_with?("ping")
    puts "pong"
    $stdout.flush
  end
end
"""


PYTHON_SCRIPT = r"""
import random, sys, threading
n, rounds = int(sys.argv[1]), int(sys.argv[2])
kept = []
def work(me):
    r = random.Random(me)
    for i in range(rounds):
        batch = [bytes(600 + r.randrange(3000)) for _ in range(2000)]  # > 512 B: glibc malloc, not obmalloc
        batch += [" " * (600 + r.randrange(3000)) for _ in range(1000)]
        kept.append(batch[r.randrange(len(batch))])
threads = [threading.Thread(target=work, args=(t,)) for t in range(n)]
for t in threads: t.start()
for t in threads: t.join()
print(f"READY threads={n}", flush=True)
for line in sys.stdin:
    if line.startswith("quit"): break
    if line.startswith("ping"): print("pong", flush=True)
"""


def clean_env(capped: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    if capped:
        env["MALLOC_ARENA_MAX"] = "2"
    return env


def settle(pid: int, timeout: float = 30.0, quiet_s: float = 3.0) -> None:
    """Wait until VmRSS moves by less than 0.5 % over ``quiet_s`` seconds."""
    deadline = time.monotonic() + timeout
    last = status_kb(pid, "VmRSS")
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = status_kb(pid, "VmRSS")
        if abs(now - last) <= 0.005 * last:
            return
        last = now


# --- workloads: each a context manager that yields the PID once the load is over --------------


@contextmanager
def c_target(mode: str, threads: int = 16, rounds: int = 4, request_kib: int = 4096, keep_every: int = 16,
             small_pct: int = 25, *, capped: bool):
    source = (ROOT / "tests" / "live" / "arena_cap_target.c").read_text()
    binary = compile_c(source, name="arena_cap_target")
    with Child([binary, threads, rounds, request_kib, keep_every, mode, small_pct], env=clean_env(capped),
               timeout=300) as child:
        yield child.pid


@contextmanager
def ruby(threads: int = 16, rounds: int = 300, *, capped: bool):
    exe = shutil.which("ruby")
    if exe is None:
        raise SystemExit("ruby is missing: apt-get install ruby")
    with tempfile.TemporaryDirectory(prefix="memtop-arenacap-rb-") as scratch:
        script = Path(scratch) / "load.rb"
        script.write_text(RUBY_SCRIPT)
        with Child([exe, script, threads, rounds], env=clean_env(capped), timeout=600) as child:
            yield child.pid


@contextmanager
def python(threads: int = 16, rounds: int = 200, *, capped: bool):
    with tempfile.TemporaryDirectory(prefix="memtop-arenacap-py-") as scratch:
        script = Path(scratch) / "load.py"
        script.write_text(PYTHON_SCRIPT)
        with Child(["/usr/bin/python3", script, threads, rounds], env=clean_env(capped), timeout=600) as child:
            yield child.pid


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready in {timeout} s")
        time.sleep(0.1)


@contextmanager
def mariadb(clients: int = 64, seconds: int = 20, *, capped: bool):
    for tool, package in (("mariadb-install-db", "mariadb-server"), ("sysbench", "sysbench")):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install {package}")
    scratch = tempfile.mkdtemp(prefix="memtop-arenacap-db-")
    server = None
    try:
        data, sock = f"{scratch}/data", f"{scratch}/sock"
        subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={data}", "--skip-test-db",
                        "--auth-root-authentication-method=normal"], check=True, capture_output=True, timeout=300)
        cnf = f"{scratch}/my.cnf"
        Path(cnf).write_text("[mariadbd]\nskip-networking\ninnodb_buffer_pool_size=128M\nmax_connections=500\n")
        server = Child(["/usr/sbin/mariadbd", f"--defaults-file={cnf}", "--user=root", f"--datadir={data}",
                        f"--socket={sock}", f"--pid-file={scratch}/pid", "--skip-log-bin"],
                       env=clean_env(capped), ready=False)
        _wait(lambda: os.path.exists(sock), 120, "mariadbd's socket")
        subprocess.run(["mariadb", "-S", sock, "-uroot", "-e", "CREATE DATABASE sbtest"], check=True, timeout=60)
        common = ["oltp_read_write", f"--mysql-socket={sock}", "--mysql-user=root", "--tables=4", "--table-size=20000"]
        subprocess.run(["sysbench", *common, "prepare"], check=True, capture_output=True, timeout=600)
        subprocess.run(["sysbench", *common, f"--threads={clients}", f"--time={seconds}", "run"], check=True,
                       capture_output=True, timeout=seconds + 300)
        time.sleep(5)  # the connections close; purge and the background threads go idle
        yield server.pid
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(scratch, ignore_errors=True)


WORKLOADS = {
    "c-turns": lambda capped: c_target("turns", capped=capped),
    "c-together": lambda capped: c_target("together", capped=capped),
    "c-free": lambda capped: c_target("free", capped=capped),
    "c-turns-small": lambda capped: c_target("turns", small_pct=90, capped=capped),
    "ruby": lambda capped: ruby(capped=capped),
    "python": lambda capped: python(capped=capped),
    "mariadb": lambda capped: mariadb(capped=capped),
}
for _clients in (16, 200):
    WORKLOADS[f"mariadb-{_clients}"] = lambda capped, n=_clients: mariadb(n, capped=capped)


# --- one run ---------------------------------------------------------------------------------------


def measure(pid: int, walk_tries: int = 5) -> tuple[dict, object]:
    """The figures of one settled run (JSON-able), and its walk's arenas (for the overlap fit)."""
    settle(pid)
    analysis = None
    for attempt in range(walk_tries):
        analysis = analyze_arenas(pid, census=False)
        if analysis.heap is not None and analysis.heap.valid:
            break
        time.sleep(1.0 + attempt)
    rss = status_kb(pid, "VmRSS")
    anon = status_kb(pid, "RssAnon")
    heap = analysis.heap
    out = {"rss": rss, "rss_anon": anon, "threads": analysis.threads, "valid": bool(heap and heap.valid),
           "reason": analysis.heap_reason}
    if heap is None or not heap.valid:
        return out, None
    out["heap_resident"] = sum(a.resident_bytes or 0 for a in heap.arenas)
    out["arenas"] = [dataclasses.asdict(a) for a in heap.arenas]
    out["tunables"] = dataclasses.asdict(heap.tunables) if heap.tunables else None
    out["mmapped_bytes"] = heap.mmapped_bytes
    out["runtime"] = heap.runtime.kind if heap.runtime is not None else None
    p = analysis.prediction
    out["prediction"] = dataclasses.asdict(p) if p is not None else None
    return out, heap.arenas


def fitted_overlap(arenas, measured: int) -> float:
    """The overlap (0..1, in steps of 0.01) at which the model's saving is nearest the measured one:
    where this load's threads really sit between "turns" and "together"."""
    return min((abs(predict_saving(arenas, overlap=c / 100).saving_bytes - measured), c / 100) for c in range(101))[1]


def run_pair(name: str, dump: Path | None, index: int) -> dict:
    result, arenas = {}, None
    for capped in (False, True):
        with WORKLOADS[name](capped) as pid:
            figures, walked = measure(pid)
            result["capped" if capped else "uncapped"] = figures
            arenas = walked if not capped else arenas
    u, c = result["uncapped"], result["capped"]
    if arenas is not None:
        result["fitted_overlap"] = fitted_overlap(arenas, u["rss"] - c["rss"])
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
        (dump / f"{name}-{index}.json").write_text(json.dumps(result, indent=1))
    return result


def mib(value) -> str:
    return "?" if value is None else f"{value / MiB:.1f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--pairs", type=int, default=2, help="uncapped + capped runs per workload")
    parser.add_argument("--dump", type=Path, default=None)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (the heap walk reads /proc/PID/mem)", file=sys.stderr)
        return 2
    names = [n for n in args.workloads.split(",") if n]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        print(f"unknown workloads: {', '.join(unknown)} (known: {', '.join(WORKLOADS)})", file=sys.stderr)
        return 2
    rows = []
    for name in names:
        for index in range(args.pairs):
            r = run_pair(name, args.dump, index)
            u, c = r["uncapped"], r["capped"]
            if not u["valid"] or not u.get("prediction"):
                print(f"{name} #{index + 1}: the uncapped walk did not validate: {u['reason']}", flush=True)
                continue
            p = u["prediction"]
            measured = u["rss"] - c["rss"]
            heap_measured = u["heap_resident"] - c["heap_resident"] if c["valid"] else None
            ratio = p["saving_bytes"] / measured if measured > 0 else None
            rows.append((name, index, len(u["arenas"]), u["rss"], c["rss"], p, measured, heap_measured, ratio,
                         r.get("fitted_overlap")))
            print(f"{name} #{index + 1}: arenas {len(u['arenas'])}, VmRSS {mib(u['rss'])} -> {mib(c['rss'])} MiB; "
                  f"predicted {mib(p['saving_bytes'])} MiB ({mib(p['saving_low_bytes'])}..{mib(p['saving_high_bytes'])}), "
                  f"measured {mib(measured)} MiB (heap {mib(heap_measured)}), "
                  f"ratio {'?' if ratio is None else f'{ratio:.2f}'}, fitted overlap {r.get('fitted_overlap')}", flush=True)
    print()
    print("| workload | run | arenas | VmRSS uncapped → capped | predicted saving (overlap) | if turns | if together "
          "| measured saving | heap's share | predicted / measured | overlap that fits |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, index, arenas, ru, rc, p, measured, heap_measured, ratio, fitted in rows:
        print(f"| {name} | {index + 1} | {arenas} | {mib(ru)} → {mib(rc)} MiB | {mib(p['saving_bytes'])} MiB "
              f"({p['overlap']:.2f}) | {mib(p['saving_high_bytes'])} | {mib(p['saving_low_bytes'])} "
              f"| {mib(measured)} MiB | {mib(heap_measured)} MiB | {'?' if ratio is None else f'{ratio:.2f}'} "
              f"| {'?' if fitted is None else f'{fitted:.2f}'} |")
    by_name: dict[str, list[float]] = {}
    for name, *_, ratio, _fitted in rows:
        if ratio is not None:
            by_name.setdefault(name, []).append(ratio)
    for name, ratios in by_name.items():
        print(f"{name}: median predicted/measured {statistics.median(ratios):.2f} over {len(ratios)} pair(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
