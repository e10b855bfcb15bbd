"""What every tab is: a container that receives snapshots while it is visible.

A tab module defines one subclass of :class:`TabView` and the app lists it in ``TABS``
(``memtop/tui/app.py``). The app calls :meth:`TabView.show_snapshot` with every new
:class:`~memtop.model.snapshot.Snapshot` while the tab is the active one (and once when it
becomes active), and :meth:`TabView.show_target` when the selected process changes. A tab that
needs more than the snapshot starts its own thread workers (``@work(thread=True,
exclusive=True, group=...)``) from those calls and posts results back as messages; workers
never touch widgets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual.containers import Container

from memtop.model.process import ProcessIdentity
from memtop.model.snapshot import Snapshot

if TYPE_CHECKING:
    from memtop.output.record import RecordedTick


class TabView(Container):
    """Base of a tab's content."""

    TAB_TITLE: ClassVar[str] = "?"
    TAB_ID: ClassVar[str] = "?"
    # (figure, where it comes from) for the help screen: every number on the tab has a row.
    FIGURE_SOURCES: ClassVar[tuple[tuple[str, str], ...]] = ()
    # Keys that only this tab handles, for the help screen: (key, what it does).
    TAB_KEYS: ClassVar[tuple[tuple[str, str], ...]] = ()

    DEFAULT_CSS = """
    TabView {
        height: 1fr;
    }
    """

    # Replay (`memtop replay FILE`, memtop/tui/replay.py): a tab that can draw a recorded tick sets
    # RECORDED and gets show_recorded() instead of show_snapshot(); while ``self.replaying`` it
    # must read nothing live (the machine now is not the machine then). A tab left False is
    # replaced by a "not recorded in this file" note in replay.
    RECORDED: ClassVar[bool] = False

    @property
    def replaying(self) -> bool:
        return getattr(self.app, "replay", None) is not None

    def show_recorded(self, tick: "RecordedTick") -> None:
        """Replay: draw a recorded tick (``tick.snapshot`` plus the sections the file holds).

        The default draws the snapshot, which is all the Processes tab needs.
        """
        self.show_snapshot(tick.snapshot)

    def show_snapshot(self, snapshot: Snapshot) -> None:
        """A new tick arrived and this tab is visible."""

    def show_target(self, target: ProcessIdentity | None) -> None:
        """The selected process changed (it may be None)."""

    def selected_files(self) -> list[Path]:
        """The files the user selected on this tab, for `e` (evict from the page cache).

        A tab that lists files (Page cache, Layers) returns the highlighted one(s); the default
        is none, and the app then says where files can be selected.
        """
        return []

    def start_filter(self) -> bool:
        """`/` was pressed on this tab. Return False when the tab has nothing to filter."""
        return False

    def choose_sort(self) -> bool:
        """`s` was pressed on this tab. Return False when the tab has nothing to sort."""
        return False
