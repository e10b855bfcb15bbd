#!/usr/bin/env bash
# Set up memtop in a project-local virtualenv; idempotent.
# As root on Debian/Ubuntu it installs the missing system packages first:
#   gdb (malloc_trim, malloc_info), gcc + libc6-dev (tests build small C targets),
#   python3-venv (the virtualenv), tmux (TUI tests and screenshots as a user sees them).
# With --test (make test) also what only the tests use: prometheus (the exporter's live test
# runs a real Prometheus server that scrapes `memtop export`). With --matrix (make test-matrix, or MEMTOP_MATRIX=1 make test) also what the
# kernel and glibc matrix uses: debootstrap (chroots), qemu-system-x86 and virtme-ng (kernels
# booted under TCG; virtme-ng, pinned, goes into the virtualenv), busybox-static and kmod
# (virtme-ng's initramfs and depmod).
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
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then need+=(python3-venv); fi
# Only the binary is wanted (no node exporter and friends from its Recommends).
test_need=()
if [ $for_tests = 1 ] && ! [ -x /usr/bin/prometheus ] && ! command -v prometheus >/dev/null 2>&1; then
    test_need+=(prometheus)
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
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if ! { [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
    echo "$want" > "$stamp"
fi
if [ $for_matrix = 1 ] && ! [ -x .venv/bin/vng ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check 'virtme-ng==1.42'
fi
