"""htop, btop and memtop against the same sleeping population, side by side (run by hand; never in tests).

    .venv/bin/python bench/compare.py                      # the table: 1000 and 3000 sleepers, 60 s, 2 rounds
    .venv/bin/python bench/compare.py --procs 1000 --window 30 --rounds 1
    .venv/bin/python bench/compare.py --no-compare --tabs 0,1000     # every memtop tab idle, CPU and RSS
    .venv/bin/python bench/compare.py --no-compare --startup 5 --startup-procs 0,1000
    .venv/bin/python bench/compare.py --all                # all three, in one run

Needs tmux, gcc, htop and btop (``apt-get install -y htop btop``: a bench-only dependency, not
installed by scripts/setup.sh; a missing tool is skipped with a note).

What it does:
1. Population: N real processes (a small C program: fork N-1 times, each child touches 1 MiB and
   sleeps in pause()), all in process groups the script kills at the end (and on Ctrl-C). The
   "processes" column is every process on the machine, counted during the windows.
2. --procs (the comparison, issue 20 item 6): for each N, for each round, htop (-d 20), btop
   (update_ms = 2000, in a private config dir) and memtop (--interval 2, its default Processes tab,
   which shows PSS, USS and FDS) run one after another, each in its own tmux server (unique -L
   socket) at 120x40. After --warmup seconds, the tool's CPU is read from /proc/PID/stat (utime +
   stime + cutime + cstime, every thread) at the start and end of --window seconds, as % of one
   core; its RSS (VmRSS) at the end. The machine's other load is printed per window (busy cores
   from /proc/stat minus the tool's own share, and the load average).
3. --tabs (items 2 and 5): memtop started once per population; for each tab: press its digit,
   wait --tab-settle s, measure CPU over --tab-window s and RSS at the end; then back to tab 1
   ("1 again, after all tabs"): RSS after every tab has been shown.
4. --startup K (item 3): K starts per population. The pane is first running ``sleep``; the clock
   starts at ``respawn-pane`` with the tool and stops when ``capture-pane`` (polled every 10 ms)
   shows a full first screen: for memtop, the Processes table's footer ("N of N processes") and at
   least 15 rows with their RSS and PSS columns filled (the first tick reads every smaps_rollup
   before the table is drawn; "?" is a kernel thread's PSS). This is an outside view (screen scraping, 10 ms
   resolution plus the capture's own latency), not an internal marker. htop and btop are timed the
   same way (htop: its "PID USER" header and 15 process rows; btop: its process box header
   "Pid:" and 15 rows) for reference.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import compile_c  # noqa: E402

SPAWNER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
/* argv[1] = N: this process and N-1 children; each touches 1 MiB then pause()s. Prints "ready"
   once every child has touched its memory (one byte each through a pipe). */
/* kept in a global: with the pointer unused, gcc -O1 removed malloc and memset (each child held
   92 KiB of anon, not 1 MiB) */
char *volatile kept;
static void touch(void) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); kept = p; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1, fds[2];
    if (pipe(fds)) return 1;
    for (int i = 1; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); break; }
        if (pid == 0) { close(fds[0]); touch(); if (write(fds[1], "x", 1) != 1) _exit(1); close(fds[1]); for (;;) pause(); }
    }
    close(fds[1]);
    touch();
    char c; int got = 1;
    while (got < n && read(fds[0], &c, 1) == 1) got++;
    close(fds[0]);
    printf("ready %d\n", got); fflush(stdout);
    for (;;) pause();
}
"""
CLK = os.sysconf("SC_CLK_TCK")
WIDTH, HEIGHT = 120, 40
TAB_NAMES = ("Processes", "Layers", "Arenas", "Page cache", "Kernel", "tmpfs", "Pressure", "Containers")


# -- the population -----------------------------------------------------------------------------

class Population:
    """Sleeping processes in process groups of their own, killed (by group) at close."""

    def __init__(self) -> None:
        self.binary = compile_c(SPAWNER, name="bench-compare-spawner", flags=("-O1",))
        self.groups: list[subprocess.Popen] = []
        self.size = 0

    def grow_to(self, n: int) -> None:
        if n <= self.size:
            if n < self.size:
                self.close()
                self.grow_to(n)
            return
        add = n - self.size
        p = subprocess.Popen([str(self.binary), str(add)], stdout=subprocess.PIPE, start_new_session=True, text=True)
        self.groups.append(p)
        line = p.stdout.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"the spawner did not start {add} processes: {line!r}")
        self.size = n

    def close(self) -> None:
        for p in self.groups:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
            p.stdout.close()
        self.groups.clear()
        self.size = 0
        # Orphaned children are reaped by init; wait until they are gone so the next count is true.
        time.sleep(1.0)


