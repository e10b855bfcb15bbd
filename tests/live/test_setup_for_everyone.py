"""Set-up for everyone (issue 19, item 6): a checkout set up by root (`make setup`) runs for any
user, and `pipx install .` installs memtop for one user; an unprivileged user sees what it may
(other users' PSS and fds unknown, actions refused with the reason).

The checkout is copied (its git files) to a directory every user can read, and scripts/setup.sh
runs there as root with the PATH the tests run with: on this machine the first python3 is
pyenv's, under /root, which other users cannot run properly; setup.sh then builds the virtualenv
from /usr/bin/python3."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support import IS_ROOT, end_tmux_server, wait_until

REPO = Path(__file__).resolve().parents[2]
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
pytestmark = [pytest.mark.live, pytest.mark.skipif(not IS_ROOT, reason="sets up as root, runs as nobody")]


def shared_dir(prefix: str) -> Path:
    """A fresh directory under /tmp that every user can enter (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def checkout():
    """The repository's files (as git has them), copied where every user can read them."""
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is missing")
    root = shared_dir("memtop-setup-")
    try:
        names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, check=True,
                               timeout=60).stdout.decode().split("\0")
        for name in filter(None, names):
            source, target = REPO / name, root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_symlink():
                target.symlink_to(os.readlink(source))
            elif source.exists():
                shutil.copy2(source, target)
        for path in [root, *root.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def as_nobody(*argv: str, cwd: str = "/tmp") -> subprocess.CompletedProcess:
    return subprocess.run([*NOBODY, *argv], capture_output=True, text=True, timeout=120, cwd=cwd,
                          stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})


def base_prefix(python: str, *prefix: str) -> str:
    return subprocess.run([*prefix, python, "-c", "import sys; print(sys.base_prefix)"], capture_output=True,
                          text=True, timeout=60).stdout.strip()


