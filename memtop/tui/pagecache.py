"""The Page cache tab (not built yet: it says what it will show)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from memtop.tui.tab import TabView

PLANNED = """What is cached per file (cachestat), who maps it, whether it thrashes
(vmstat refault rates), and eviction of a file's clean pages."""


class PageCacheTab(TabView):
    TAB_TITLE = "Page cache"
    TAB_ID = "pagecache"

    def compose(self) -> ComposeResult:
        yield Static("This tab is not built yet. It will show:\n\n" + PLANNED, classes="planned")
