"""Parse the XML that glibc's malloc_info(3) writes (malloc.c: __malloc_info).

The shape (glibc 2.36; later versions and distribution backports add ``<aspace
type="subheaps">``)::

    <malloc version="1">
    <heap nr="0">
    <sizes>
      <size from="33" to="33" total="264" count="8"/>
      <unsorted from="4113" to="4113" total="4113" count="1"/>
    </sizes>
    <total type="fast" count="0" size="0"/>
    <total type="rest" count="138" size="327801"/>
    <system type="current" size="2543616"/>
    <system type="max" size="2543616"/>
    <aspace type="total" size="2543616"/>
    <aspace type="mprotect" size="2543616"/>
    </heap>
    ... one <heap> per arena, then the totals over all arenas, with <total type="mmap">
    </malloc>

Trap: ``<total type="rest">`` is not only the bins: glibc starts its count with the top chunk
(``avail = chunksize (ar_ptr->top); nblocks = 1;``), so rest = bins + top, and its count is one
more than the ``<sizes>`` lines add up to. Sizes include the flag bits (``chunksize_nomask``).

The text comes out of another process's memory, so it is not trusted: this is a small
tokenizer for exactly elements and attributes (no DTD, no entities, no text content), not a
general XML parser. Unknown elements are kept by name and otherwise ignored; anything that is
not well formed (truncated, unbalanced, a bad number) raises :class:`ParseError` saying where.
"""

from __future__ import annotations

import re

from memtop.model.arenas import MallocInfo, MallocInfoArena, MallocInfoSize
from memtop.procfs import ParseError

MAX_TEXT = 64 << 20  # 64 MiB: a malloc_info of 10,000 arenas is ~10 MiB
SOURCE = "malloc_info"

# <name attr="value" ...>, </name>, <name .../>, <?xml ...?>
_TAG = re.compile(r"<(/?)([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.-]*\s*=\s*\"[^\"<>]*\")*)\s*(/?)>")
_ATTR = re.compile(r"([A-Za-z_][\w.-]*)\s*=\s*\"([^\"<>]*)\"")
_DECL = re.compile(r"<\?xml[^<>]*\?>")


class _Element:
    __slots__ = ("name", "attrs", "children", "offset")

    def __init__(self, name: str, attrs: dict[str, str], offset: int):
        self.name = name
        self.attrs = attrs
        self.children: list[_Element] = []
        self.offset = offset


def _tokenize(text: str) -> _Element:
    """Build the element tree; raise ParseError on anything not well formed."""
    pos = 0
    root = _Element("#document", {}, 0)
    stack = [root]
    length = len(text)
    while pos < length:
        lt = text.find("<", pos)
        between = text[pos:] if lt < 0 else text[pos:lt]
        if between.strip():
            raise ParseError(SOURCE, f"unexpected text {between.strip()[:40]!r} at offset {pos}")
        if lt < 0:
            break
        if text.startswith("<?", lt):
            m = _DECL.match(text, lt)
            if not m or lt != 0 and root.children:
                raise ParseError(SOURCE, f"bad declaration at offset {lt}")
            pos = m.end()
            continue
        m = _TAG.match(text, lt)
        if m is None:
            if text.find(">", lt) < 0:
                raise ParseError(SOURCE, f"truncated: tag at offset {lt} is not closed")
            raise ParseError(SOURCE, f"malformed tag at offset {lt}: {text[lt:lt + 40]!r}")
        closing, name, attr_text, self_closing = m.group(1), m.group(2), m.group(3), m.group(4)
        if closing:
            if attr_text or self_closing:
                raise ParseError(SOURCE, f"malformed closing tag at offset {lt}")
            if len(stack) == 1 or stack[-1].name != name:
                open_name = stack[-1].name if len(stack) > 1 else "nothing"
                raise ParseError(SOURCE, f"</{name}> at offset {lt} closes {open_name}")
            stack.pop()
        else:
            attrs: dict[str, str] = {}
            for key, value in _ATTR.findall(attr_text):
                if key in attrs:
                    raise ParseError(SOURCE, f"attribute {key} twice in <{name}> at offset {lt}")
                attrs[key] = value
            element = _Element(name, attrs, lt)
            if len(stack) == 1 and root.children:
                raise ParseError(SOURCE, f"second root element <{name}> at offset {lt}")
            stack[-1].children.append(element)
            if not self_closing:
                stack.append(element)
        pos = m.end()
    if len(stack) > 1:
        raise ParseError(SOURCE, f"truncated: <{stack[-1].name}> opened at offset {stack[-1].offset} is not closed")
    if not root.children:
        raise ParseError(SOURCE, "empty document" if not text.strip() else "no element")
    return root.children[0]


