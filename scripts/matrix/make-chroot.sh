#!/usr/bin/env bash
# Make (once) a Debian chroot for the glibc matrix (tests/matrix/test_glibc.py).
#
#   scripts/matrix/make-chroot.sh SUITE   (bullseye: glibc 2.31, trixie: glibc 2.41)
#
# debootstrap --variant=minbase with gcc and libc6-dev, so that the test builds its C target
# inside. Prints the chroot's directory, CACHE/chroots/SUITE. It is cached between runs: it is
# built beside its final place and renamed when debootstrap finished, so an interrupted run leaves
# no half chroot that a later run would take; leftovers of an interrupted build are removed (with
# any mount debootstrap left in them) before a new one starts. Runs of the same suite wait for
# each other (flock).
set -euo pipefail
suite=${1:?usage: make-chroot.sh SUITE}
cache=${MEMTOP_MATRIX_CACHE:-/var/cache/memtop-matrix}
mirror=${MEMTOP_MATRIX_MIRROR:-http://deb.debian.org/debian}
dir=$cache/chroots
dest=$dir/$suite
stamp=.memtop-matrix-complete

command -v debootstrap >/dev/null || { echo "make-chroot: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
mkdir -p "$dir"
chmod 755 "$cache" "$dir"
exec 9>"$dir/.lock-$suite"
flock 9

if [ -f "$dest/$stamp" ]; then
    echo "$dest"
    exit 0
fi

unmount_under() {
    # Mounts debootstrap made inside the tree (proc, sys...), deepest first.
    awk -v p="$1/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
}
for old in "$dir"/.build-"$suite".*; do
    [ -e "$old" ] || continue
    unmount_under "$old"
    rm -rf --one-file-system "$old"
done

work=$(mktemp -d "$dir/.build-$suite.XXXXXX")
cleanup() { unmount_under "$work"; rm -rf --one-file-system "$work"; }
trap cleanup EXIT
if ! debootstrap --variant=minbase --include=gcc,libc6-dev "$suite" "$work/root" "$mirror" > "$work/log" 2>&1; then
    tail -n 20 "$work/log" >&2
    echo "make-chroot: debootstrap $suite failed" >&2
    exit 1
fi
unmount_under "$work"
# Not needed inside, and large: apt's downloaded packages.
rm -f "$work"/root/var/cache/apt/archives/*.deb
date -u +%FT%TZ > "$work/root/$stamp"
rm -rf --one-file-system "$dest"
mv "$work/root" "$dest"
echo "$dest"