def test_a_checkout_set_up_by_root_runs_for_every_user(checkout, children):
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    done = subprocess.run(["./scripts/setup.sh"], cwd=checkout, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    first = subprocess.run(["python3", "-c", "import sys; print(sys.executable)"], capture_output=True, text=True,
                           env=env).stdout.strip()
    if base_prefix(first) != base_prefix(first, *NOBODY):  # pyenv under /root, as on this machine
        assert "is built from /usr/bin/python3" in done.stderr
    # No build banner (setuptools' warnings stay in .venv/pip.log) and no note that others cannot run it
    assert "!!" not in done.stderr + done.stdout and "Deprecat" not in done.stderr + done.stdout
    assert "Deprecat" not in (checkout / ".venv/pip.log").read_text()  # none hidden there either
    assert "cannot" not in done.stderr.replace(f"other users cannot run {first}", "")
    venv_python = str(checkout / ".venv/bin/python")
    assert base_prefix(venv_python) == base_prefix(venv_python, *NOBODY) != ""
    memtop = str(checkout / ".venv/bin/memtop")
    version = as_nobody(memtop, "--version")
    assert version.returncode == 0 and version.stdout.startswith("memtop ")

    # What nobody sees: its own figures, other users' PSS and fds unknown with the reason
    child = children.start([sys.executable, "-c", "import sys; print('READY', flush=True); sys.stdin.read()"])
    snap = as_nobody(memtop, "snapshot", "--top", "500")
    assert snap.returncode == 0, snap.stderr
    assert "? = unknown: smaps_rollup unreadable" in snap.stdout and "needs root or CAP_SYS_PTRACE" in snap.stdout
    explained = as_nobody(memtop, "explain", str(child.pid))
    assert explained.returncode == 0 and "next: Run memtop as root (or with CAP_SYS_PTRACE)." in explained.stdout
    # and the actions are refused with the reason, nothing done
    trimmed = as_nobody(memtop, "trim", str(child.pid), "--yes", "--follow", "0")
    assert trimmed.returncode == 1 and "needs root or CAP_SYS_PTRACE" in trimmed.stderr
    dropped = as_nobody(memtop, "drop-caches", "--yes")
    assert dropped.returncode == 1 and "root" in dropped.stderr


def test_the_live_view_as_nobody(checkout):
    """The TUI as an unprivileged user: its header says what it cannot see."""
    if not (checkout / ".venv/bin/memtop").exists():
        pytest.skip("needs the set-up checkout of the test above")
    name = f"memtop-nobody-{os.getpid()}"
    subprocess.run(["tmux", "-L", name, "new", "-d", "-s", name, "-x", "120", "-y", "40",
                    " ".join([*NOBODY, str(checkout / ".venv/bin/memtop")])], check=True, timeout=10)
    try:
        def screen() -> str:
            return subprocess.run(["tmux", "-L", name, "capture-pane", "-p", "-t", name], capture_output=True,
                                  text=True, timeout=10).stdout

        # The header says it once the first sample is shown (it may fold the note over two lines).
        note = "not root: other users' PSS/fds are ?"
        wait_until(lambda: note in " ".join(screen().split()), timeout=60, interval=0.2)
        assert "COMMAND" in screen()
    finally:
        end_tmux_server(name)


def test_pipx_install_for_one_user(checkout):
    if shutil.which("pipx") is None:
        pytest.fail("pipx is missing: run `make test`, which installs it as root")
    home = Path(tempfile.mkdtemp(prefix="memtop-pipx-"))
    try:
        env = {"HOME": str(home), "PIPX_HOME": str(home / "pipx"), "PIPX_BIN_DIR": str(home / "bin"),
               "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        clean = home / "src"  # a source tree without the set-up .venv in it
        shutil.copytree(checkout, clean, ignore=shutil.ignore_patterns(".venv", "*.egg-info", "build"), symlinks=True)
        done = subprocess.run(["pipx", "install", str(clean)], capture_output=True, text=True, timeout=900, env=env)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        memtop = home / "bin" / "memtop"
        assert subprocess.run([str(memtop), "--version"], capture_output=True, text=True, env=env,
                              timeout=60).stdout.startswith("memtop ")
        snap = subprocess.run([str(memtop), "snapshot", "--top", "3"], capture_output=True, text=True, env=env,
                              timeout=120)
        assert snap.returncode == 0 and "memory" in snap.stdout
        completion = subprocess.run([str(memtop), "completion", "bash"], capture_output=True, text=True, env=env,
                                    timeout=60)
        assert completion.returncode == 0 and "complete -o default -F _memtop memtop" in completion.stdout
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_pip_install_user(checkout):
    """`pip install --user .` with a Python that lets pip install into it (Debian's own python3 is
    "externally managed" (PEP 668): there pipx is the way, as the README says)."""
    python = Path(sys.base_prefix) / "bin" / "python3"
    stdlib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
                            capture_output=True, text=True, timeout=60).stdout.strip()
    if (Path(stdlib) / "EXTERNALLY-MANAGED").exists():
        pytest.skip(f"{python} is externally managed (PEP 668): pip install --user refuses it; pipx is tested above")
    home = Path(tempfile.mkdtemp(prefix="memtop-pipuser-"))
    try:
        clean = home / "src"
        shutil.copytree(checkout, clean, ignore=shutil.ignore_patterns(".venv", "*.egg-info", "build"), symlinks=True)
        env = {"HOME": str(home), "PYTHONUSERBASE": str(home / "local"), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--user",
                               str(clean)], capture_output=True, text=True, timeout=900, env=env, cwd=home)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        version = subprocess.run([str(home / "local/bin/memtop"), "--version"], capture_output=True, text=True,
                                 env=env, timeout=60, cwd=home)
        assert version.returncode == 0 and version.stdout.startswith("memtop "), version.stderr
    finally:
        shutil.rmtree(home, ignore_errors=True)
