"""Small widgets shared by the tabs."""

from __future__ import annotations

import math
import re
import time

from rich.cells import cell_len
from rich.measure import Measurement
from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.css.scalar import Unit
from textual.scroll_view import ScrollView
from textual.visual import visualize
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot


# Steps between the labels of a time axis, seconds: labels fall on round times.
_TIME_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


def time_step(span_s: float, labels: int = 5) -> int:
    """The smallest round step that puts at most ``labels`` labels on ``span_s`` seconds."""
    for step in _TIME_STEPS:
        if span_s / step <= labels:
            return step
    return _TIME_STEPS[-1]


def clock_ticks(first: float, last: float, offset: float | None, labels: int = 5) -> tuple[list[float], list[str]]:
    """Ticks of an axis of monotonic times from ``first`` to ``last``, labelled with the clock
    (``offset`` = wall clock - monotonic), on round seconds: never twice the same label, however
    short the span (a span of 2 s gets 3 labels a second apart, not 5 copies of one second)."""
    if offset is None:
        return ago_ticks(last - first, labels, at=last)
    step = time_step(last - first, labels)
    wall = math.ceil((first + offset) / step) * step
    ticks, texts = [], []
    while wall <= last + offset + 1e-6:
        ticks.append(wall - offset)
        texts.append(time.strftime("%H:%M:%S", time.localtime(wall)))
        wall += step
    if not ticks:  # less than a second shown
        ticks, texts = [first], [time.strftime("%H:%M:%S", time.localtime(first + offset))]
    return ticks, texts


def picture_kept(times, drawn_at: float) -> bool:
    """Whether a chart's picture drawn at ``drawn_at`` may stand at ``times[-1]``: for a tenth of
    the span shown, 20 s at least and 30 s at most, so that its clock axis keeps up (the RSS and
    slab charts; in between they are redrawn only when a line moves by a dot, :func:`within_dot`)."""
    now = times[-1] if times else 0.0
    keep_s = min(30.0, max(20.0, (now - times[0]) / 10)) if times else 30.0
    return 0.0 <= now - drawn_at < keep_s


def within_dot(value, drawn, step: float) -> bool:
    """``value`` is where the chart drew ``drawn``, give or take ``step`` (one braille dot)."""
    return value == drawn or (value is not None and drawn is not None and abs(value - drawn) <= step)


def spaced_note(result, tick_s: float = 2.0, duty: float | None = None) -> str:
    """When a part's runs are spaced out to keep its cost under 0.5 % of a core (see
    memtop/collect/collector.py PART_DUTY; ``duty``: the Collector's own, TabView.spaced_note):
    "read at 05:40:12, every ~11 s"; else "". A clock time, not an age, so that a line drawn once
    stays true."""
    from memtop.collect.collector import PART_DUTY

    duty = PART_DUTY if duty is None else duty
    if result is None or result.value is None or duty * result.cpu_s <= tick_s:
        return ""
    wall = time.time() - (time.monotonic() - result.finished)
    return f"read at {time.strftime('%H:%M:%S', time.localtime(wall))}, every ~{duty * result.cpu_s:.0f} s"


def ago_label(seconds: float) -> str:
    """-45s, -2m, -1m30s, -1h; "now" for 0: an axis of time before now that says its unit."""
    seconds = round(seconds)
    if seconds == 0:
        return "now"
    if seconds % 3600 == 0:
        return f"-{seconds // 3600}h"
    if seconds >= 60:
        minutes, rest = divmod(seconds, 60)
        return f"-{minutes}m" if not rest else f"-{minutes}m{rest:02d}s"
    return f"-{seconds}s"


def ago_ticks(span_s: float, labels: int = 4, at: float = 0.0) -> tuple[list[float], list[str]]:
    """Ticks of an axis of seconds before now (x = ``at`` - seconds ago), on round steps:
    "-2m", "-1m", "now" (the unit in every label)."""
    step = time_step(span_s, labels)
    ticks, texts = [], []
    ago = 0
    while ago <= span_s + 1e-6:
        ticks.append(at - ago)
        texts.append(ago_label(ago))
        ago += step
    return ticks[::-1], texts[::-1]


# NO_COLOR: a chart's lines cannot be told apart by colour; each gets its own marker (the legend
# shows it). With colour, all are braille dots (the finest).
SERIES_MARKERS = ("braille", "+", "x", "o", "*")


