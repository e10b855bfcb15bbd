"""Helpers for the `memtop export` tests: start the exporter, scrape it, read a process's RSS."""

from __future__ import annotations

import http.client
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SERVING = re.compile(r"serving http://(\[[^\]]+\]|[^:/]+):(\d+)/metrics")


def start_exporter(children, *args: str, timeout: float = 60.0):
    """Start `python -m memtop export --listen 127.0.0.1:0 ARGS` (a free port chosen by the
    kernel); return (child, host, port) once it prints the address it serves on."""
    argv = [sys.executable, "-m", "memtop", "export", *args]
    if "--listen" not in args:
        argv += ["--listen", "127.0.0.1:0"]
    child = children.start(argv, ready=False, cwd=REPO)
    deadline = time.monotonic() + timeout
    while True:
        if not child.alive():
            raise RuntimeError(f"memtop export exited {child.proc.returncode}: {child.proc.stderr.read().decode()}")
        line = child.readline(max(0.1, deadline - time.monotonic()))
        match = SERVING.search(line)
        if match:
            return child, match.group(1).strip("[]"), int(match.group(2))
        if time.monotonic() > deadline:
            raise TimeoutError(f"memtop export did not start: {line!r}")


def get(host: str, port: int, path: str = "/metrics", method: str = "GET", timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def vm_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise KeyError("VmRSS")


def metric_value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)
