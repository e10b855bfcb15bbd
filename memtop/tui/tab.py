"""What every tab is: a container that renders the samples the Collector builds.

A tab module defines one subclass of :class:`TabView` and the app lists it in ``TABS``
(``memtop/tui/app.py``, by module and class name: a tab is imported and built when first shown).
A tab only renders: it names the Collector parts it shows
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

from textual import events
from textual.binding import Binding
from textual.containers import Container
from textual.widgets import Input, TabbedContent, TabPane, Tabs
from textual.widgets._tabbed_content import ContentTab

from memtop.model.process import ProcessIdentity
from memtop.model.sample import Sample

NOT_RECORDED = "not recorded at this tick of the file"


class TextBox(Input):
    """A tab's text box (a filter, a directory): keys act in the order they were typed.

    Textual hands a key to the widget focused when the key is read, and a widget handles its keys
    in its own time. So keys typed fast after Enter were typed into the box although Enter had
    closed it (a digit then did not switch tabs, `p` did not pause). Here Enter and Esc are
    handled by the box itself, in order with the characters before them (the tab's
    :meth:`TabView.box_enter` / :meth:`TabView.box_escape`, which move the focus at once), and a
    key that reaches the box after the focus left it is handed to the app again, which routes
    it where the focus is now.
    """

    async def _on_key(self, event: events.Key) -> None:
        if self.screen.focused is not self:
            event.stop()
            event.prevent_default()
            self.app.post_message(events.Key(event.key, event.character))
            return
        tab = next((node for node in self.ancestors if isinstance(node, TabView)), None)
        if event.key in ("enter", "escape") and tab is not None:
            event.stop()
            event.prevent_default()
            if event.key == "enter":
                tab.box_enter(self)
            else:
                tab.box_escape(self)
            return
        await super()._on_key(event)


class TabsContent(TabbedContent):
    """The app's tabs. Textual makes the pane that holds a newly focused widget the active one,
    through a message (TabPane.Focused) handled later. So Enter in a filter box (the focus moves
    to the tab's table) followed at once by a digit switched tabs, and then the late message
    switched back. A late message whose pane no longer holds the focused widget, or is no
    longer the active pane (a digit chose another tab, which is still being built: the focus has
    not moved yet), is dropped: memtop never focuses a widget to switch tabs. Relies on TabbedContent's private handler: Textual is pinned (tests/unit/test_pins.py) and
    tests/tui/test_keys.py types Enter and a digit at once on every tab with a filter."""

    def _on_tab_pane_focused(self, event: TabPane.Focused) -> None:
        # Textual calls the handler of each class of the MRO in turn: TabbedContent's runs
        # after this one unless the default is prevented.
        focused = self.screen.focused
        if focused is None or event.tab_pane not in focused.ancestors or event.tab_pane is not self.active_pane:
            event.stop()  # stale: the focus has moved on since
            event.prevent_default()

    def _let_go_of_focus(self, new_pane: str) -> None:
        """Unfocus a widget of the pane being left, now. Left focused, it blurs when its Hide
        event arrives, and Textual then focuses a visible sibling: the Processes filter box (kept
        displayed with its filter) took the focus, and the digit typed next went into it instead
        of switching back (seen in tmux: `/ python Enter 2`, then 1, stayed on Layers). With no
        focus the keys reach the app until the new tab focuses its own widget."""
        focused = self.screen.focused
        if focused is not None and not any(node.id == new_pane for node in focused.ancestors):
            self.screen.set_focus(None)

    def _watch_active(self, active: str) -> None:
        self._let_go_of_focus(active)
        super()._watch_active(active)

    def _on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        # A click on a tab: TabbedContent's handler (after this one) switches the panes.
        if self._is_associated_tabs(event.tabs) and event.tab.id is not None:
            self._let_go_of_focus(ContentTab.sans_prefix(event.tab.id))


class TabView(Container):
    """Base of a tab's content."""

    BINDINGS = [
        # A priority binding: the app handles `/` when it reads it, before it routes the keys
        # typed after it, which then go into the filter box (not to the table: `s` opening the
        # sort chooser). Not while a text box has the focus (a path has slashes).
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
    ]

    TAB_TITLE: ClassVar[str] = "?"
    TAB_ID: ClassVar[str] = "?"
    # What the tab answers, in one line: the help screen's first line, `memtop help TAB`.
    TAB_ABOUT: ClassVar[str] = ""
    # The Collector parts the tab shows (memtop/collect/parts.py), while it is visible.
    PARTS: ClassVar[tuple[str, ...]] = ()
    # (figure, where it comes from) for the help screen: every number on the tab has a row.
    FIGURE_SOURCES: ClassVar[tuple[tuple[str, str], ...]] = ()
    # Keys that only this tab handles, for the help screen: (key, what it does).
    TAB_KEYS: ClassVar[tuple[tuple[str, str], ...]] = ()
    # The app's keys that act on this tab (MemtopApp.check_action shows and enables them only
    # there): Enter opens the selected process in Layers, t trims it, e evicts the selected file.
    OPENS_LAYERS: ClassVar[bool] = False
    TRIMS: ClassVar[bool] = False
    EVICTS: ClassVar[bool] = False

    DEFAULT_CSS = """
    TabView {
        height: 1fr;
    }
    """

    def on_hide(self) -> None:
        """Another tab is shown: drop what this one's widgets rendered (widgets.forget_rendered);
        it repaints from the newest sample when shown again."""
        from memtop.tui.widgets import forget_rendered

        forget_rendered(self)

    @property
    def replaying(self) -> bool:
        return getattr(self.app, "replay", None) is not None

    def spaced_note(self, result) -> str:
        """widgets.spaced_note with the spacing this app's Collector applies."""
        from memtop.tui.widgets import spaced_note

        collector = getattr(self.app, "collector", None)
        return spaced_note(result, getattr(collector, "interval_s", 2.0), getattr(collector, "part_duty", None))

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

    def can_filter(self) -> bool:
        """Whether `/` filters something on this tab now (the footer shows it only then)."""
        return False

    def can_sort(self) -> bool:
        """Whether `s` sorts something on this tab now (the footer shows it only then)."""
        return False

    def start_filter(self) -> bool:
        """`/` was pressed on this tab. Return False when the tab has nothing to filter."""
        return False

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "filter":
            return self.can_filter() and not isinstance(self.screen.focused, Input)
        return True

    def action_filter(self) -> None:
        self.start_filter()

    def box_enter(self, box: TextBox) -> None:
        """Enter in one of the tab's text boxes: act, and focus the tab's list (before the next
        key is routed: :meth:`focus_now`)."""

    def box_escape(self, box: TextBox) -> None:
        """Esc in one of the tab's text boxes: close it, and focus the tab's list."""

    def choose_sort(self) -> bool:
        """`s` was pressed on this tab. Return False when the tab has nothing to sort."""
        return False

    def focus_when_shown(self, widget) -> None:
        """From ``on_show``: focus ``widget`` now, if this tab is still the active one. Not
        ``widget.focus()``, which focuses later: a digit typed meanwhile had switched to another
        tab, and a focus arriving inside this hidden tab made Textual switch back to it (seen in
        CI: Enter in the filter, then 5, stayed on Processes). See also :class:`TabsContent`."""
        if self.is_attached and self.app.active_tab() is self and widget.display:
            self.screen.set_focus(widget)

    def focus_now(self, widget) -> None:
        """Focus ``widget`` before the next key is handled.

        ``Widget.focus()`` focuses later (a callback queued behind the keys already read): keys
        typed right after `/` would reach the table (`s` opening the sort chooser) and the ones
        after them the filter box. The screen's ``set_focus`` focuses now; the widget must be
        displayed (``display = True`` first).
        """
        self.screen.set_focus(widget)
