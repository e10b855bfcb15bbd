"""Shared by the matrix tests: the cached kernels and chroots (scripts/matrix/), virtme-ng boots.

Everything here fails (pytest.fail) with the reason when a tool is missing or a step breaks: the
matrix is only collected to run when it was asked for (tests/matrix/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts" / "matrix"
VENV_BIN = Path(sys.executable).parent
# What a test records for the README table and the report (printed at the end of the run).
RESULTS: list[dict] = []


def cached(script: str, suite: str, timeout: float) -> Path:
    """Run scripts/matrix/SCRIPT SUITE (cached in /var/cache/memtop-matrix); its directory."""
    started = time.monotonic()
    try:
        done = subprocess.run([str(SCRIPTS / script), suite], capture_output=True, text=True, timeout=timeout,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{script} {suite} did not finish within {timeout:.0f} s")
    if done.returncode != 0:
        pytest.fail(f"{script} {suite} failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
    path = Path(done.stdout.strip().splitlines()[-1])
    if not path.is_dir():
        pytest.fail(f"{script} {suite} printed {path}, which is not a directory")
    RESULTS.append({"what": f"{script} {suite}", "seconds": round(time.monotonic() - started, 1)})
    return path


def need(tool: str, hint: str) -> str:
    """The path of ``tool`` (the venv's bin first); a failure naming the package when missing."""
    found = shutil.which(tool, path=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(f"{tool} is missing: {hint}")
    return found


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a child started with start_new_session and everything it started (qemu, chroot'ed
    targets), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def boot(kernel_dir: Path, outdir: Path, command: str, *, append: tuple[str, ...] = (), timeout: float = 900,
         memory: str = "1G", cpus: int = 2) -> tuple[float, str]:
    """Boot the unpacked kernel under virtme-ng with TCG, the host's filesystem shared read-only
    and ``outdir`` writable, run ``command`` in the guest; (seconds, vng's output ending with its
    exit status).

    The caller judges by the files the guest wrote into ``outdir``, not by vng's exit status
    (without udev in the guest it is not the command's). qemu and vng are killed (process group)
    whatever happens.
    """
    vng = need("vng", "run `make test-matrix` (scripts/setup.sh --matrix installs virtme-ng)")
    need("qemu-system-x86_64", "apt-get install qemu-system-x86 (scripts/setup.sh --matrix)")
    images = sorted((kernel_dir / "boot").glob("vmlinuz-*"))
    if not images:
        pytest.fail(f"no boot/vmlinuz-* in {kernel_dir}")
    argv = [vng, "--run", str(images[0]), "--disable-kvm", "--memory", memory, "--cpus", str(cpus),
            "--rwdir", str(outdir), "--exec", command]
    for option in append:
        argv += ["--append", option]
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=REPO, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        pytest.fail(f"the guest ({images[0].name}) did not finish within {timeout:.0f} s")
    finally:
        kill_group(proc)
    return time.monotonic() - started, f"{output}[vng exit status {proc.returncode}]"
