"""What every tab is: a container that renders the samples the Collector builds.

A tab module defines one subclass of :class:`TabView` and the app lists it in ``TABS``
(``memtop/tui/app.py``). A tab only renders: it names the Collector parts it shows
(:meth:`TabView.parts`; the app asks the Collector for them while the tab is the active one,
and nothing else reads them), and the app calls :meth:`TabView.show_sample` with every new
:class:`~memtop.model.sample.Sample` while the tab is visible (and once when it becomes
visible), and :meth:`TabView.show_target` when the selected process changes. What a tab asks
of the Collector beyond that (a directory to scan, a walk again now) goes through
``self.app.collector`` (set_params, refresh, stop); it never reads /proc or walks heaps itself.

Replay (``memtop replay``) hands the same tabs recorded samples: a part a tick of the file does
not hold is None in the sample, and the tab says it was not recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual.containers import Container

from memtop.model.process import ProcessIdentity
from memtop.model.sample import Sample

NOT_RECORDED = "not recorded at this tick of the file"


class TabView(Container):
    """Base of a tab's content."""

    TAB_TITLE: ClassVar[str] = "?"
    TAB_ID: ClassVar[str] = "?"
    # The Collector parts the tab shows (memtop/collect/parts.py), while it is visible.
    PARTS: ClassVar[tuple[str, ...]] = ()
    # (figure, where it comes from) for the help screen: every number on the tab has a row.
    FIGURE_SOURCES: ClassVar[tuple[tuple[str, str], ...]] = ()
    # Keys that only this tab handles, for the help screen: (key, what it does).
    TAB_KEYS: ClassVar[tuple[tuple[str, str], ...]] = ()

    DEFAULT_CSS = """
    TabView {
        height: 1fr;
    }
    """

    @property
    def replaying(self) -> bool:
        return getattr(self.app, "replay", None) is not None

    def parts(self) -> tuple[str, ...]:
        """The parts wanted now (a tab may want different ones as its state changes: then it
        calls ``self.app.update_wants()``)."""
        return self.PARTS

    def show_sample(self, sample: Sample) -> None:
        """A new sample arrived and this tab is visible."""

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