def machine_procs() -> int:
    return sum(1 for n in os.listdir("/proc") if n.isdigit())


# -- measuring ----------------------------------------------------------------------------------

def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK  # utime stime cutime cstime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine_busy_s() -> float:
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    v = [int(x) for x in fields]
    return (sum(v[:8]) - v[3] - v[4]) / CLK  # all but idle and iowait (guest is inside user)


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


class Window:
    """CPU of one process over a window, the machine's busy time around it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def __enter__(self):
        self.c0, self.m0, self.t0, self.n0, self.l0 = (proc_cpu_s(self.pid), machine_busy_s(), time.monotonic(),
                                                       machine_procs(), loadavg())
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        self.c1, self.m1, self.t1, self.n1, self.l1 = (proc_cpu_s(self.pid), machine_busy_s(), time.monotonic(),
                                                       machine_procs(), loadavg())
        self.rss = rss_mib(self.pid)
        dt = self.t1 - self.t0
        self.cpu_pct = (self.c1 - self.c0) / dt * 100
        self.others_cores = ((self.m1 - self.m0) - (self.c1 - self.c0)) / dt
        self.procs = (self.n0 + self.n1) // 2
        return False

    def load(self) -> str:
        return f"others busy {self.others_cores:.2f} of {os.cpu_count()} cores, load {self.l0}->{self.l1}"


# -- tools in tmux ------------------------------------------------------------------------------

class Tmux:
    """One tmux server (its own -L socket) with one 120x40 session running ``sleep`` until a tool
    is started in it with :meth:`run`."""

    def __init__(self, env: dict[str, str]) -> None:
        self.sock = f"memtop-compare-{os.getpid()}-{time.monotonic_ns()}"
        self.env = env
        self._tmux("new-session", "-d", "-s", "b", "-x", str(WIDTH), "-y", str(HEIGHT), "exec sleep 100000")

    def _tmux(self, *args: str, capture: bool = False) -> str:
        r = subprocess.run(["tmux", "-L", self.sock, *args], env=self.env, check=True,
                           capture_output=True, text=True)
        return r.stdout

    def run(self, argv: list[str], cwd: Path | None = None) -> None:
        cmd = " ".join(_quote(a) for a in argv)
        if cwd is not None:
            cmd = f"cd {_quote(str(cwd))} && exec {cmd}"
        else:
            cmd = f"exec {cmd}"
        self._tmux("respawn-pane", "-k", "-t", "b", cmd)

    def pane_pid(self) -> int:
        return int(self._tmux("display", "-p", "-t", "b", "#{pane_pid}").strip())

    def capture(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "b")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "b", *keys)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], env=self.env, capture_output=True)
        # kill-server leaves its socket file behind: remove ours.
        sock_dir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (sock_dir / self.sock).unlink(missing_ok=True)


def _quote(s: str) -> str:
    import shlex
    return shlex.quote(s)


class Tools:
    def __init__(self, tmp: Path) -> None:
        self.env = dict(os.environ, LANG="C.UTF-8", LC_ALL="C.UTF-8", HOME=str(tmp / "home"),
                        XDG_CONFIG_HOME=str(tmp / "config"), TERM="xterm-256color")
        self.env.pop("TMUX", None)
        # As a user runs it: memtop's bytecode cached. With PYTHONDONTWRITEBYTECODE set (some
        # sandboxes set it) and no __pycache__, every start compiled memtop's sources: 0.53 s to a
        # full first screen instead of 0.37 s at ~70 processes.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        import compileall
        compileall.compile_dir(str(ROOT / "memtop"), quiet=1)
        (tmp / "home").mkdir()
        btop_conf = tmp / "config" / "btop"
        btop_conf.mkdir(parents=True)
        (btop_conf / "btop.conf").write_text("update_ms = 2000\n")
        self.available = {name: shutil.which(name) is not None for name in ("htop", "btop")}
        self.available["memtop"] = True
        self.versions = {
            "htop": _version(["htop", "--version"]) if self.available["htop"] else "missing",
            "btop": _version(["btop", "--version"]) if self.available["btop"] else "missing",
            "memtop": _version([sys.executable, "-m", "memtop", "--version"], cwd=ROOT),
        }

    def argv(self, name: str) -> tuple[list[str], Path | None]:
        if name == "htop":
            return ["htop", "-d", "20"], None
        if name == "btop":
            return ["btop"], None
        return [sys.executable, "-m", "memtop", "--interval", "2"], ROOT


def _version(argv: list[str], cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=cwd).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    m = re.search(r"\d+\.\d+(\.\d+)?", out)
    return m.group(0) if m else "?"


# -- the three measurements ---------------------------------------------------------------------

def measure_tool(tools: Tools, name: str, warmup: float, window: float) -> Window:
    tm = Tmux(tools.env)
    try:
        argv, cwd = tools.argv(name)
        tm.run(argv, cwd)
        time.sleep(0.2)
        pid = tm.pane_pid()
        time.sleep(warmup)
        _check_alive(tm, pid, name)
        with Window(pid) as w:
            time.sleep(window)
        _check_alive(tm, pid, name)
        return w
    finally:
        tm.close()


def _check_alive(tm: Tmux, pid: int, name: str) -> None:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        state = "gone"
    if state in ("gone", "Z"):
        raise SystemExit(f"{name} is not running in tmux; its screen:\n{tm.capture()}")


_ROW_MEMTOP = re.compile(r"^\s*\d+ \S+\s+[\d.]+ (?:B|KiB|MiB|GiB)\s+(?:[\d.]+ (?:B|KiB|MiB|GiB)|\?)\s")
_FOOTER_MEMTOP = re.compile(r"\d+ of \d+ processes")
_ROW_PID = re.compile(r"^\s*\d+\s+\S")


def screen_full(name: str, screen: str) -> bool:
    lines = screen.splitlines()
    if name == "memtop":
        return (any(_FOOTER_MEMTOP.search(l) for l in lines)
                and sum(1 for l in lines if _ROW_MEMTOP.match(l)) >= 15)
    if name == "htop":
        return "PID USER" in screen and sum(1 for l in lines if _ROW_PID.match(l)) >= 15
    # btop: the process box: its header "Pid:" and rows that start with a PID after the box's │
    return "Pid:" in screen and sum(1 for l in lines if re.search(r"│\s*\d+ \S", l)) >= 15


def measure_startup(tools: Tools, name: str, timeout: float = 30.0) -> float | None:
    tm = Tmux(tools.env)
    try:
        argv, cwd = tools.argv(name)
        time.sleep(0.2)
        t0 = time.monotonic()
        tm.run(argv, cwd)
        while time.monotonic() - t0 < timeout:
            if screen_full(name, tm.capture()):
                return time.monotonic() - t0
            time.sleep(0.01)
        print(f"  {name}: no full screen within {timeout:.0f} s; last screen:\n{tm.capture()}")
        return None
    finally:
        tm.close()


def measure_tabs(tools: Tools, settle: float, window: float, warmup: float) -> list[tuple[str, Window]]:
    tm = Tmux(tools.env)
    out = []
    try:
        argv, cwd = tools.argv("memtop")
        tm.run(argv, cwd)
        time.sleep(0.2)
        pid = tm.pane_pid()
        time.sleep(warmup)
        for i, tab in enumerate(TAB_NAMES):
            tm.keys(str(i + 1))
            time.sleep(settle)
            _check_alive(tm, pid, "memtop")
            with Window(pid) as w:
                time.sleep(window)
            out.append((f"{i + 1} {tab}", w))
            print(f"  {i + 1} {tab:<11} {w.cpu_pct:5.2f} %  RSS {w.rss:5.1f} MiB  ({w.procs} processes; {w.load()})",
                  flush=True)
        tm.keys("1")
        time.sleep(settle)
        with Window(pid) as w:
            time.sleep(window)
        out.append(("1 again, after all tabs", w))
        print(f"  1 again after all tabs {w.cpu_pct:5.2f} %  RSS {w.rss:5.1f} MiB", flush=True)
        return out
    finally:
        tm.close()


def _range(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "-"
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}–{hi}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", default="1000,3000", help="sleepers started for the comparison (comma list)")
    ap.add_argument("--tools", default="htop,btop,memtop")
    ap.add_argument("--window", type=float, default=60.0, help="seconds of CPU measured per tool")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds after start before the window")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-compare", action="store_true", help="skip the htop/btop/memtop table")
    ap.add_argument("--tabs", default="", help="sleepers for the per-tab measurement, e.g. 0,1000")
    ap.add_argument("--tab-settle", type=float, default=8.0)
    ap.add_argument("--tab-window", type=float, default=30.0)
    ap.add_argument("--startup", type=int, default=0, help="starts timed per population and tool")
    ap.add_argument("--startup-procs", default="0,1000")
    ap.add_argument("--startup-tools", default="memtop,htop,btop")
    ap.add_argument("--all", action="store_true", help="--tabs 0,1000 --startup 5 too")
    args = ap.parse_args()
    if args.all:
        args.tabs = args.tabs or "0,1000"
        args.startup = args.startup or 5
    if not shutil.which("tmux"):
        raise SystemExit("tmux is needed")

    tmp = Path(tempfile.mkdtemp(prefix="memtop-compare-"))
    pop = Population()
    old_int = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        tools = Tools(tmp)
        names = [t for t in args.tools.split(",") if t]
        for t in names:
            if not tools.available.get(t, False):
                print(f"{t} is not installed (apt-get install -y {t}): skipped")
        names = [t for t in names if tools.available.get(t, False)]
        print(f"versions: " + ", ".join(f"{k} {v}" for k, v in tools.versions.items())
              + f"; {os.cpu_count()} cores; {machine_procs()} processes before the population; "
              f"load {Path('/proc/loadavg').read_text().strip()}", flush=True)

        if not args.no_compare:
            results: dict[int, dict[str, list[Window]]] = {}
            for n in [int(x) for x in args.procs.split(",") if x]:
                pop.grow_to(n)
                time.sleep(2)
                results[n] = {t: [] for t in names}
                for r in range(args.rounds):
                    for t in names:
                        w = measure_tool(tools, t, args.warmup, args.window)
                        results[n][t].append(w)
                        print(f"{n} sleepers, round {r + 1}, {t}: {w.cpu_pct:.2f} % of a core, RSS {w.rss:.1f} MiB, "
                              f"{w.procs} processes ({w.load()})", flush=True)
            print()
            print(f"CPU, % of one core over {args.window:.0f} s ({args.rounds} round(s), from {args.warmup:.0f} s after "
                  "start); RSS in MiB at the window's end. tmux 120x40, 2 s refresh.")
            print("| processes | " + " | ".join(f"{t} {tools.versions[t]}" for t in names) + " |")
            print("|---|" + "---|" * len(names))
            for n, per in results.items():
                procs = [w.procs for ws in per.values() for w in ws]
                cells = [f"{_range([w.cpu_pct for w in per[t]])} % ({_range([w.rss for w in per[t]], '{:.0f}')} MiB)"
                         for t in names]
                print(f"| ~{round(statistics.mean(procs)):,} | " + " | ".join(cells) + " |")
            others = [w.others_cores for per in results.values() for ws in per.values() for w in ws]
            if others:
                print(f"other load during the windows: {min(others):.2f}–{max(others):.2f} of "
                      f"{os.cpu_count()} cores busy besides the tool measured")
            print(flush=True)

        if args.tabs:
            for n in [int(x) for x in args.tabs.split(",") if x != ""]:
                pop.grow_to(n)
                time.sleep(2)
                print(f"memtop per tab, {n} sleepers ({machine_procs()} processes), settle {args.tab_settle:.0f} s, "
                      f"window {args.tab_window:.0f} s:", flush=True)
                measure_tabs(tools, args.tab_settle, args.tab_window, args.warmup)
            print(flush=True)

        if args.startup:
            for n in [int(x) for x in args.startup_procs.split(",") if x != ""]:
                pop.grow_to(n)
                time.sleep(2)
                for t in [t for t in args.startup_tools.split(",") if tools.available.get(t, False)]:
                    times = [measure_startup(tools, t) for _ in range(args.startup)]
                    ok = [x for x in times if x is not None]
                    print(f"start-up to a full first screen, {t}, {machine_procs()} processes: "
                          + ", ".join(f"{x:.2f}" for x in ok) + " s"
                          + (f" (median {statistics.median(ok):.2f} s)" if ok else ""), flush=True)
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        signal.signal(signal.SIGTERM, old_int)
        pop.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
