"""The tmpfs tab (not built yet: it says what it will show)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from memtop.tui.tab import TabView

PLANNED = """RAM held by files: tmpfs mounts, their largest files, deleted-but-open files and their
holders, SysV and memfd shared memory, reconciled with meminfo Shmem."""


class TmpfsTab(TabView):
    TAB_TITLE = "tmpfs"
    TAB_ID = "tmpfs"

    def compose(self) -> ComposeResult:
        yield Static("This tab is not built yet. It will show:\n\n" + PLANNED, classes="planned")