# A word that is a unit (or a percent sign), with the punctuation after it: it stays with the
# figure before it when a line is broken (figure_words).
_UNIT_WORD = re.compile(r"(?:B|KiB|MiB|GiB|TiB|PiB|ms|s|%)(?:/s)?[,;:.)]*")
# A comparison before a figure (">= 25%"): it stays with the figure after it.
_OPERATORS = (">=", "<=", ">", "<", "=", "≥", "≤", "≈", "~")


def _word_spans(line: str) -> list[tuple[str, int, int]]:
    """(the spaces before it, start, end) of each word of ``line``, a figure and its unit as one
    word ("1.85 MiB", ">= 25%"); runs of spaces are kept."""
    words: list[list] = []
    spaces = ""
    at = 0
    for part in re.split(r"( +)", line):
        if part.startswith(" "):
            spaces = part
        elif part:
            if words and (_UNIT_WORD.fullmatch(part) or line[words[-1][1]:words[-1][2]] in _OPERATORS):
                words[-1][2] = at + len(part)
            else:
                words.append([spaces, at, at + len(part)])
            spaces = ""
        at += len(part)
    return [tuple(w) for w in words]


def figure_words(text: str, style="") -> list[tuple[str, Text]]:
    """``text`` as (the spaces before it, word) to lay out with :func:`flow`, a figure and its
    unit as one word ("1.85 MiB", ">= 25%"): Rich breaks a line at any space, and cut "mmapped
    1.85" from "MiB". Runs of spaces are kept (a sparkline's blank start)."""
    return [(before, Text(text[start:end], style=style)) for before, start, end in _word_spans(text)]


def flow_text(text: Text | str, width: int) -> Text:
    """Lines of ``text`` (each may start with spaces, kept; its styles kept) laid out by
    :func:`flow`: broken between words, never inside a figure."""
    if isinstance(text, str):
        text = Text(text)
    items: list = []
    for i, line in enumerate(text.split("\n", allow_blank=True)):
        if i:
            items.append(Text("\n"))
        spans = _word_spans(line.plain)
        for j, (before, start, end) in enumerate(spans):
            if j == 0:  # the line's indent (a line's first separator is dropped)
                items.append(("", line[start - len(before):end]))
            else:  # the separator with its style (an underline runs on between words)
                items.append((line[start - len(before):start], line[start:end]))
    return flow(items, width)


def flow(items, width: int, sep: str = " ") -> Text:
    """``items`` (Text, or (separator, Text) for another separator, str or Text, before that one) side by
    side, a new line instead of the separator where the next would pass ``width``: a line
    breaks between items, never inside one; an item wider than ``width`` gets its own line."""
    out = Text()
    used = 0
    for item in items:
        before, item = item if isinstance(item, tuple) else (sep, item)
        if item.plain == "\n":
            out.append("\n")
            used = 0
            continue
        before_len = before.cell_len if isinstance(before, Text) else cell_len(before)
        if used and used + before_len + item.cell_len > width:
            out.append("\n")
            used = 0
        elif used:
            out.append(before)
            used += before_len
        out.append_text(item)
        used += item.cell_len
    return out


def series_marker(app, index: int) -> str:
    if not getattr(app, "no_color", False):
        return "braille"
    return SERIES_MARKERS[index % len(SERIES_MARKERS)]


def update_static(widget: Static, content) -> None:
    """``widget.update(content)`` when the content changed, and a layout pass of the screen only
    when its height may change: a fixed height, or plain text with the same lines count, each
    narrower than the widget (no wrap). A layout pass repaints every widget on screen (charts
    included): a tab that updated its text panels every tick paid it every tick (issue 20)."""
    old = widget.content
    # (Rich's Text == compares the text and its spans, not the base style.)
    if type(old) is type(content) and old == content and (not isinstance(content, Text) or old.style == content.style):
        return
    height = widget.styles.height
    fixed = height is not None and height.unit == Unit.CELLS  # its height never changes
    width = widget.content_size.width
    if width <= 0:
        widget.update(content, layout=not fixed)
        return
    if isinstance(content, (str, Text)) and fixed:
        widget.update(content, layout=False)
        return
    if isinstance(content, (str, Text)) and isinstance(old, (str, Text)):
        new_plain = content.plain if isinstance(content, Text) else content
        old_plain = old.plain if isinstance(old, Text) else old
        new_lines, old_lines = new_plain.split("\n"), old_plain.split("\n")
        if (len(new_lines) == len(old_lines)
                and all(cell_len(line) <= width for line in new_lines)
                and all(cell_len(line) <= width for line in old_lines)):
            widget.update(content, layout=False)
            return
        widget.update(content)
        return
    # Another renderable (a rich Table, a Group): rendered once at this width. The same lines
    # as last time (a new Table of the same figures, every tick): no update at all, no repaint;
    # the same height: no layout pass.
    # Rendered with the options Textual renders it with, so the lines are the ones it would draw:
    # it is then given them (_Drawn) rather than laying the content out a second time.
    try:
        lines = _render_lines(widget.app, content, width)
    except Exception:  # noqa: BLE001 - not a rich renderable: let Textual lay it out
        lines = None
    last = getattr(widget, "_memtop_lines", None)
    widget._memtop_lines = (width, lines) if lines is not None else None
    if lines is not None and last is not None and last[0] == width:
        if last[1] == lines:
            # Keep the newest without a repaint: a later one (a resize) draws it, not a stale
            # one whose text beyond this width may differ (Static's own fields: pinned Textual).
            widget._Static__content = content
            widget._Static__visual = None
            return
        widget.update(content, layout=not fixed and len(last[1]) != len(lines))
    else:
        widget.update(content, layout=not fixed)
    if lines is not None:
        widget._Static__visual = visualize(widget, _Drawn(content, width, lines), markup=widget._render_markup)


