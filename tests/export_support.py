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


# A name any user can give a mount point (`unshare -Urm` then mount): bytes that are not UTF-8.
HOSTILE_DIR = b"memtop-hostile-\xff\xfe"
# ... and a source (free text for a tmpfs) with escape sequences: mountinfo shows it; memtop
# exports the device number instead, but every reader of mountinfo meets it.
HOSTILE_DEVICE = "dev\x1b]0;owned\x07\x1b[2J"


class HostileMount:
    """A tmpfs mounted on ``parent/memtop-hostile-\\xff\\xfe`` in a new user + mount namespace
    (``unshare -Urm``: what an unprivileged user can do), held by a child that sleeps; 1 MiB of
    data in it so that it has a size to export. :meth:`close` kills the child (the namespace and
    its mount go with it) and removes the directory."""

    def __init__(self, parent: Path):
        import os
        import shutil
        import subprocess

        if shutil.which("unshare") is None:
            raise RuntimeError("unshare (util-linux) is missing")
        self.dir = os.path.join(os.fsencode(parent), HOSTILE_DIR)
        os.mkdir(self.dir)
        script = ('mount -t tmpfs -o size=4m "$2" "$1" && head -c 1048576 /dev/zero > "$1/data" '
                  '&& echo READY && exec sleep 600')
        self.proc = subprocess.Popen([b"unshare", b"-Urm", b"sh", b"-c", script.encode(), b"sh", self.dir,
                                      HOSTILE_DEVICE.encode()],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        line = self.proc.stdout.readline()
        if line.strip() != b"READY":
            err = self.proc.stderr.read() if self.proc.poll() is not None else b""
            self.close()
            raise RuntimeError(f"cannot mount the hostile tmpfs: {line!r} {err!r}")
        self.pid = self.proc.pid  # `exec sleep`: the sleeping process holds the namespace

    @property
    def mountpoint(self) -> str:
        """The mount point as memtop keeps it (surrogateescape)."""
        import os

        return os.fsdecode(self.dir)

    def close(self) -> None:
        import os
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc.stdout.close()
        self.proc.stderr.close()
        try:
            os.rmdir(self.dir)
        except FileNotFoundError:
            pass
