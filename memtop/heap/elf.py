"""Just enough of ELF (man 5 elf) to find glibc's private symbols: headers, sections, notes,
symbol tables and RELA relocations. Little-endian 64-bit only: anything else raises ElfError.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

PT_LOAD = 1
PT_NOTE = 4
SHT_SYMTAB = 2
SHT_RELA = 4
SHT_NOTE = 7
SHT_NOBITS = 8
SHT_DYNSYM = 11
NT_GNU_BUILD_ID = 3
R_X86_64_RELATIVE = 8
EM_X86_64 = 62


class ElfError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


@dataclass(frozen=True, slots=True)
class Segment:
    type: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


def elf_class(data: bytes) -> int | None:
    """1 for 32-bit, 2 for 64-bit, None when not ELF."""
    if len(data) < 5 or data[:4] != b"\x7fELF":
        return None
    return data[4]


def section_names(f: BinaryIO, max_names: int = 1 << 20) -> set[str]:
    """The section names of the 64-bit little-endian ELF file open as ``f``, reading only its
    header, its section header table and the section-name table (not the whole file: a 30 MiB
    executable cost 30 MiB of RSS per look). Raises ElfError when it is not such a file or a
    table is out of bounds."""
    head = f.read(64)
    if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        raise ElfError("not a little-endian 64-bit ELF file")
    shoff, = struct.unpack_from("<Q", head, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x3A)
    if not shoff or shnum == 0:
        return set()
    if shentsize < 64 or shstrndx >= shnum:
        raise ElfError("bad section header table")
    f.seek(shoff)
    table = f.read(shentsize * shnum)
    if len(table) < shentsize * shnum:
        raise ElfError("section header table beyond the end of the file")
    fields = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
    _, _, _, _, str_off, str_size = fields[shstrndx]
    if str_size > max_names:
        raise ElfError("section name table too large")
    f.seek(str_off)
    names = f.read(str_size)
    return {names[name:names.find(b"\0", name)].decode("ascii", "replace")
            for name, *_ in fields if name < len(names)}


class ElfFile:
    def __init__(self, data: bytes):
        if data[:4] != b"\x7fELF":
            raise ElfError("not an ELF file")
        if data[4] != 2 or data[5] != 1:
            raise ElfError("not a little-endian 64-bit ELF file")
        self.data = data
        (self.type, self.machine, _, _, phoff, shoff, _, _, phentsize, phnum, shentsize, shnum, shstrndx) = \
            struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
        self.segments = tuple(
            Segment(t, off, vaddr, filesz, memsz)
            for t, _flags, off, vaddr, _paddr, filesz, memsz, _align in (
                struct.unpack_from("<IIQQQQQQ", data, phoff + i * phentsize) for i in range(phnum)
            )
        ) if phoff else ()
        raw = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)] if shoff else []
        names = raw[shstrndx] if raw and shstrndx < len(raw) else None
        sections = []
        for name_off, stype, _flags, addr, off, size, link, _info, _align, entsize in raw:
            name = self._cstr(names[4] + name_off) if names else ""
            sections.append(Section(name, stype, addr, off, size, link, entsize))
        self.sections = tuple(sections)

    def _cstr(self, offset: int) -> str:
        end = self.data.find(b"\0", offset)
        return self.data[offset:end].decode("ascii", "replace")

    def section(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def build_id(self) -> str | None:
        """NT_GNU_BUILD_ID from the note sections (or PT_NOTE segments), as hex."""
        spans = [(s.offset, s.size) for s in self.sections if s.type == SHT_NOTE]
        spans += [(p.offset, p.filesz) for p in self.segments if p.type == PT_NOTE]
        for offset, size in spans:
            pos, end = offset, offset + size
            while pos + 12 <= end:
                namesz, descsz, ntype = struct.unpack_from("<III", self.data, pos)
                name_start = pos + 12
                desc_start = name_start + ((namesz + 3) & ~3)
                if ntype == NT_GNU_BUILD_ID and self.data[name_start:name_start + namesz] == b"GNU\0":
                    return self.data[desc_start:desc_start + descsz].hex()
                pos = desc_start + ((descsz + 3) & ~3)
        return None

    def symbols(self, wanted: set[str]) -> dict[str, int]:
        """Values of the named symbols in .symtab, then .dynsym (first definition wins)."""
        return {name: value for name, (value, _size) in self.symbol_table(wanted).items()}

    def has_symtab(self) -> bool:
        return any(s.type == SHT_SYMTAB for s in self.sections)

    def symbol_table(self, wanted: set[str]) -> dict[str, tuple[int, int]]:
        """(value, size) of the named symbols in .symtab, then .dynsym (first definition wins)."""
        found: dict[str, tuple[int, int]] = {}
        for s in self.sections:
            if s.type not in (SHT_SYMTAB, SHT_DYNSYM) or s.entsize != 24 or s.link >= len(self.sections):
                continue
            strtab = self.sections[s.link]
            if strtab.type == SHT_NOBITS:
                continue
            for i in range(s.size // 24):
                name_off, _info, _other, shndx, value, size = struct.unpack_from("<IBBHQQ", self.data, s.offset + 24 * i)
                if not name_off or shndx == 0:
                    continue
                name = self._cstr(strtab.offset + name_off)
                if name in wanted and name not in found:
                    found[name] = (value, size)
            if len(found) == len(wanted):
                break
        return found

    def relative_relocations(self):
        """(r_offset, r_addend) of every R_X86_64_RELATIVE entry in RELA sections."""
        for s in self.sections:
            if s.type != SHT_RELA or s.entsize != 24:
                continue
            for r_offset, r_info, r_addend in struct.iter_unpack("<QQq", self.data[s.offset:s.offset + s.size]):
                if r_info & 0xFFFFFFFF == R_X86_64_RELATIVE:
                    yield r_offset, r_addend

    def file_offset_of(self, vaddr: int) -> int | None:
        """The file offset holding the byte at ``vaddr``, or None (in .bss or unmapped)."""
        for p in self.segments:
            if p.type == PT_LOAD and p.vaddr <= vaddr < p.vaddr + p.filesz:
                return p.offset + (vaddr - p.vaddr)
        return None

    def first_load_vaddr(self) -> int:
        loads = [p for p in self.segments if p.type == PT_LOAD]
        if not loads:
            raise ElfError("no PT_LOAD segment")
        return min(p.vaddr - p.offset for p in loads)
