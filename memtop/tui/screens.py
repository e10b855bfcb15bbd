"""Modal screens shared by the tabs: help, sort chooser."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class HelpScreen(ModalScreen[None]):
    """Keys, and the source of every figure on the current tab."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, tab_title: str, figure_sources, tab_keys, global_keys):
        super().__init__()
        self.tab_title = tab_title
        self.figure_sources = figure_sources
        self.tab_keys = tab_keys
        self.global_keys = global_keys

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold")
        keys.add_column()
        # Text, not str: a source such as "[heap]" must not be read as Rich markup.
        for key, what in (*self.global_keys, *self.tab_keys):
            keys.add_row(Text(key), Text(what))
        sources = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
        sources.add_column("figure")
        sources.add_column("where it comes from (check it by hand)")
        for figure, source in self.figure_sources:
            sources.add_row(Text(figure), Text(source))
        with VerticalScroll(id="help-body"):
            yield Static(Text(f"memtop help — {self.tab_title} tab", style="bold"))
            yield Static(keys)
            yield Static(Text("\nFigures on this tab", style="bold"))
            yield Static(sources if self.figure_sources else Text("This tab shows no figures yet."))
            yield Static(Text("\nUnknown values are shown as ?; the reason is in the detail line. Esc closes.", style="dim"))


class SortScreen(ModalScreen[str | None]):
    """Choose the sort column; choosing the current one flips the direction."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, columns: list[tuple[str, str]], current: str):
        super().__init__()
        self.columns = columns
        self.current = current

    def compose(self) -> ComposeResult:
        options = [Option(f"{title}{'  (current: Enter flips direction)' if key == self.current else ''}", id=key)
                   for key, title in self.columns]
        self.option_list = OptionList(*options, id="sort-options")
        yield self.option_list

    def on_mount(self) -> None:
        self.option_list.border_title = "Sort by"
        ids = [key for key, _ in self.columns]
        self.option_list.highlighted = ids.index(self.current) if self.current in ids else 0
        self.option_list.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
