"""update_static (memtop/tui/widgets.py): a panel rebuilt every tick repaints only when what it
shows changed, and lays the screen out again only when its height changed (issue 20, item 2)."""

from rich.table import Table
from textual.app import App, ComposeResult
from textual.widgets import Static

from memtop.tui.widgets import update_static


class CountingStatic(Static):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.refreshes: list[bool] = []  # layout flag of each refresh asked for

    def refresh(self, *args, layout: bool = False, **kw):
        self.refreshes.append(layout)
        return super().refresh(*args, layout=layout, **kw)


class One(App):
    def compose(self) -> ComposeResult:
        yield CountingStatic(id="panel")


def table(*rows: tuple[str, str]) -> Table:
    t = Table("name", "value")
    for row in rows:
        t.add_row(*row)
    return t


async def test_a_new_table_of_the_same_figures_is_not_repainted():
    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        panel = app.query_one(CountingStatic)
        update_static(panel, table(("a", "1")))
        await pilot.pause()
        panel.refreshes.clear()
        newest = table(("a", "1"))
        update_static(panel, newest)  # same lines: no refresh at all
        assert panel.refreshes == []
        assert panel.content is newest and "1" in str(panel.render_line(3).text)
        update_static(panel, table(("a", "2")))  # changed figure, same height: repaint only
        assert panel.refreshes == [False]
        await pilot.pause()
        assert "2" in panel.render_line(3).text
        panel.refreshes.clear()
        update_static(panel, table(("a", "2"), ("b", "3")))  # one more row: a layout pass
        assert True in panel.refreshes
        await pilot.pause()
        assert "3" in panel.render_line(4).text


async def test_the_same_text_in_another_style_is_drawn():
    """Rich's Text == looks at the text and its spans only: a line turning muted (its base style)
    must still be drawn."""
    from rich.text import Text

    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        panel = app.query_one(CountingStatic)
        update_static(panel, Text("trigger armed"))
        await pilot.pause()
        panel.refreshes.clear()
        update_static(panel, Text("trigger armed"))
        assert panel.refreshes == []
        update_static(panel, Text("trigger armed", style="bold"))
        assert panel.refreshes and panel.content.style == "bold"


class Fixed(App):
    CSS = "#panel { height: 4; }"

    def compose(self) -> ComposeResult:
        yield CountingStatic(id="panel")


async def test_a_fixed_height_panel_is_laid_out_once_and_never_lays_out_the_screen():
    app = Fixed()
    async with app.run_test(size=(60, 20)) as pilot:
        panel = app.query_one(CountingStatic)
        update_static(panel, table(("a", "1")))
        await pilot.pause()
        panel.refreshes.clear()
        update_static(panel, table(("a", "1")))  # same lines: nothing
        assert panel.refreshes == []
        update_static(panel, table(("a", "2"), ("b", "3")))  # more rows, but its height is fixed
        assert panel.refreshes == [False]
        # Textual is handed the lines update_static laid out, not the table to lay out again
        assert type(panel.visual._renderable).__name__ == "_Drawn"
        await pilot.pause()
        assert "2" in panel.render_line(3).text
