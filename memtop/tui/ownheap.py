"""memtop's own glibc heap: what it shows other processes, applied to itself (issue 20, item 5).

The TUI runs four threads that allocate (the UI, the sampler, two part workers); glibc gives
each its own arena, and each arena keeps what its thread freed. Two arenas at most
(M_ARENA_MAX) and a malloc_trim(0) after start-up and then once a minute keep memtop's RSS
near what it uses: -2.5 MiB with 1,000 processes for the arenas alone (bench/compare.py --tabs).
Under another C library (musl) nothing is done: these are glibc's calls.
"""

from __future__ import annotations

import ctypes

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


def forget_removed_widgets_styles() -> None:
    """Textual's ``StylesCache.get_inner_outer`` is an ``lru_cache(1024)`` on a method: its key
    holds the StylesCache itself, so up to 1,024 caches of removed widgets (the footer's keys of
    every tab switch, each with its rendered lines) stay alive; 583 after 32 tab switches here.
    Cleared with the once-a-minute trim; the next paint fills it again with the live ones."""
    try:
        from textual._styles_cache import StylesCache

        StylesCache.get_inner_outer.cache_clear()
    except (ImportError, AttributeError):  # another Textual: nothing of the kind to clear
        pass
