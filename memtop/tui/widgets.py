"""Small widgets shared by the tabs."""

from __future__ import annotations

from textual import events
from textual.binding import Binding
from textual.scroll_view import ScrollView
from textual_plotext import PlotextPlot


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
