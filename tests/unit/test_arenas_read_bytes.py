"""read_bytes must return whole multi-record proc files: /proc/PID/smaps answers each read() with
about one page, so "a short read is the end" loses all but the first mappings (the census and
the Layers split then see 5 mappings of 80)."""

from __future__ import annotations

import mmap
import os

from memtop.procfs import read_bytes


def _read_until_eof(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def test_smaps_and_maps_are_read_whole():
    # GIVEN this process with enough mappings that its smaps is several pages long
    regions = [mmap.mmap(-1, 4096 * (i + 1)) for i in range(40)]
    try:
        for name in ("smaps", "maps"):
            path = f"/proc/{os.getpid()}/{name}"
            data = read_bytes(path)
            # THEN every mapping is there (the maps text of one moment; compare mapping counts)
            assert len(data) > 4096
            assert data.count(b"\n") >= len(_read_until_eof(path).splitlines()) - 2
            assert data.endswith(b"\n")
        smaps = read_bytes(f"/proc/{os.getpid()}/smaps")
        assert smaps.count(b"\nVmFlags:") >= 40
    finally:
        for region in regions:
            region.close()


def test_single_show_files_still_read_in_one_go():
    status = read_bytes(f"/proc/{os.getpid()}/status")
    assert status.startswith(b"Name:") and b"VmRSS:" in status
