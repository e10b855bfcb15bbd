"""The Pressure tab (not built yet: it says what it will show)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from memtop.tui.tab import TabView

PLANNED = """PSI for memory, io and cpu, stall alerts from PSI triggers, and each process's cgroup
against its limit."""


class PressureTab(TabView):
    TAB_TITLE = "Pressure"
    TAB_ID = "pressure"

    def compose(self) -> ComposeResult:
        yield Static("This tab is not built yet. It will show:\n\n" + PLANNED, classes="planned")
