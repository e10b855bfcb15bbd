r"""How the record file encodes what it holds: model records by field name, sections as parts
compressed against a keyframe, and the bounded, typed decoding of all of it.

A record file is data, never code: only the model classes of :data:`MODEL_TYPES` are ever built
from it, every value is checked against the type its field declares (a string where a count is
due, a NaN, an integer of a thousand digits: the file is damaged), and no part decompresses to
more than :data:`MAX_PART_BYTES` (a zlib bomb of 600 MB is refused after reading at most 64 KiB
of its output; see :func:`inflate`).

Schema versions:

- 1 (memtop 0.1): a model record is ``{"@": class, "f": [values in field order]}``, the ``rss``
  section one zlib stream of (id, rss, fds) triples, the ``procs`` table has ``cmdline``,
  ``kernel_thread`` and ``cgroup`` columns. The field order of that version is frozen in
  :data:`V1_FIELDS`, so a field added to a class later does not shift the old values.
- 2: by name everywhere: ``{"@": class, "f": {field: value}}``; the rollup as one column per
  field; the ``rss`` section as parts named ``proc``, ``rss``, ``fds``; the ``procs`` table's
  unchanging fields in a compressed JSON object ``info``; each part's header also holds its
  decompressed length. A field a later memtop adds is simply absent from an older file (its
  default, or unknown) and a field an older memtop does not know is ignored.
"""

from __future__ import annotations

import collections.abc
import enum
import json
import math
import struct
import types
import typing
import zlib
from dataclasses import MISSING, fields, is_dataclass
from types import MappingProxyType
from typing import Mapping

from memtop.model.kernel import FileNr, MeminfoCategory, NetNamespace, SlabCache, SlabRow, Sockstat, SockProtocol
from memtop.model.pressure import CgroupMemory, PressureSample, PsiLine, PsiResource
from memtop.model.process import Rollup
from memtop.text import json_safe, json_value, printable

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
APPLICATION_ID = 0x6D656D74  # "memt"
SECTIONS = ("system", "processes", "rss", "kernel", "psi", "cgroups", "vmstat")
# Sections written only at the ticks their part was read (replay shows the latest one at or
# before the tick, with its age): the page cache's top files, tmpfs, the containers with the OOM
# watch, and the heap reports of the process given to `memtop record --pid`.
TAKEN_SECTIONS = ("files", "tmpfs", "layers", "arenas", "containers")
TAKEN_LOOKBACK = 300  # ticks a taken section stays shown (10 minutes at 2 s)
ZLIB_LEVEL = 6

# Bounds of what one value of the file may hold; the writer never writes more (a section that
# would is left out of its tick, with the reason), and the reader refuses more as damage.
MAX_PART_BYTES = 4 * 2**20  # one part, decompressed (a column of 100,000 processes is ~1 MiB)
MAX_SECTION_BYTES = 16 * 2**20  # one section as stored (its compressed parts and their header)
MAX_INFO_BYTES = 64 * 1024  # one process's unchanging fields, decompressed
CMDLINE_LIMIT = 4096  # characters of a command line kept (1 MB ones are made by any user)
MAX_STRING = 1 << 20  # characters of any string value
_INT_LIMIT = 1 << 64  # |integer| values: counts and bytes fit in 64 bits
_INFLATE_CHUNK = 64 * 1024


class RecordFileError(Exception):
    """The record file cannot be used; the message is one line for the user, made printable
    (it may quote the file's own bytes; SQLite's multi-line messages are joined)."""

    def __init__(self, message: str, *, disk_full: bool = False):
        one_line = "; ".join(line.strip() for line in str(message).splitlines() if line.strip())
        super().__init__(printable(one_line, limit=1000))
        self.disk_full = disk_full


class RecordDataError(ValueError):
    """A value of the file is not one memtop writes there (the file is damaged or crafted)."""


# --- model records ---------------------------------------------------------------------------------
def _model_types() -> dict[str, type]:
    """Only these classes are ever built from a file: the frozen records of memtop.model (their
    names are unique across its modules; a test holds that)."""
    import importlib
    import pkgutil

    import memtop.model

    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(memtop.model.__path__):
        module = importlib.import_module(f"memtop.model.{info.name}")
        for name, obj in vars(module).items():
            if isinstance(obj, type) and obj.__module__ == module.__name__ and (
                    is_dataclass(obj) or issubclass(obj, enum.Enum)):
                found[name] = obj
    found.pop("Sample", None)  # what a tick holds is stored section by section, never as a whole
    found.pop("PartResult", None)
    return found


