#!/usr/bin/env bash
# Fetch and unpack a Debian kernel for the kernel matrix (tests/matrix/test_kernels.py).
#
#   scripts/matrix/fetch-kernel.sh SUITE   (bullseye: 5.10, bookworm: 6.1, trixie: 6.12)
#
# Prints the unpacked tree: CACHE/kernels/SUITE with boot/vmlinuz-VERSION and the modules. The
# package is found through a private apt configuration in a temporary directory (the suite's
# sources, the host's keyring): the host's /etc/apt is not touched. The tree is cached between
# runs; it is unpacked beside its final place and renamed when complete, so an interrupted run
# leaves nothing that a later run would take for a kernel (its leftovers are removed by the next
# run). Runs of the same suite wait for each other (flock).
set -euo pipefail
suite=${1:?usage: fetch-kernel.sh SUITE}
cache=${MEMTOP_MATRIX_CACHE:-/var/cache/memtop-matrix}
mirror=${MEMTOP_MATRIX_MIRROR:-http://deb.debian.org/debian}
security=${MEMTOP_MATRIX_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
dest=$cache/kernels/$suite

command -v apt-get >/dev/null || { echo "fetch-kernel: apt-get is missing" >&2; exit 1; }
[ -r "$keyring" ] || { echo "fetch-kernel: $keyring is missing (debian-archive-keyring)" >&2; exit 1; }
command -v depmod >/dev/null || { echo "fetch-kernel: depmod is missing (apt-get install kmod)" >&2; exit 1; }
mkdir -p "$cache/kernels"
chmod 755 "$cache" "$cache/kernels"
exec 9>"$cache/kernels/.lock-$suite"
flock 9
if [ -f "$dest/COMPLETE" ]; then
    echo "$dest"
    exit 0
fi
rm -rf "$cache/kernels/.fetch-$suite".*

work=$(mktemp -d "$cache/kernels/.fetch-$suite.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/deb"
{
    echo "deb [signed-by=$keyring] $mirror $suite main"
    echo "deb [signed-by=$keyring] $security $suite-security main"
} > "$work/apt/sources.list"
apt_opts=(
    -o "Dir::Etc::SourceList=$work/apt/sources.list"
    -o "Dir::Etc::SourceParts=$work/apt/none"
    -o "Dir::State::Lists=$work/apt/lists"
    -o "Dir::Cache=$work/apt/cache"
    -o "Dir::State::status=/dev/null"
    -o "APT::Get::List-Cleanup=0"
    -o "Debug::NoLocking=1"
)
apt-get "${apt_opts[@]}" -qq update >&2
# linux-image-amd64 depends on the suite's current kernel package, e.g. linux-image-5.10.0-35-amd64.
package=$(apt-cache "${apt_opts[@]}" depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)
[ -n "$package" ] || { echo "fetch-kernel: no linux-image-amd64 dependency in $suite" >&2; exit 1; }
(cd "$work/deb" && apt-get "${apt_opts[@]}" -qq download "$package" >&2)
dpkg-deb -x "$work"/deb/*.deb "$work/tree"
vmlinuz=$(ls "$work"/tree/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$vmlinuz" ] || { echo "fetch-kernel: $package has no /boot/vmlinuz-*" >&2; exit 1; }
version=${vmlinuz##*/vmlinuz-}
# virtme-ng finds the modules beside the image (lib/modules/VERSION); make modules.dep now so
# that each boot does not run depmod again.
moddir=$work/tree/lib/modules/$version
[ -d "$moddir" ] || moddir=$work/tree/usr/lib/modules/$version
depmod -b "${moddir%/lib/modules/$version}" "$version"
echo "$package $version" > "$work/tree/COMPLETE"
rm -rf "$dest"
mv "$work/tree" "$dest"
echo "$dest"