def _render_lines(app, content, width: int) -> list:
    return app.console.render_lines(content, app.console_options.update(highlight=False).update_width(width), pad=False)


def drawn_once(app, content, width: int) -> "_Drawn":
    """``content`` laid out now at ``width``: a part of a larger renderable that is drawn again
    and again while this part stays the same (it is not laid out again then)."""
    return _Drawn(content, width, _render_lines(app, content, width))


class _Drawn:
    """``content`` as update_static rendered it at ``width``: Textual gets those lines back at
    that width instead of laying the content out again (a rich Table measures every cell of
    every column each time: a third of the Pressure tab's Python samples at ~100 processes in
    py-spy, though the tab's CPU did not move beyond noise, 1.3-1.5 % before and after); at
    another width (a resize before the next update) it is laid out anew."""

    __slots__ = ("content", "width", "lines")

    def __init__(self, content, width: int, lines: list) -> None:
        self.content, self.width, self.lines = content, width, lines

    def __rich_console__(self, console, options):
        if options.max_width != self.width:
            yield self.content
            return
        new_line = Segment.line()
        for line in self.lines:
            yield from line
            yield new_line

    def __rich_measure__(self, console, options):
        return Measurement.get(console, options, self.content)


def forget_rendered(root) -> None:
    """Drop the rendered lines that ``root`` and its descendants keep, while they are hidden.

    Every Textual widget keeps its last lines (StylesCache, and its content's strips), a
    DataTable up to 13,000 more (row, cell and line caches), and each Strip seven small caches of
    its own: 8-9 MiB for the eight tabs at 1,000 processes (tracemalloc, bench/soak.py), kept for
    as long as the tab stays hidden, among objects that live a tick (dropped, with the trim a tab
    switch asks for: memtop's RSS 7 MiB lower over an hour, bench/soak.py; issue 20 item 5). A tab
    repaints when shown again (it is shown the newest sample then), so nothing is lost but one
    render. ``refresh()`` is Textual's public way to drop the StylesCache; the content's strips
    (``_render_cache``, rebuilt from ``render()`` once dirty), DataTable's caches and
    CachedPlot's picture are private fields of the pinned Textual (tests/unit/test_pins.py),
    cleared where present."""
    try:
        from textual.geometry import NULL_SIZE
        from textual.widget import _RenderCache
    except ImportError:  # another Textual: refresh() alone
        _RenderCache = None
    for widget in root.walk_children(with_self=True):
        widget.refresh()
        if _RenderCache is not None and isinstance(getattr(widget, "_render_cache", None), _RenderCache):
            widget._render_cache = _RenderCache(NULL_SIZE, [])
        clear = getattr(widget, "_clear_caches", None)  # DataTable
        if callable(clear):
            clear()
        if isinstance(widget, CachedPlot):
            widget.forget_picture()


class CachedPlot(PlotextPlot):
    """A PlotextPlot that builds its picture only when the data, the size or the theme changed.

    PlotextPlot.render() rebuilds the whole plot (20-80 ms) whenever Textual repaints the widget,
    which happens after any layout pass of the screen, not only when the data changed. Call
    :meth:`replot` after changing the data through ``self.plt``.
    """

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._generation = 0
        self._cache_key = None
        self._cached = None

    def replot(self) -> None:
        self._generation += 1
        self.refresh()

    def forget_picture(self) -> None:
        """Drop the built picture (hidden: :func:`forget_rendered`); the next render builds it."""
        self._cache_key = self._cached = None

    def render(self):
        key = (self._generation, self.size, self.app.theme)
        if key != self._cache_key or self._cached is None:
            self._cached = super().render()
            self._cache_key = key
        return self._cached