MODEL_TYPES: dict[str, type] = _model_types()

# Schema 1 stored a record's fields by position, in the order the classes had then.
V1_FIELDS: dict[str, tuple[str, ...]] = {
    "SlabCache": ("name", "active_objs", "num_objs", "objsize", "objperslab", "pagesperslab", "active_slabs",
                  "num_slabs", "page_size"),
    "SlabRow": ("cache", "growth_bytes_per_min", "reclaimable"),
    "MeminfoCategory": ("key", "bytes", "meaning"),
    "SockProtocol": ("name", "counts", "mem_bytes"),
    "Sockstat": ("sockets_used", "protocols"),
    "NetNamespace": ("inode", "pids", "example", "own", "sockstat", "reason"),
    "FileNr": ("allocated", "unused", "maximum"),
    "PsiLine": ("avg10", "avg60", "avg300", "total_us"),
    "PsiResource": ("some", "full"),
    "PressureSample": ("time", "resources", "unknown"),
    "CgroupMemory": ("version", "path", "current", "max", "high", "low", "min", "swap_current", "swap_max", "events",
                     "stat", "raw_stat", "pressure", "soft_limit", "memsw_usage", "memsw_limit", "max_usage",
                     "unknown"),
    "Rollup": ("rss", "pss", "pss_anon", "pss_file", "pss_shmem", "shared_clean", "shared_dirty", "private_clean",
               "private_dirty", "anonymous", "lazyfree", "anon_huge_pages", "swap", "swap_pss", "source"),
}

_PLAIN = (int, float, str, bool, type(None))


def encode(obj):
    """A model record (or a tuple/mapping of them) as JSON-able data, fields by name:
    ``{"@": class, "f": {field: value}}``; a mapping ``{"m": {key: value}}``, or ``{"p": [[key,
    value], ...]}`` when a key is not valid UTF-8 (a cgroup path any user can name: a JSON key
    cannot be the list of its bytes); a tuple a list. Strings that are not valid UTF-8 become
    the list of their bytes when written (:func:`to_json`, memtop.text.json_value)."""
    if type(obj) in _PLAIN:
        return obj
    if isinstance(obj, enum.Enum):
        return obj.value
    if is_dataclass(obj):
        return {"@": type(obj).__name__, "f": {f.name: encode(getattr(obj, f.name)) for f in fields(obj)}}
    if isinstance(obj, Mapping):
        keys = [str(k) for k in obj]
        if all(isinstance(json_value(k), str) for k in keys):
            return {"m": {k: encode(v) for k, v in zip(keys, obj.values())}}
        return {"p": [[json_value(k), encode(v)] for k, v in zip(keys, obj.values())]}
    if isinstance(obj, (tuple, list)):
        return [encode(v) for v in obj]
    raise TypeError(f"cannot record a {type(obj).__name__}")


_HINTS: dict[type, dict[str, object]] = {}


def field_hints(cls: type) -> dict[str, object]:
    hints = _HINTS.get(cls)
    if hints is None:
        # Names a module imports only for type checking resolve among the model's records.
        hints = _HINTS[cls] = typing.get_type_hints(cls, localns=MODEL_TYPES)
    return hints


def scalar(value, hint, where: str):
    """``value`` checked against ``int``, ``float``, ``str``, ``bool`` or ``None`` (or a union of them)."""
    return decode(value, hint, where=where)


