"""The one place where numbers become text. Everything inside memtop is bytes, seconds, counts."""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
MiB = 1 << 20

UNKNOWN = "?"


def fmt_bytes(value: int | float | None, *, signed: bool = False) -> str:
    """Format a byte count with binary units, e.g. ``1.5 GiB``; ``?`` when unknown (None)."""
    if value is None:
        return UNKNOWN
    sign = ""
    if value < 0:
        sign = "-"
        value = -value
    elif signed:
        sign = "+"
    size = float(value)
    # Up a unit from 1,000 (as shown, rounded): "0.98 MiB", not "1000 KiB", so that a figure never
    # takes four digits before its unit.
    for unit in _UNITS:
        if size < 999.5 or unit == _UNITS[-1]:
            break
        size /= 1024
    if unit == "B":
        return f"{sign}{int(size)} B"
    if size >= 100:
        return f"{sign}{size:.0f} {unit}"
    if size >= 10:
        return f"{sign}{size:.1f} {unit}"
    return f"{sign}{size:.2f} {unit}"


def fmt_count(value: int | float | None) -> str:
    """Format a count compactly (12, 1.2k, 3.4M)."""
    if value is None:
        return UNKNOWN
    value = float(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    if value == int(value):
        return str(int(value))
    return f"{value:.1f}"


def fmt_rate(value: float | None, unit: str = "/s") -> str:
    """Format a rate such as page faults per second."""
    if value is None:
        return UNKNOWN
    return f"{fmt_count(value)}{unit}"


def fmt_percent(value: float | None) -> str:
    """Format a fraction in [0, 1] (or beyond) as a percentage."""
    if value is None:
        return UNKNOWN
    return f"{value * 100:.0f}%"


def fmt_clock(wall_time: float | None) -> str:
    """``14:03:27`` in local time; ``?`` for a time no clock can show (None, or a recording's
    value out of range: time.localtime raises on those)."""
    import time

    try:
        return time.strftime("%H:%M:%S", time.localtime(wall_time)) if wall_time is not None else UNKNOWN
    except (OverflowError, OSError, ValueError):
        return UNKNOWN


def fmt_duration(seconds: float | None) -> str:
    """Format a duration: 45s, 12m, 3h05m, 2d04h."""
    if seconds is None:
        return UNKNOWN
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"


_SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values, width: int) -> str:
    """The last ``width`` values as block characters, scaled between their own min and max.

    Unknown points (None) are blanks. A flat series is a row of the lowest block.
    """
    points = list(values)[-width:]
    known = [v for v in points if v is not None]
    if not known:
        return " " * width
    low, high = min(known), max(known)
    span = high - low
    out = []
    for v in points:
        if v is None:
            out.append(" ")
        elif span == 0:
            out.append(_SPARK[0])
        else:
            out.append(_SPARK[min(len(_SPARK) - 1, int((v - low) / span * (len(_SPARK) - 1) + 0.5))])
    return "".join(out).rjust(width)


def counted(n: int, word: str, many: str | None = None) -> str:
    """``1 arena``, ``2 arenas`` (``many``: the plural when it is not ``word + "s"``)."""
    return f"{fmt_count(n) if n >= 10_000 else n} {word if n == 1 else (many or word + 's')}"


def exact_bytes(value: int) -> str:
    """A setting's exact size (mp_'s thresholds are set, not measured): 128 KiB, 1588 KiB, 3 MiB."""
    if value == 0:
        return "0 B"
    if value % (1 << 20) == 0:
        return f"{value >> 20} MiB"
    if value % 1024 == 0:
        return f"{value >> 10} KiB"
    return f"{value} B"