class CursorTable(ScrollView, can_focus=True):
    """Keys, clicks and scrolling of a table drawn line by line (``render_line``) with a cursor.

    A subclass keeps ``rows`` and ``_cursor_index`` and implements ``_move_to(index)``, which
    clamps the index, remembers what the cursor is on (by key, so that it survives refreshes)
    and calls :meth:`_scroll_cursor_into_view`.
    """

    # Rows are cut to the width (the command column takes what is left): never a horizontal
    # scrollbar, which took a line of the table.
    DEFAULT_CSS = """
    CursorTable { overflow-x: hidden; }
    """

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "edge(0)", show=False),
        Binding("end", "edge(1)", show=False),
    ]

    rows: list
    _cursor_index: int

    def _move_to(self, index: int) -> None:
        raise NotImplementedError  # every table says what its cursor follows

    def _scroll_cursor_into_view(self) -> None:
        top = int(self.scroll_offset.y)
        height = max(1, self.size.height)
        if self._cursor_index < top:
            self.scroll_to(y=self._cursor_index, animate=False)
        elif self._cursor_index >= top + height:
            self.scroll_to(y=self._cursor_index - height + 1, animate=False)

    def action_cursor(self, delta: int) -> None:
        self._move_to(self._cursor_index + delta)

    def action_page(self, direction: int) -> None:
        self._move_to(self._cursor_index + direction * max(1, self.size.height - 1))

    def action_edge(self, end: int) -> None:
        self._move_to(len(self.rows) - 1 if end else 0)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None:
            self._move_to(int(self.scroll_offset.y) + offset.y)


class KeysFooter(Footer):
    """Textual's footer, recomposed only when the keys it shows change. Textual's recomposes (its
    keys, their styles) at every change of the screen's bindings, which a focus move or a tab
    switch makes whether or not a key changed: 17 times before the first screen was up."""

    _shown: tuple | None = None
    _narrow = False
    # Narrower than NARROW_WIDTH these keys leave the footer (1-8, +/-, D, A), so that the keys
    # of every tab fit 80 columns (Page cache's were cut mid-word: "D Drop cac"): the tab bar
    # shows the digits, `?` lists every key, and the keys still work.
    NARROW_WIDTH = 100
    NARROW_HIDDEN = ("tab(0)", "interval(1)", "drop_caches", "actions_log")

    def compose(self):
        # Decided here, from the app's size, so that the first compose is the right one: a
        # recompose on the first Resize raced with the first screen (the 80x24 snapshots
        # sometimes lacked the tab's keys).
        self._narrow = self.app.size.width < self.NARROW_WIDTH
        keys = list(super().compose())
        if self._narrow:
            from textual.widgets._footer import FooterKey

            keys = [k for k in keys if not (isinstance(k, FooterKey) and k.action in self.NARROW_HIDDEN)]
            self.styles.grid_size_columns = len(keys)
        yield from keys

    async def on_resize(self, event) -> None:
        narrow = event.size.width < self.NARROW_WIDTH
        if narrow != self._narrow:
            self._narrow = narrow
            await self.recompose()

    def bindings_changed(self, screen) -> None:
        shown = tuple((binding.key, binding.description, enabled, tooltip)
                      for (_, binding, enabled, tooltip) in screen.active_bindings.values() if binding.show)
        if shown == self._shown:
            return
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            self._shown = shown  # Footer.bindings_changed recomposes in these conditions only
        super().bindings_changed(screen)

    async def recompose(self) -> None:
        await super().recompose()
        self.forget_removed_keys()

    def forget_removed_keys(self) -> None:
        """Drop what the footer's watchers keep of the keys a recompose removed.

        Each key Textual's Footer composes is bound to the footer's ``compact`` (``data_bind``),
        which appends the key to the footer's watcher list; Textual prunes that list only when
        ``compact`` changes, which it never does here. Every tab switch left its keys alive:
        1,020 FooterKeys after 80 switches, memtop's RSS +64 MiB an hour (bench/soak.py)."""
        watchers = getattr(self, "__watchers", None)
        if not watchers:
            return
        for entries in watchers.values():
            entries[:] = [(node, callback) for node, callback in entries
                          if not (getattr(node, "_closing", False) or getattr(node, "_closed", False))]

