#!/usr/bin/env bash
# Give memtop a gdb that can call into processes on this CPU; idempotent. scripts/setup.sh runs it.
#
# gdb before 14 saves and restores a fixed 2,688-byte XSAVE area; on a CPU with AMX the kernel's
# is larger, PTRACE_SETREGSET fails ("Couldn't write extended state status: Bad address") and a
# process called into runs on with its vector registers not restored. memtop refuses such a gdb
# (memtop/heap/gdb.py). Debian 12's gdb is 13.1: on such a CPU this script builds gdb 16.3 from
# Debian trixie's source (16.3 today; ~9 min on 2 cores, once per machine) into $PREFIX and links it
# beside memtop's Python (.venv/bin/gdb), where memtop looks first.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=/opt/memtop/gdb
link=.venv/bin/gdb

gdb_major() { "$1" --version 2>/dev/null | sed -n '1s/^GNU gdb .* \([0-9][0-9]*\)\.[0-9].*/\1/p'; }

if ! grep -q '^flags.* amx_tile' /proc/cpuinfo; then
    rm -f "$link"  # any gdb will do on this CPU: the system's, found on PATH
    exit 0
fi
system_gdb=$(command -v gdb || true)
if [ -n "$system_gdb" ] && [ "$(readlink -f "$system_gdb")" != "$PREFIX/bin/gdb" ] \
        && [ "$(gdb_major "$system_gdb")" -ge 14 ] 2>/dev/null; then
    rm -f "$link"
    exit 0
fi
if ! [ -x "$PREFIX/bin/gdb" ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: this CPU (AMX) needs gdb >= 14 for trim and malloc_info; run make setup as root to build it" >&2
        exit 0
    fi
    echo "setup: the system's gdb cannot call into processes on this CPU (AMX); building gdb from Debian trixie's source into $PREFIX (~9 min, once)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq g++ make libgmp-dev libmpfr-dev xz-utils dpkg-dev >/dev/null
    work=$(mktemp -d /var/tmp/memtop-gdb.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    # Trixie's source package, through a private apt configuration (the host's sources stay as they are).
    mkdir -p "$work/apt/lists/partial" "$work/apt/cache"
    echo "deb-src http://deb.debian.org/debian trixie main" > "$work/apt/sources.list"
    apt_opts=(-o Dir::Etc::sourcelist="$work/apt/sources.list" -o Dir::Etc::sourceparts=/dev/null
              -o Dir::State::Lists="$work/apt/lists" -o Dir::Cache="$work/apt/cache")
    apt-get "${apt_opts[@]}" update -qq >/dev/null
    (cd "$work" && apt-get "${apt_opts[@]}" source --download-only -qq gdb >/dev/null 2>&1)
    tarball=$(ls "$work"/gdb_*.orig.tar.xz)
    tar -C "$work" -xf "$tarball"
    src=$(ls -d "$work"/gdb-*/)
    mkdir "$work/build"
    (cd "$work/build" && "${src}configure" --prefix="$PREFIX" --disable-werror --without-python \
        --without-guile --disable-sim --disable-gdbserver --without-debuginfod --disable-nls --disable-tui \
        --without-babeltrace --without-intel-pt --without-xxhash --disable-source-highlight \
        --disable-inprocess-agent --without-lzma --without-zstd --enable-targets=x86_64-pc-linux-gnu \
        --disable-gprofng --disable-binutils --disable-ld --disable-gas --disable-gold --disable-gprof \
        --without-expat >"$work/configure.log" 2>&1 \
        && make -j"$(nproc)" all-gdb MAKEINFO=true >"$work/make.log" 2>&1) || {
        echo "setup: building gdb failed; the last lines of the log:" >&2
        tail -20 "$work/make.log" "$work/configure.log" 2>/dev/null >&2
        exit 1
    }
    # Installed whole or not at all: into a new directory, renamed into place.
    stage="$PREFIX.new.$$"
    install -D -m 0755 "$work/build/gdb/gdb" "$stage/bin/gdb"
    strip "$stage/bin/gdb"
    make -C "$work/build/gdb/data-directory" install prefix="$stage" >/dev/null
    # The data directory is looked up under the configured prefix: rename after installing.
    rm -rf "$PREFIX"
    mv "$stage" "$PREFIX"
fi
mkdir -p .venv/bin
ln -sfn "$PREFIX/bin/gdb" "$link"
