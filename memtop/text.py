"""Strings from the system are untrusted: the one place that makes them safe to show or to store.

memtop runs as root among users who choose process names, command lines, file names, mount points
and directory names. Inside memtop such strings are exact: bytes that are not UTF-8 are kept as
lone surrogates (``surrogateescape``, U+DC80-U+DCFF) so that a path still opens the same file.
They must never reach a terminal raw (an ESC starts a control sequence: retitle the window, clear
it, write the clipboard with OSC 52) nor a strict JSON parser raw (lone surrogates are invalid).

- :func:`printable` is for every text output and every TUI cell: it shows what could act on a
  terminal as a visible escape, the way ``ls -b`` and ``ps`` do:

  ======================================  ===========================================
  ESC, newline, tab, CR, BEL, BS, NUL     ``\\e`` ``\\n`` ``\\t`` ``\\r`` ``\\a`` ``\\b`` ``\\0``
  other C0 controls and DEL               ``\\x01`` ... ``\\x1f``, ``\\x7f``
  a byte that is not UTF-8                ``\\xff`` (the byte, as the shell's ``$'\\xff'``)
  C1 controls, bidi overrides/isolates,   ``\\u009b``, ``\\u202e``, ``\\u2066``, ``\\u200b`` ...
  other format chars, line/paragraph
  separators, lone surrogates
  ======================================  ===========================================

  A backslash stays as it is: a name can spell ``\\e`` with two printable characters and look the
  same, but it cannot act.
- :func:`json_value` is for JSON: a valid UTF-8 string stays exact; a string holding bytes that are
  not UTF-8 becomes the list of its bytes (the convention of ``journalctl -o json``), so it is
  exact and valid JSON. :func:`json_safe` applies it to a whole structure.
"""

from __future__ import annotations

import unicodedata

_NAMED = {0x1B: "\\e", 0x0A: "\\n", 0x09: "\\t", 0x0D: "\\r", 0x07: "\\a", 0x08: "\\b", 0x00: "\\0"}
# Cc: C0/C1 controls and DEL; Cf: format (bidi overrides U+202A-U+202E, isolates U+2066-U+2069,
# marks, zero-width characters); Zl/Zp: U+2028/U+2029; Cs: lone surrogates.
_UNSAFE_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs"))


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return _NAMED.get(code) or f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def cut(text: str, width: int) -> str:
    """``text`` in ``width`` characters, the last one "…" when it was cut (a bare cut reads as
    the whole)."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def cell(text: str, width: int, align: str, keep_end: bool = False) -> str:
    """``text`` as a table cell ``width`` wide, aligned (right: figures); cut with "…" at its end,
    or at its start with ``keep_end`` (a path: its end names the file)."""
    if len(text) > width:
        if keep_end and width > 1:
            return "…" + text[-(width - 1):]
        return cut(text, width)
    return text.rjust(width) if align == "right" else text.ljust(width)


def printable(text: str | None, limit: int | None = None) -> str:
    """``text`` with every character that could act on a terminal shown as a visible escape.

    ``limit`` cuts the text to that many characters first (with ``…``), so that a 1 MB command
    line costs no more than what can be seen. None is the empty string.
    """
    if not text:
        return ""
    if limit is not None:
        text = cut(text, limit)
    if text.isprintable():  # the common case, in C: no control, format or separator character
        return text
    out = []
    for ch in text:
        if ch.isprintable():
            out.append(ch)
        elif unicodedata.category(ch) in _UNSAFE_CATEGORIES:
            out.append(_escape_char(ch))
        else:  # non-ASCII spaces, private use, unassigned: harmless and printed as they are
            out.append(ch)
    return "".join(out)


def json_value(text: str) -> str | list[int]:
    """A string for JSON: itself when it is valid UTF-8, else the list of its bytes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return list(text.encode("utf-8", "surrogateescape" if _only_escaped(text) else "surrogatepass"))
    return text


def _only_escaped(text: str) -> bool:
    return all(not 0xD800 <= ord(ch) <= 0xDFFF or 0xDC80 <= ord(ch) <= 0xDCFF for ch in text)


def json_safe(value):
    """``value`` (dicts, lists, tuples, scalars) with every string passed through :func:`json_value`;
    dict keys that are not valid UTF-8 are shown with :func:`printable` (a key cannot be a list)."""
    if isinstance(value, str):
        return json_value(value)
    if isinstance(value, dict):
        return {(json_key(k) if isinstance(k, str) else k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def json_key(text: str) -> str:
    value = json_value(text)
    return value if isinstance(value, str) else printable(text)


def json_dumps(value, **kw) -> str:
    """``json.dumps`` of ``value`` made exact and valid first (:func:`json_safe`)."""
    import json

    return json.dumps(json_safe(value), **kw)


class PrintableStream:
    """A text stream that passes every line written through :func:`printable` (the line breaks
    themselves are kept). ``memtop``'s subcommands write through it (memtop/cli.py), so that no
    raw control byte can reach a terminal from any text output, whatever a command forgets;
    renderers also escape each system string themselves, so that a newline in a name cannot
    split a row."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        if not text.isprintable():
            text = "\n".join(printable(line) for line in text.split("\n"))
        self._stream.write(text)
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._stream, name)