def _int(element: _Element, attr: str, *, required: bool = True) -> int | None:
    raw = element.attrs.get(attr)
    if raw is None:
        if required:
            raise ParseError(SOURCE, f"<{element.name}> at offset {element.offset} has no {attr}")
        return None
    # %zu and %d only: decimal digits (a leading '-' only for the int n_mmaps).
    if not re.fullmatch(r"-?[0-9]{1,100}", raw):
        raise ParseError(SOURCE, f"<{element.name} {attr}={raw[:30]!r}> at offset {element.offset} is not a number")
    return int(raw)


class _Totals:
    """The <total>, <system>, <aspace> lines of one level (an arena or the whole document)."""

    def __init__(self):
        self.values: dict[tuple[str, str, str], int | None] = {}
        self.unknown: list[str] = []

    def take(self, element: _Element) -> bool:
        kind = element.attrs.get("type")
        if element.name == "total" and kind in ("fast", "rest", "mmap"):
            self.values[("total", kind, "count")] = _int(element, "count")
            self.values[("total", kind, "size")] = _int(element, "size")
        elif element.name in ("system", "aspace") and kind is not None:
            self.values[(element.name, kind, "size")] = _int(element, "size")
        else:
            return False
        return True

    def get(self, name: str, kind: str, attr: str = "size") -> int | None:
        return self.values.get((name, kind, attr))


def _parse_sizes(element: _Element, unknown: list[str]) -> tuple[MallocInfoSize, ...]:
    sizes = []
    for child in element.children:
        if child.name in ("size", "unsorted"):
            sizes.append(MallocInfoSize(
                kind=child.name,
                from_bytes=_int(child, "from"),
                to_bytes=_int(child, "to"),
                total_bytes=_int(child, "total"),
                count=_int(child, "count"),
            ))
        else:
            unknown.append(f"sizes/{child.name}")
    return tuple(sizes)


def _parse_arena(element: _Element, index: int) -> MallocInfoArena:
    nr = _int(element, "nr", required=False)
    totals = _Totals()
    unknown: list[str] = []
    sizes: tuple[MallocInfoSize, ...] = ()
    for child in element.children:
        if child.name == "sizes":
            sizes = _parse_sizes(child, unknown)
        elif not totals.take(child):
            unknown.append(child.name)
    return MallocInfoArena(
        nr=index if nr is None else nr,
        sizes=sizes,
        fast_count=totals.get("total", "fast", "count"),
        fast_bytes=totals.get("total", "fast"),
        rest_count=totals.get("total", "rest", "count"),
        rest_bytes=totals.get("total", "rest"),
        system_current=totals.get("system", "current"),
        system_max=totals.get("system", "max"),
        aspace_total=totals.get("aspace", "total"),
        aspace_mprotect=totals.get("aspace", "mprotect"),
        aspace_subheaps=totals.get("aspace", "subheaps"),
        unknown=tuple(unknown),
    )


def parse_malloc_info(text: str | bytes) -> MallocInfo:
    """Parse malloc_info(3) XML into a :class:`MallocInfo`.

    Raises:
        ParseError: the text is empty, truncated, not well formed, not a ``<malloc>`` document,
            or has an attribute that should be a number and is not.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    if len(text) > MAX_TEXT:
        raise ParseError(SOURCE, f"{len(text)} characters: more than the {MAX_TEXT} accepted")
    root = _tokenize(text)
    if root.name != "malloc":
        raise ParseError(SOURCE, f"the document is <{root.name}>, not <malloc>")
    arenas = []
    totals = _Totals()
    unknown: list[str] = []
    for child in root.children:
        if child.name == "heap":
            arenas.append(_parse_arena(child, len(arenas)))
        elif not totals.take(child):
            unknown.append(child.name)
    return MallocInfo(
        version=root.attrs.get("version"),
        arenas=tuple(arenas),
        fast_count=totals.get("total", "fast", "count"),
        fast_bytes=totals.get("total", "fast"),
        rest_count=totals.get("total", "rest", "count"),
        rest_bytes=totals.get("total", "rest"),
        mmap_count=totals.get("total", "mmap", "count"),
        mmap_bytes=totals.get("total", "mmap"),
        system_current=totals.get("system", "current"),
        system_max=totals.get("system", "max"),
        aspace_total=totals.get("aspace", "total"),
        aspace_mprotect=totals.get("aspace", "mprotect"),
        unknown=tuple(unknown),
        text_bytes=len(text.encode("utf-8", "replace")),
    )
