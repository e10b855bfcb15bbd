"""The Kernel tab (not built yet: it says what it will show)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from memtop.tui.tab import TabView

PLANNED = """Memory that no RSS shows: slab caches, kernel categories of meminfo, socket buffers
per network namespace, and per-process fd growth."""


class KernelTab(TabView):
    TAB_TITLE = "Kernel"
    TAB_ID = "kernel"

    def compose(self) -> ComposeResult:
        yield Static("This tab is not built yet. It will show:\n\n" + PLANNED, classes="planned")
