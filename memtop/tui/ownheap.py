"""memtop's own glibc heap: what it shows other processes, applied to itself (issue 20, item 5).

The TUI runs four threads that allocate (the UI, the sampler, two part workers); glibc gives
each its own arena, and each arena keeps what its thread freed. Two arenas at most
(M_ARENA_MAX) and a malloc_trim(0) after start-up and then once a minute keep memtop's RSS
near what it uses: -2.5 MiB with 1,000 processes for the arenas alone (bench/compare.py --tabs).
Under another C library (musl) nothing is done: these are glibc's calls. With the trim, the
bounded caches of Textual and Rich are emptied (clear_render_caches): what they hold would
otherwise creep up for hours.
"""

from __future__ import annotations

import ctypes
import sys

M_ARENA_MAX = -8  # malloc.h
ARENA_MAX = 2
TRIM_EVERY_S = 60.0


def _glibc():
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- only glibc has it
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


def limit_arenas(arenas: int = ARENA_MAX) -> bool:
    """At most ``arenas`` malloc arenas for memtop's threads; before they start. True when set."""
    return _LIBC is not None and _LIBC.mallopt(M_ARENA_MAX, arenas) == 1


def trim() -> bool:
    """malloc_trim(0) on memtop itself: give glibc's free pages back. True when some were."""
    return _LIBC is not None and _LIBC.malloc_trim(0) == 1


def clear_render_caches() -> int:
    """Empty the bounded functools.lru_caches of Textual and Rich (pure functions of what is
    drawn: cell widths, styles, regions, the ANSI of each style); the next frames fill them again
    with what is on screen. Returns how many entries were dropped. Once a minute, with the trim.

    They hold what was ever drawn up to their bound, and their keys keep coming: ``Strip.render_ansi``
    (up to 16,384 styles) gains a style for every table cell's row/column meta and colour drawn, 60
    a minute after the first quarter of an hour here (1,000 processes, tabs visited in turn), ~0.5
    KiB each; ``StylesCache.get_inner_outer`` keeps the caches of removed widgets (the footer's keys
    of every tab switch, with their rendered lines) alive through its key. Cleared, what they hold
    is one minute's working set, not the history of the session. Unbounded caches (keyed by class)
    are left alone. Found by walking the loaded modules (~7 ms, again only when a module was
    loaded since): another Textual has other caches."""
    global _render_caches, _modules_seen
    if len(sys.modules) != _modules_seen:  # a module loaded since (a tab's first showing)
        _render_caches, _modules_seen = _find_render_caches(), len(sys.modules)
    dropped = 0
    for fn in _render_caches:
        dropped += fn.cache_info().currsize
        fn.cache_clear()
    return dropped


_render_caches: list = []
_modules_seen = 0


def _find_render_caches() -> list:
    seen: set[int] = set()
    found = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name.startswith(("textual.", "rich.")) or name in ("textual", "rich")):
            continue
        for value in list(vars(module).values()):
            holders = list(vars(value).values()) if isinstance(value, type) and value.__module__ == name else [value]
            for fn in holders:
                if isinstance(fn, (classmethod, staticmethod)):
                    fn = fn.__func__
                if id(fn) in seen or not hasattr(fn, "cache_clear") or not hasattr(fn, "cache_info"):
                    continue
                seen.add(id(fn))
                try:
                    if fn.cache_info().maxsize is not None:
                        found.append(fn)
                except (TypeError, AttributeError):  # something else with those names
                    continue
    return found
