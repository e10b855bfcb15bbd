#!/usr/bin/env bash
# Set up memtop in a project-local virtualenv; idempotent.
# As root on Debian/Ubuntu it installs the missing system packages first:
#   gdb (malloc_trim, malloc_info), gcc + libc6-dev (tests build small C targets),
#   python3-venv (the virtualenv), tmux (TUI tests and screenshots as a user sees them),
#   python3-dev when the Python in use has no headers (the heap walk's C extension, built by
#   `pip install`; without it memtop still installs, with the slower pure-Python walk).
# With --test (make test) also what only the tests use: prometheus (the exporter's live test
# runs a real Prometheus server that scrapes `memtop export`), the runtimes and servers the
# runtime layer is tested against (a JDK: javac, jstat, jcmd; Go, PostgreSQL, MariaDB, Redis), the
# allocators the allocator layer is tested against: jemalloc (and Debian's redis-server, built
# with it), tcmalloc (libgoogle-perftools4), mimalloc, musl (musl-tools: musl-gcc, dynamic and
# static), and libc6-dbg (glibc's debug symbols, found by build-id on the host and inside a
# container's root), and ruby (the MALLOC_ARENA_MAX=2 model's test of Ruby threads);
# pipx (the README's install for everyone) and zsh (`memtop completion zsh`).
# With --matrix (make test-matrix, or MEMTOP_MATRIX=1 make test) also what the kernel and glibc
# matrix uses: debootstrap (chroots), qemu-system-x86 and virtme-ng (kernels booted under TCG;
# virtme-ng, pinned, goes into the virtualenv), busybox-static and kmod (virtme-ng's initramfs
# and depmod).
set -euo pipefail
cd "$(dirname "$0")/.."
for_tests=0
for_matrix=0
for arg in "$@"; do
    case $arg in
        --test) for_tests=1 ;;
        --matrix) for_tests=1; for_matrix=1 ;;
    esac
done

need=()
command -v gdb >/dev/null 2>&1 || need+=(gdb)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v tmux >/dev/null 2>&1 || need+=(tmux)

# The virtualenv runs its base interpreter. As root, memtop is set up for everyone who uses this
# checkout (another user sees less, but memtop runs): a python3 under /root (pyenv, a home-made
# build) cannot be run by other users, so the virtualenv is built from /usr/bin/python3 instead,
# unless PYTHON says which one to use.
runs_for_others() {  # does an unprivileged user (nobody) run this interpreter as root does? (root only)
    # (Where its prefix cannot be read, Python may still start, on another Python's standard
    # library found by its search: the same prefix for both is the test.)
    local mine theirs
    command -v setpriv >/dev/null 2>&1 || return 1
    mine=$("$1" -c 'import sys; print(sys.base_prefix)' 2>/dev/null) || return 1
    theirs=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$1" -c 'import sys; print(sys.base_prefix)' \
             2>/dev/null) || return 1
    [ "$mine" = "$theirs" ]
}
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 && ! [ -x .venv/bin/python ]; then
        exe=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null || true)
        if [ -n "$exe" ] && ! runs_for_others "$exe" && [ -x /usr/bin/python3 ] && runs_for_others /usr/bin/python3; then
            echo "setup: other users cannot run $exe; .venv is built from /usr/bin/python3 so that anyone" \
                 "can run memtop from this checkout (PYTHON=... chooses another)" >&2
            PYTHON=/usr/bin/python3
        fi
    fi
fi
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then need+=(python3-venv); fi
# Python.h where this Python looks for it (python3-dev provides it for Debian's own python3 only).
if ! "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' >/dev/null 2>&1; then
    need+=(python3-dev)
fi
# Only the binary is wanted (no node exporter and friends from its Recommends).
test_need=()
if [ $for_tests = 1 ] && ! [ -x /usr/bin/prometheus ] && ! command -v prometheus >/dev/null 2>&1; then
    test_need+=(prometheus)
