"""Small widgets shared by the tabs."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.css.scalar import Unit
from textual.scroll_view import ScrollView
from textual.widgets import Static
from textual_plotext import PlotextPlot


def update_static(widget: Static, content) -> None:
    """``widget.update(content)`` when the content changed, and a layout pass of the screen only
    when its height may change: a fixed height, or plain text with the same lines count, each
    narrower than the widget (no wrap). A layout pass repaints every widget on screen (charts
    included): a tab that updated its text panels every tick paid it every tick (issue 20)."""
    old = widget.content
    if type(old) is type(content) and old == content:
        return
    height = widget.styles.height
    if height is not None and height.unit == Unit.CELLS:
        widget.update(content, layout=False)
        return
    width = widget.content_size.width
    if width <= 0:
        widget.update(content)
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
    # Another renderable (a rich Table): its height at this width, measured by rendering it.
    console = widget.app.console
    try:
        height = len(console.render_lines(content, console.options.update_width(width), pad=False))
    except Exception:  # noqa: BLE001 - not a rich renderable: let Textual lay it out
        height = None
    same = height is not None and getattr(widget, "_memtop_height", None) == (width, height)
    widget._memtop_height = (width, height)
    widget.update(content, layout=not same)


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
