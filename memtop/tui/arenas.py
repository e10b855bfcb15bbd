"""The Arenas tab (not built yet: it says what it will show)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from memtop.tui.tab import TabView

PLANNED = """Every glibc arena of the selected process: system, in use, free, top, resident bytes;
a free-chunk size histogram; malloc_info on request; the RSS that MALLOC_ARENA_MAX=2
would save."""


class ArenasTab(TabView):
    TAB_TITLE = "Arenas"
    TAB_ID = "arenas"

    def compose(self) -> ComposeResult:
        yield Static("This tab is not built yet. It will show:\n\n" + PLANNED, classes="planned")
