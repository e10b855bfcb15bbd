"""The Layers tab (not built yet: it says what it will show)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from memtop.tui.tab import TabView

PLANNED = """For the selected process, from RSS down: who holds each byte.
The kernel's view (file-backed, anonymous, shmem, LazyFree, Swap), glibc's view (in use,
free but kept, top) from a read-only heap walk, the runtime's slice, what malloc_trim(0)
would release now, and the chunk that pins the heap."""


class LayersTab(TabView):
    TAB_TITLE = "Layers"
    TAB_ID = "layers"

    def compose(self) -> ComposeResult:
        yield Static("This tab is not built yet. It will show:\n\n" + PLANNED, classes="planned")