fi
if [ $for_tests = 1 ]; then
    command -v javac >/dev/null 2>&1 && command -v jcmd >/dev/null 2>&1 || test_need+=(openjdk-17-jdk-headless)
    command -v go >/dev/null 2>&1 || test_need+=(golang-go)
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || test_need+=(postgresql)
    command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || test_need+=(mariadb-server)
    command -v redis-server >/dev/null 2>&1 || test_need+=(redis-server)
    libdir=/usr/lib/x86_64-linux-gnu
    [ -e $libdir/libjemalloc.so.2 ] || test_need+=(libjemalloc2)
    [ -e $libdir/libtcmalloc.so.4 ] || test_need+=(libgoogle-perftools4)
    [ -e $libdir/libmimalloc.so.2 ] || test_need+=(libmimalloc2.0)
    command -v musl-gcc >/dev/null 2>&1 || test_need+=(musl-tools)
    # glibc's debug symbols: the heap tests use them, the container test copies them into a root.
    if command -v dpkg-query >/dev/null 2>&1; then
        dpkg-query -W -f='${Status}' libc6-dbg 2>/dev/null | grep -q 'ok installed' || test_need+=(libc6-dbg)
    fi
    command -v ruby >/dev/null 2>&1 || test_need+=(ruby)
    # `pipx install .` for everyone (README), and zsh for `memtop completion zsh`: tested too.
    command -v pipx >/dev/null 2>&1 || test_need+=(pipx)
    command -v zsh >/dev/null 2>&1 || test_need+=(zsh)
fi
if [ $for_matrix = 1 ]; then
    command -v debootstrap >/dev/null 2>&1 || test_need+=(debootstrap)
    command -v qemu-system-x86_64 >/dev/null 2>&1 || test_need+=(qemu-system-x86)
    [ -x /bin/busybox ] || command -v busybox >/dev/null 2>&1 || test_need+=(busybox-static)
    command -v depmod >/dev/null 2>&1 || test_need+=(kmod)
    [ -r /usr/share/keyrings/debian-archive-keyring.gpg ] || test_need+=(debian-archive-keyring)
fi
if [ ${#need[@]} -gt 0 ] || [ ${#test_need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing ${need[*]} ${test_need[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        [ ${#need[@]} -eq 0 ] || apt-get install -y -qq "${need[@]}" >/dev/null
        [ ${#test_need[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${test_need[@]}" >/dev/null
    else
        echo "setup: missing system packages: ${need[*]} ${test_need[*]} (run as root to install them); continuing" >&2
    fi
fi

stamp=.venv/.memtop-setup
# Anything that changes what `pip install` builds: a changed C source rebuilds the extension.
want=$(cat pyproject.toml constraints.txt setup.py memtop/heap/_walk.c scripts/setup.sh | sha256sum | cut -d' ' -f1)
if ! [ -x .venv/bin/python ] || ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    # pip's output (the build backend's editable-install banner, warnings about this machine's
    # pip configuration) is kept in .venv/pip.log and shown only if pip fails.
    # Exactly the tested versions of every Python package (constraints.txt, `make lock`), pip too.
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt --upgrade pip \
        >.venv/pip.log 2>&1 || { cat .venv/pip.log >&2; exit 1; }
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]' \
        >>.venv/pip.log 2>&1 || { cat .venv/pip.log >&2; exit 1; }
    echo "$want" > "$stamp"
fi
# A gdb that can call into processes on this CPU (trim, malloc_info): see scripts/gdb.sh.
./scripts/gdb.sh
# Say it when other users cannot run memtop from this checkout, and what to do.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 && ! runs_for_others "$PWD/.venv/bin/python"; then
    if ! setpriv --reuid=65534 --regid=65534 --clear-groups test -r "$PWD/pyproject.toml" 2>/dev/null; then
        echo "setup: note: other users cannot read this checkout ($PWD): to let them run memtop, put it" \
             "where they can (or install it for them: pipx install .)" >&2
    else
        echo "setup: note: other users cannot run .venv/bin/python (built from" \
             "$(sed -n 's/^home = //p' .venv/pyvenv.cfg)); for them too: make clean && make setup" >&2
    fi
fi
if [ $for_matrix = 1 ] && ! [ -x .venv/bin/vng ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check 'virtme-ng==1.42'
fi
