"""Pure parts of the runtime readers: obmalloc pool headers, V8 page headers, the sizes and
configuration files of postgres and MariaDB, redis' counter load. The live tests hold the
figures against the programs; these pin the rules down, with bytes laid out as the programs
lay them out (the layouts are cited in each module)."""

from __future__ import annotations

import struct

from memtop.runtime.apps import _rip_load_target, parse_my_cnf, parse_postgresql_conf, parse_size
from memtop.runtime.cpython import Geometry, Pool, geometry_for, group_arenas, parse_pool_header
from memtop.runtime.node import parse_page_header

G = Geometry(16 << 10, 1 << 20)


def _pool(count=3, freeblock=0, nextpool=0x1000, prevpool=0x2000, arena=7, szidx=1, nextoffset=None, maxnext=None,
          address=0x7F0000004000):
    size = (szidx + 1) * 16
    nextoffset = 48 + 4 * size if nextoffset is None else nextoffset
    maxnext = G.pool_size - size if maxnext is None else maxnext
    return struct.pack("<QQQQIIII", count, freeblock, nextpool, prevpool, arena, szidx, nextoffset, maxnext), address


def test_a_real_pool_header_is_recognised():
    raw, address = _pool(freeblock=0x7F0000004000 + 48 + 2 * 32)
    assert parse_pool_header(raw, address, G) == Pool(address, 3, 7, 1)


def test_headers_that_contradict_themselves_are_not_pools():
    assert parse_pool_header(*_pool(maxnext=G.pool_size - 48), G) is None  # maxnextoffset for another class
    assert parse_pool_header(*_pool(szidx=32), G) is None
    assert parse_pool_header(*_pool(nextoffset=48 + 33), G) is None  # not on a block boundary
    assert parse_pool_header(*_pool(count=10_000), G) is None  # more blocks than a pool holds
    assert parse_pool_header(*_pool(freeblock=0x10), G) is None  # free list outside the pool
    assert parse_pool_header(*_pool(nextpool=0), G) is None
    assert parse_pool_header(bytes(48), 0x7F0000004000, G) is None  # zeros (never-used memory)


def test_geometry_by_version():
    assert geometry_for("3.11") == geometry_for("3.13") == Geometry(16 << 10, 1 << 20)
    assert geometry_for("3.9") == Geometry(4 << 10, 256 << 10)
    assert geometry_for("3.7") is None and geometry_for(None) is None


def test_pools_with_one_index_far_apart_are_two_arenas():
    pools = [Pool(0x10000000, 1, 3, 0), Pool(0x10004000, 0, 3, 0), Pool(0x20000000, 2, 3, 0)]
    groups = group_arenas(pools, G)
    assert sorted(len(g) for _, g in groups) == [1, 2]


def _v8_page(address=0x3F9B8B40000, size=0x40000, heap=0x12073EC0, allocated=0x3EEB8, owner=0x12047158,
             reservation=None):
    reservation = address if reservation is None else reservation
    return struct.pack("<12Q", size, 0xA, heap, address + 0x1148, address + size, allocated, 0, 0x3FFF8, owner,
                       0x566A2F0, reservation, size), address


def test_v8_page_header_from_node_20():
    # Words read from a real node 20 page (V8 11.3): size, flags, heap, area start/end, allocated...
    raw, address = _v8_page()
    assert parse_page_header(raw, address) == (0x40000, 0x12073EC0, 0x3EEB8, 0x12047158)
    assert parse_page_header(*_v8_page(reservation=0x1000)) is None
    assert parse_page_header(*_v8_page(allocated=0x50000)) is None
    assert parse_page_header(*_v8_page(size=0x40001)) is None
    assert parse_page_header(bytes(96), 0x3F9B8B40000) is None


def test_sizes_in_postgres_and_mysql_units():
    assert parse_size("128MB") == 128 << 20 and parse_size("'48MB'") == 48 << 20
    assert parse_size("16384", 8192) == 128 << 20  # shared_buffers without a unit: 8 kB blocks
    assert parse_size("96M") == 96 << 20 and parse_size("1G") == 1 << 30
    assert parse_size("lots") is None and parse_size("12 parsecs") is None


def test_postgresql_conf_lines():
    conf = parse_postgresql_conf("# shared_buffers = 1GB\nshared_buffers = '48MB'   # set\n"
                                 "work_mem=4MB\nlisten_addresses = 'a''b'\n")
    assert conf == {"shared_buffers": "48MB", "work_mem": "4MB", "listen_addresses": "a'b"}


def test_my_cnf_sections():
    cnf = parse_my_cnf("[client]\ninnodb_buffer_pool_size = 1G\n[mysqld]\ninnodb-buffer-pool-size = 80M # x\n"
                       "[mariadb-10.11]\nmax_connections=10\n")
    assert cnf == {"innodb_buffer_pool_size": "80M", "max_connections": "10"}


def test_redis_counter_is_found_from_its_load():
    # mov rax, [rip + 0x1234]; ret  at 0x7c320 -> the counter is at 0x7c320 + 7 + 0x1234
    assert _rip_load_target(b"\x48\x8b\x05" + struct.pack("<i", 0x1234) + b"\xc3", 0x7C320) == 0x7C320 + 7 + 0x1234
    assert _rip_load_target(b"\x55\x48\x89\xe5" + bytes(8), 0x7C320) is None
