"""How long a trim stops its target: memtop's estimate (made before) against the stop measured.

Run by hand, as root:  .venv/bin/python -m bench.stop_estimate [--hogs 0,4] [--mariadb]

A C target with N idle threads, a fragmented heap of M MiB (one 1000-byte block in KEEP kept)
and optionally many mappings is trimmed through memtop's own path (memtop.actions.trim.trim);
each line gives the estimate (estimate_stop: per thread, per mapping, per free chunk and MiB
released, times the CPU slowdown a 32 ms busy-loop probe sees) and what was measured: the stop (gdb's attach to its detach,
every window), and in it the attach, the call and the detach. ``--hogs`` runs that many busy
loops beside it (load). ``--mariadb`` also trims Debian's mariadbd while sysbench loads it with
64 clients (the case of issue 16: a busy server with 78 threads, where gdb often catches a thread
inside malloc and attaches again).

The costs in memtop/actions/trim.py (STOP_*, TRIM_*) come from this bench's idle lines.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memtop.actions import identity_of, trim
from tests.support import Child, compile_c

TARGET = r"""
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static void *idle(void *a) { (void)a; pthread_mutex_lock(&m); for (;;) pthread_cond_wait(&c, &m); return 0; }
int main(int argc, char **argv) {
    int n = atoi(argv[1]), keep = atoi(argv[3]);
    long mib = atol(argv[2]), maps = atol(argv[4]);
    for (int i = 0; i < n; i++) {
        pthread_t t; pthread_attr_t at;
        pthread_attr_init(&at); pthread_attr_setstacksize(&at, 65536);
        pthread_create(&t, &at, idle, 0);
    }
    for (long i = 0; i < maps; i++) { /* alternate protections: the kernel cannot merge them */
        char *p = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        p[0] = 1;
        mprotect(p + 4096, 4096, PROT_READ);
    }
    size_t count = (size_t)mib * 1024;
    void **all = malloc(count * sizeof *all);
    for (size_t i = 0; i < count; i++) { all[i] = malloc(1000); memset(all[i], 1, 1000); }
    for (size_t i = 0; i < count; i++) if (i % keep) free(all[i]);
    printf("READY\n"); fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin)) if (!strncmp(line, "ping", 4)) { printf("pong\n"); fflush(stdout); }
    return 0;
}
"""

CASES = [  # (threads besides main, heap MiB, keep one block in, mappings)
    (1, 16, 8, 0), (1, 256, 8, 0), (1, 1024, 8, 0), (1, 256, 2, 0),
    (16, 16, 8, 0), (64, 16, 8, 0), (64, 256, 8, 0), (256, 16, 8, 0), (256, 256, 8, 0),
    (1, 16, 8, 20000),
]


def ms(value) -> str:
    return "?" if value is None else f"{value * 1000:.0f}"


def line(label: str, result) -> str:
    p = result.prediction
    ratio = result.stopped_s / p.estimated_stop_s if result.stopped_s and p.estimated_stop_s else None
    return (f"| {label} | {p.stop.slowdown:.1f} | {ms(p.estimated_stop_s)} | {ms(p.stop.max_seconds)} "
            f"| {ms(result.stopped_s)} | {result.windows} | {ms(result.attach_s)} | {ms(result.call_s)} "
            f"| {ms(result.detach_s)} | {ms(result.stopped_walk_s)} | {'?' if ratio is None else f'{ratio:.2f}'} |")


def run_cases(hogs: int, binary: Path) -> list[str]:
    rows = []
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
    try:
        if hogs:
            time.sleep(2)
        for threads, mib, keep, maps in CASES:
            with Child([binary, threads, mib, keep, maps], timeout=300) as child:
                result = trim.trim(identity_of(child.pid), timeout=30, log=False)
                if not result.ok:
                    print(f"{threads + 1} threads, {mib} MiB: {result.status}: {result.message}", file=sys.stderr)
                    continue
                label = f"{threads + 1} threads, {mib} MiB heap (1 in {keep} kept), {maps} maps, {hogs} hogs"
                rows.append(line(label, result))
                print(rows[-1], flush=True)
    finally:
        for b in busy:
            b.kill()
            b.wait()
    return rows


def run_mariadb(trims: int = 4) -> list[str]:
    from bench.arena_cap import clean_env, _wait

    rows = []
    scratch = tempfile.mkdtemp(prefix="memtop-stop-db-")
    data, sock = f"{scratch}/data", f"{scratch}/sock"
    subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={data}", "--skip-test-db",
                    "--auth-root-authentication-method=normal"], check=True, capture_output=True, timeout=300)
    Path(f"{scratch}/my.cnf").write_text("[mariadbd]\nskip-networking\ninnodb_buffer_pool_size=128M\n"
                                         "max_connections=500\n")
    server = Child(["/usr/sbin/mariadbd", f"--defaults-file={scratch}/my.cnf", "--user=root", f"--datadir={data}",
                    f"--socket={sock}", f"--pid-file={scratch}/pid", "--skip-log-bin"], env=clean_env(False),
                   ready=False)
    load = None
    try:
        _wait(lambda: os.path.exists(sock), 120, "mariadbd's socket")
        subprocess.run(["mariadb", "-S", sock, "-uroot", "-e", "CREATE DATABASE sbtest"], check=True, timeout=60)
        common = ["oltp_read_write", f"--mysql-socket={sock}", "--mysql-user=root", "--tables=4", "--table-size=20000"]
        subprocess.run(["sysbench", *common, "prepare"], check=True, capture_output=True, timeout=600)
        load = subprocess.Popen(["sysbench", *common, "--threads=64", "--time=120", "run"], stdout=subprocess.DEVNULL)
        time.sleep(10)  # the load is on
        identity = identity_of(server.pid)
        for _ in range(trims):
            result = trim.trim(identity, timeout=10, log=False)
            if result.stopped_s is not None:
                rows.append(line(f"mariadbd under sysbench (64 clients), {result.status}", result))
                print(rows[-1], flush=True)
            time.sleep(3)
    finally:
        if load is not None:
            load.kill()
            load.wait()
        server.close()
        subprocess.run(["rm", "-rf", scratch], check=False)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", default="0,2,4,8", help="busy loops beside the target, one run per value")
    parser.add_argument("--mariadb", action="store_true")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (gdb attaches to the target)", file=sys.stderr)
        return 2
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="memtop-bench-")  # keep the real log clean
    binary = compile_c(TARGET, name="stop_estimate_target")
    print("| target | CPU slowdown (probe) | estimated ms | up to ms | measured stop ms | gdb windows | attach ms "
          "| call ms | detach ms | stopped walk ms | measured / estimated |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for hogs in (int(h) for h in args.hogs.split(",") if h):
        run_cases(hogs, binary)
    if args.mariadb:
        run_mariadb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
