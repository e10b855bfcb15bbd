"""The two-line header: host, kernel, uptime, and a compact memory bar."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from memtop.format import fmt_bytes, fmt_duration
from memtop.model.snapshot import Snapshot, memory_used
from memtop.text import printable


COLOR_GLYPHS = {"header--used": "█", "header--shmem": "█", "header--cache": "█", "header--free": "░"}
NO_COLOR_GLYPHS = {"header--used": "█", "header--shmem": "▓", "header--cache": "▒", "header--free": "·"}


def _of(part, whole) -> str:
    """``part/whole`` with the unit once when both have the same: "22.0/24.0 GiB"."""
    a, b = fmt_bytes(part), fmt_bytes(whole)
    if a.split(" ")[-1] == b.split(" ")[-1] and " " in a:
        return f"{a.split(' ')[0]}/{b}"
    return f"{a}/{b}"


class MemoryHeader(Widget):
    """Host line and memory bar. Figures: /proc/meminfo (free(1)'s arithmetic)."""

    COMPONENT_CLASSES = {
        "header--title",
        "header--used",
        "header--cache",
        "header--shmem",
        "header--free",
        "header--paused",
    }

    DEFAULT_CSS = """
    MemoryHeader { height: 2; }
    """

    def __init__(self, **kw):
        super().__init__(**kw)
        self._snapshot: Snapshot | None = None
        self._state = ""
        self._alert = ""
        self._shown: Text | None = None

    def update(self, snapshot: Snapshot | None, state: str = "", alert: str = "") -> None:
        """``state`` is shown plainly (interval, read-only); ``alert`` stands out (PAUSED)."""
        self._snapshot = snapshot
        self._state = state
        self._alert = alert
        text = self._text()
        if text != self._shown:  # same text and styles: nothing to repaint
            self._shown = text
            self.refresh()

    def render(self) -> Text:
        self._shown = self._text()
        return self._shown

    def _text(self) -> Text:
        style = self.get_component_rich_style
        s = self._snapshot
        if s is None:
            return Text("memtop: reading /proc …", style=style("header--title"))
        sysm = s.system
        mi = sysm.meminfo
        line1 = Text()
        line1.append(f" memtop  {printable(sysm.hostname, 64)}", style=style("header--title"))
        line1.append(f"  kernel {printable(sysm.kernel, 64)}  up {fmt_duration(sysm.uptime_s)}  {len(s.processes)} processes")
        if self._state:
            line1.append(f"  {self._state}")
        if self._alert:
            line1.append(f"  {self._alert}", style=style("header--paused"))

        total = mi.get("MemTotal")
        used = memory_used(mi)
        shmem = mi.get("Shmem")
        cache = None
        if "Buffers" in mi and "Cached" in mi and "SReclaimable" in mi:
            # buff/cache without Shmem (which meminfo counts inside Cached), so segments add up.
            cache = mi["Buffers"] + mi["Cached"] + mi["SReclaimable"] - (shmem or 0)
        # Without colour (NO_COLOR) the segments are told apart by their glyphs, named in the legend.
        glyph = NO_COLOR_GLYPHS if getattr(self.app, "no_color", False) else COLOR_GLYPHS
        narrow = self.size.width < 110
        key = (lambda cls: glyph[cls]) if glyph is NO_COLOR_GLYPHS else (lambda cls: "")
        sp = "" if narrow else " "
        buff_cache = cache + (shmem or 0) if cache is not None else None
        # narrow: "22.0/24.0 GiB" for "22.0 GiB/24.0 GiB" (one unit for both)
        of = _of if narrow else (lambda a, b: f"{fmt_bytes(a)}/{fmt_bytes(b)}")
        swap_total = mi.get("SwapTotal")
        shown = {
            "used": Text(f" {key('header--used')}used {fmt_bytes(used)}", style=style("header--used")),
            "cache": Text(f" {sp}{key('header--cache')}{'cache' if narrow else 'buff/cache'} {fmt_bytes(buff_cache)}",
                          style=style("header--cache")),
            "shm": Text(f" {sp}{key('header--shmem')}{'shm' if narrow else 'shmem'} {fmt_bytes(shmem)}",
                        style=style("header--shmem")),
            "avail": Text(f" {sp}avail {of(mi.get('MemAvailable'), total)}"),
            "swap": Text(f" {sp}swap {of(swap_total - mi.get('SwapFree', 0), swap_total)}" if swap_total else " swap none"),
        }
        if sum(t.cell_len for t in shown.values()) > self.size.width:
            del shown["shm"]  # 80 columns in GiB with swap: shm gives way (the tmpfs tab has it), not swap
        figures = Text().join(shown.values())
        line2 = Text(" mem ")
        # The bar gives way to the figures (in GiB they are longer: a fixed bar cut the swap
        # figure off at 120 columns), down to none on a narrow terminal (and "mem" with it).
        room = self.size.width - line2.cell_len - figures.cell_len - 1
        bar_width = max(0, min(40, max(8, self.size.width - 90), room))
        if not bar_width:
            line2 = Text()
        if total and used is not None:
            parts = [(used - (shmem or 0), "header--used"), (shmem or 0, "header--shmem"), (max(0, cache or 0), "header--cache")]
            cells = 0
            for value, cls in parts:
                n = max(0, min(bar_width - cells, round(value / total * bar_width)))
                line2.append(glyph[cls] * n, style=style(cls))
                cells += n
            line2.append(glyph["header--free"] * (bar_width - cells), style=style("header--free"))
        line2.append_text(figures)
        return line1 + Text("\n") + line2
