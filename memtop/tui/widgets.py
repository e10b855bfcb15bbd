"""Small widgets shared by the tabs."""

from __future__ import annotations

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