def decode(data, hint, *, version: int = SCHEMA_VERSION, where: str = "value"):
    """``data`` (as :func:`encode` made it, through JSON) built into ``hint``'s type, every value
    checked against the type its field declares. Raises RecordDataError."""
    fast = _SCALAR_CHECKS.get(hint, _UNKNOWN)
    if fast is _UNKNOWN:
        fast = _scalar_check(hint)
    if fast is not None and fast(data):
        return float(data) if type(data) is int and float in _SCALARS_OF[hint] else data
    if hint is None:
        hint = type(None)
    if hint is type(None):
        if data is None:
            return None
        raise RecordDataError(f"{where}: expected nothing, got {_kind(data)}")
    if hint is bool:
        if isinstance(data, bool):
            return data
        raise RecordDataError(f"{where}: expected true or false, got {_kind(data)}")
    if hint is int:
        if isinstance(data, int) and not isinstance(data, bool) and -_INT_LIMIT < data < _INT_LIMIT:
            return data
        raise RecordDataError(f"{where}: expected a whole number, got {_kind(data)}")
    if hint is float:
        if isinstance(data, (int, float)) and not isinstance(data, bool) and math.isfinite(data) \
                and -_INT_LIMIT < data < _INT_LIMIT:
            return float(data)
        raise RecordDataError(f"{where}: expected a finite number, got {_kind(data)}")
    if hint is str:
        if isinstance(data, str) and len(data) <= MAX_STRING:
            return data
        text = text_of(data)
        if text is not None:
            return text
        raise RecordDataError(f"{where}: expected a string, got {_kind(data)}")
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(hint)
        if data is None:
            if type(None) in args:
                return None
            raise RecordDataError(f"{where}: missing")
        problems = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return decode(data, arg, version=version, where=where)
            except RecordDataError as e:
                problems.append(str(e))
        raise RecordDataError(problems[0] if len(problems) == 1 else f"{where}: {_kind(data)} fits none of its types")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(data, list):
            raise RecordDataError(f"{where}: expected a list, got {_kind(data)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(v, args[0], version=version, where=f"{where}[{i}]") for i, v in enumerate(data))
        if len(data) != len(args):
            raise RecordDataError(f"{where}: expected {len(args)} values, got {len(data)}")
        return tuple(decode(v, a, version=version, where=f"{where}[{i}]") for i, (v, a) in enumerate(zip(data, args)))
    if origin is collections.abc.Mapping or origin is dict:
        key_hint, value_hint = typing.get_args(hint)
        if isinstance(data, dict) and set(data) == {"p"} and isinstance(data["p"], list) and version > 1:
            pairs = {}
            for pair in data["p"]:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise RecordDataError(f"{where}: a mapping entry is not a [key, value] pair")
                key = decode(pair[0], str, where=f"{where} key")
                pairs[key] = decode(pair[1], value_hint, version=version, where=f"{where}[{key[:40]!r}]")
            return MappingProxyType(pairs)
        if not (isinstance(data, dict) and set(data) == {"m"} and isinstance(data["m"], dict)):
            raise RecordDataError(f"{where}: expected a mapping, got {_kind(data)}")
        return mapping(data["m"], value_hint, key_hint, version=version, where=where)
    if isinstance(hint, type) and is_dataclass(hint):
        return _record(data, hint, version, where)
    if isinstance(hint, type) and issubclass(hint, tuple) and hasattr(hint, "_fields"):  # a NamedTuple
        if not isinstance(data, list) or len(data) != len(hint._fields):
            raise RecordDataError(f"{where}: expected a {hint.__name__} of {len(hint._fields)} values, got {_kind(data)}")
        hints = typing.get_type_hints(hint, localns=MODEL_TYPES)
        return hint(*(decode(v, hints[f], version=version, where=f"{where}.{f}") for f, v in zip(hint._fields, data)))
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(data)
        except (ValueError, TypeError):
            raise RecordDataError(f"{where}: {_kind(data)} is not a {hint.__name__}") from None
    raise RecordDataError(f"{where}: no decoding for {hint!r}")  # a memtop bug, said as damage


_UNKNOWN = object()
_SCALAR_CHECKS: dict = {}
_SCALARS_OF: dict = {}


def _scalar_check(hint):
    """For a hint made of int, float, str, bool and None only: a quick test that a value is
    one of them, within bounds (a value that fails is decoded the slow way, for the message)."""
    try:
        args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        hash(hint)
    except TypeError:
        return None
    if not args or not all(a in (int, float, str, bool, type(None)) for a in args):
        _SCALAR_CHECKS[hint] = None
        return None
    kinds = frozenset(args)

    def check(value) -> bool:
        kind = type(value)
        if kind not in kinds and not (kind is int and float in kinds):
            return False
        if kind is int:
            return -_INT_LIMIT < value < _INT_LIMIT
        if kind is float:
            return math.isfinite(value) and -_INT_LIMIT < value < _INT_LIMIT
        if kind is str:
            return len(value) <= MAX_STRING
        return True

    _SCALARS_OF[hint] = kinds
    _SCALAR_CHECKS[hint] = check
    return check


def mapping(data, value_hint, key_hint=str, *, version: int = SCHEMA_VERSION, where: str = "value"):
    """A plain JSON object (keys are strings) as a read-only mapping of checked values."""
    if not isinstance(data, dict):
        raise RecordDataError(f"{where}: expected an object, got {_kind(data)}")
    fast = _column_check(value_hint) if key_hint is str else None
    if fast is not None and all(len(k) <= MAX_STRING for k in data):
        values = fast(list(data.values()))
        if values is not None:
            return MappingProxyType(dict(zip(data, values)))
    out = {}
    for key, value in data.items():
        if key_hint is int:
            try:
                key = decode(int(key), int, where=where)
            except ValueError:
                raise RecordDataError(f"{where}: key {key[:40]!r} is not a number") from None
        elif len(key) > MAX_STRING:
            raise RecordDataError(f"{where}: a key is too long")
        out[key] = decode(value, value_hint, version=version, where=f"{where}[{str(key)[:40]!r}]")
    return MappingProxyType(out)


def _record(data, cls: type, version: int, where: str):
    if not isinstance(data, dict) or "f" not in data:
        raise RecordDataError(f"{where}: expected a {cls.__name__}, got {_kind(data)}")
    tag = data.get("@", cls.__name__)
    if tag != cls.__name__:
        raise RecordDataError(f"{where}: expected a {cls.__name__}, got {str(tag)[:40]!r}")
    values = data["f"]
    if isinstance(values, list) and version == 1:
        names = V1_FIELDS[cls.__name__]
        if len(values) != len(names):
            raise RecordDataError(f"{where}: a {cls.__name__} of {len(values)} fields, not {len(names)}")
        values = dict(zip(names, values))
    elif not isinstance(values, dict) or version == 1:
        raise RecordDataError(f"{where}: the fields of a {cls.__name__} are {_kind(values)}")
    hints = field_hints(cls)
    kwargs = {}
    for f in fields(cls):
        hint = hints[f.name]
        if f.name in values:
            kwargs[f.name] = decode(values[f.name], hint, version=version, where=f"{where}.{f.name}")
        elif f.default is MISSING and f.default_factory is MISSING:
            if not _optional(hint):
                raise RecordDataError(f"{where}: a {cls.__name__} without {f.name}")
            kwargs[f.name] = None  # a field added since this file was written: unknown
        # else: the field's default
    return cls(**kwargs)


def _optional(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _kind(data) -> str:
    if isinstance(data, str):
        return f"the string {data[:40]!r}"
    if isinstance(data, (list, dict)):
        return f"a {'list' if isinstance(data, list) else 'object'}"
    return repr(data)[:40]


def text_of(data) -> str | None:
    """A string written as the list of its bytes (memtop.text.json_value: it was not valid
    UTF-8) back to the string memtop had (surrogateescape); None when ``data`` is no such list."""
    if isinstance(data, list) and len(data) <= MAX_STRING \
            and all(type(b) is int and 0 <= b <= 255 for b in data):
        raw = bytes(data)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("utf-8", "surrogateescape")
        # Valid UTF-8 is written as a string: a list of such bytes is not memtop's.
    return None


def to_json(value) -> bytes:
    """Strict JSON: a string that is not valid UTF-8 is the list of its bytes, as memtop.text
    says for JSON (json_safe), so that any JSON parser reads the file's parts."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate somewhere (rare): the walk that mends it
        value = json_safe(value)
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def _no_constant(name: str):
    raise RecordDataError(f"{name} is not a number memtop writes")


def loads(raw: bytes):
    """JSON as memtop writes it: no NaN or Infinity."""
    return json.loads(raw, parse_constant=_no_constant)


# --- parts -----------------------------------------------------------------------------------------
# A section is stored as parts (a column of the process table, a slab column, ...), each its own
# zlib stream. A tick that is not a keyframe compresses each part with the same part of its
# keyframe as the zlib dictionary (deflate's preset dictionary, RFC 1950): most of a tick equals
# the tick before, so it costs little, and any tick decodes from itself and its keyframe alone.
# zlib looks back at most 32 KiB, so a part's dictionary is the last 32 KiB of the keyframe's.
ZDICT_BYTES = 32 * 1024
_HEADER = struct.Struct("<I")


class PartTooLarge(ValueError):
    """A part would decompress to more than MAX_PART_BYTES: the writer leaves it out."""


def pack_parts(parts: dict[str, bytes], base: Mapping[str, bytes] | None) -> bytes:
    """``{part: raw bytes}`` into one blob: header (JSON list of [part, length, dictionary used,
    decompressed length]), then the zlib streams."""
    streams = []
    index = []
    for key, raw in parts.items():
        if len(raw) > MAX_PART_BYTES:
            raise PartTooLarge(f"part {key} is {len(raw)} bytes, more than the {MAX_PART_BYTES >> 20} MiB a part holds")
        zdict = base.get(key) if base is not None else None
        compressor = zlib.compressobj(ZLIB_LEVEL, zdict=zdict[-ZDICT_BYTES:]) if zdict else zlib.compressobj(ZLIB_LEVEL)
        stream = compressor.compress(raw) + compressor.flush()
        streams.append(stream)
        index.append([key, len(stream), 1 if zdict else 0, len(raw)])
    header = to_json(index)
    return _HEADER.pack(len(header)) + header + b"".join(streams)


def unpack_parts(blob: bytes, base: Mapping[str, bytes] | None, only=None) -> dict[str, bytes]:
    """The raw bytes of each part (of the parts in ``only``, if given), each decompressed within
    its bound. Raises RecordDataError or zlib.error when the blob is damaged."""
    if not isinstance(blob, bytes) or len(blob) < _HEADER.size:
        raise RecordDataError("section shorter than its header")
    (size,) = _HEADER.unpack_from(blob)
    if size > len(blob) - _HEADER.size or size > 1 << 20:
        raise RecordDataError("section header longer than the section")
    index = loads(blob[_HEADER.size:_HEADER.size + size])
    if not isinstance(index, list):
        raise RecordDataError("section header is not a list")
    offset = _HEADER.size + size
    out = {}
    for entry in index:
        if not (isinstance(entry, list) and len(entry) in (3, 4) and isinstance(entry[0], str)
                and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in entry[1:])):
            raise RecordDataError("malformed section header")
        key, length, with_dict = entry[:3]
        declared = entry[3] if len(entry) == 4 else None
        if only is None or key in only:
            stream = blob[offset:offset + length]
            if len(stream) != length:
                raise RecordDataError("section shorter than its header says")
            zdict = None
            if with_dict:
                if base is None or key not in base:
                    raise RecordDataError(f"part {key[:40]!r} needs its keyframe, which is missing")
                zdict = base[key][-ZDICT_BYTES:]
            out[key] = inflate(stream, zdict, declared)
        offset += length
    return out


def inflate(stream: bytes, zdict: bytes | None = None, declared: int | None = None,
            limit: int = MAX_PART_BYTES) -> bytes:
    """One whole zlib stream, decompressed to at most ``limit`` bytes (and exactly ``declared``
    when the file says how many).

    A first pass counts the output in 64 KiB steps, keeping none of it, and stops as soon as it
    is past the bound: a zlib bomb costs 64 KiB of memory and the time to inflate ``limit``
    bytes, whatever it would expand to. Only a stream within its bound is decompressed again and
    kept (inflating runs at hundreds of MB/s: the count costs little).
    """
    if declared is not None:
        if declared > limit:
            raise RecordDataError(f"a part of {declared} bytes: more than the {limit} bytes a part may hold")
        limit = declared
    counter = zlib.decompressobj(zdict=zdict) if zdict else zlib.decompressobj()
    total = 0
    data = stream
    while not counter.eof:
        out = counter.decompress(data, _INFLATE_CHUNK)
        total += len(out)
        if total > limit:
            raise RecordDataError(f"a part decompresses to more than {limit} bytes")
        data = counter.unconsumed_tail
        if not out and not data:
            break  # no input left and no output: the stream stops short
    if not counter.eof:
        raise zlib.error("incomplete or truncated stream")
    if counter.unused_data:
        raise RecordDataError("bytes after the end of a compressed part")
    if declared is not None and total != declared:
        raise RecordDataError(f"a part of {total} bytes where its header says {declared}")
    keeper = zlib.decompressobj(zdict=zdict) if zdict else zlib.decompressobj()
    raw = keeper.decompress(stream, limit + 1)
    if len(raw) != total:
        raise zlib.error("the stream decompressed differently twice")
    return raw


def section_parts(name: str, doc) -> dict:
    """How a section splits into parts: tables by column, the rest whole."""
    if name in ("processes", "cgroups"):
        return dict(doc)
    if name == "kernel":
        parts = {k: v for k, v in doc.items() if k != "slabs"}
        if doc["slabs"] is None:
            parts["slabs"] = None
        else:
            parts.update({f"slabs.{k}": v for k, v in doc["slabs"].items()})
        return parts
    return {"": doc}


def section_doc(name: str, parts: dict):
    if name in ("processes", "cgroups"):
        return parts
    if name == "kernel":
        doc = {k: v for k, v in parts.items() if not k.startswith("slabs")}
        doc["slabs"] = None if "slabs" in parts else {k[6:]: v for k, v in parts.items() if k.startswith("slabs.")}
        return doc
    if "" not in parts:
        raise RecordDataError(f"the {name} section has no body")
    return parts[""]


# --- tables as columns -----------------------------------------------------------------------------

SLAB_FIELDS = tuple(f.name for f in fields(SlabCache))
ROLLUP_FIELDS = tuple(f.name for f in fields(Rollup))


def slab_columns(rows: tuple[SlabRow, ...] | None) -> dict | None:
    """The slab table as columns (one list per SlabCache field, plus growth and reclaimable)."""
    if rows is None:
        return None
    doc = {name: [getattr(r.cache, name) for r in rows] for name in SLAB_FIELDS}
    doc["growth"] = [r.growth_bytes_per_min for r in rows]
    doc["reclaimable"] = [r.reclaimable for r in rows]
    return doc


def column(doc: dict, name: str, hint, count: int, where: str, default=MISSING) -> list:
    """Column ``name`` of a table, ``count`` values each checked against ``hint``. A column the
    file lacks (written before the field existed) is its default, or unknown (None) when it
    may be; else the file is damaged."""
    values = doc.get(name, MISSING)
    if values is MISSING:
        if default is not MISSING:
            return [default] * count
        if _optional(hint):
            return [None] * count
        raise RecordDataError(f"{where} lacks the column {name}")
    if not isinstance(values, list) or len(values) != count:
        raise RecordDataError(f"{where}: column {name} is not a list of {count}")
    fast = _column_check(hint)
    if fast is not None:
        checked = fast(values)
        if checked is not None:
            return checked
    # A value that is not what it should be (or a type with no quick check): one at a time,
    # for the message that names it.
    return [decode(v, hint, where=f"{where}.{name}") for v in values]


_COLUMN_CHECKS: dict = {}


def _column_check(hint):
    """A quick check of a whole column of scalars (a replay decodes thousands of values per
    tick): a function returning the values, or None when one of them is wrong."""
    if hint in _COLUMN_CHECKS:
        return _COLUMN_CHECKS[hint]
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    optional = type(None) in args
    kinds = [a for a in args if a is not type(None)]
    check = None
    allowed = {type(None)} if optional else set()
    if kinds == [int]:
        allowed.add(int)

        def check(values):
            if not set(map(type, values)) <= allowed:
                return None
            numbers = [v for v in values if v is not None] if optional else values
            return values if not numbers or (-_INT_LIMIT < min(numbers) and max(numbers) < _INT_LIMIT) else None
    elif kinds == [str]:
        allowed.add(str)

        def check(values):
            if not set(map(type, values)) <= allowed:
                return None
            return values if max(map(len, filter(None, values)), default=0) <= MAX_STRING else None
    elif kinds == [bool]:
        allowed.add(bool)

        def check(values):
            return values if set(map(type, values)) <= allowed else None
    elif kinds == [float]:
        allowed.update((int, float))

        def check(values):
            if not set(map(type, values)) <= allowed:
                return None
            numbers = [float(v) for v in values if v is not None]
            if numbers and not (math.isfinite(sum(map(abs, numbers))) and max(map(abs, numbers)) < _INT_LIMIT):
                return None
            return [None if v is None else float(v) for v in values]
    _COLUMN_CHECKS[hint] = check
    return check


def slab_rows(doc: dict | None, build: bool = True) -> tuple[SlabRow, ...] | None:
    """The slab table back from its columns (schema 1 and 2 store them alike, by name);
    ``build=False`` only checks them."""
    if doc is None:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), list):
        raise RecordDataError("the slab table has no name column")
    count = len(doc["name"])
    hints = field_hints(SlabCache)
    cols = {}
    for f in fields(SlabCache):
        default = f.default if f.default is not MISSING else MISSING
        cols[f.name] = column(doc, f.name, hints[f.name], count, "slabs", default)
    growth = column(doc, "growth", float | None, count, "slabs")
    reclaimable = column(doc, "reclaimable", bool | None, count, "slabs")
    if not build:
        return ()
    caches = [SlabCache(**{name: cols[name][i] for name in cols}) for i in range(count)]
    return tuple(SlabRow(c, g, r) for c, g, r in zip(caches, growth, reclaimable))
