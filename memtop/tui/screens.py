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


# How the help screen writes keys -> Textual's key names.
KEY_NAMES = {"/": "slash", "?": "question_mark", "+": "plus", "-": "minus", "Enter": "enter", "⏎": "enter",
             ",": "comma", ".": "full_stop", "<": "less_than_sign", ">": "greater_than_sign", "Esc": "escape",
             "↑": "up", "↓": "down", "PgUp": "pageup", "PgDn": "pagedown", "Home": "home", "End": "end"}


def key_names(display: str) -> list[str]:
    """Textual's names of the keys a help row names: "1-8" -> 1 … 8, "+ -" -> plus, minus."""
    names = []
    for part in display.split():
        if len(part) == 3 and part[0].isdigit() and part[1] == "-" and part[2].isdigit():
            names.extend(str(i) for i in range(int(part[0]), int(part[2]) + 1))
        else:
            names.append(KEY_NAMES.get(part, part))
    return names


def bound_keys(screen) -> dict[str, tuple[object, str, bool]]:
    """Every key bound where the keys of ``screen`` go (the focused widget, its ancestors, the
    screen, the app): (the node whose binding answers it, that binding's action, whether it acts
    now). As Textual does, the first binding up from the focus whose ``check_action`` does not
    say False answers (a False one is hidden from the footer and passes the key on); a key with
    no such binding maps to the first one that binds it, not acting."""
    nodes = list(screen.focused.ancestors_with_self) if screen.focused is not None else [screen, screen.app]
    answers: dict[str, tuple[object, str, bool]] = {}
    for node in nodes:
        for cls in type(node).__mro__:
            for binding in cls.__dict__.get("BINDINGS", ()):
                if not isinstance(binding, Binding):
                    continue
                name = binding.action.split("(", 1)[0]
                for key in (k.strip() for k in binding.key.split(",")):
                    if key in answers and answers[key][2]:
                        continue  # answered closer to the focus
                    acting = node.check_action(name, ()) is not False
                    if key not in answers or acting:
                        answers[key] = (node, name, acting)
    return answers


class HelpScreen(ModalScreen[None]):
    """Keys, and the source of every figure on the current tab.

    Only the keys that act on the tab now are listed (a key whose binding is disabled there, by
    the check that also hides it from the footer, is left out); a tab's own line for a key
    replaces the general one (Kernel: "s sort the slab table" instead of "s choose the sort
    column"). Build it while the tab's screen is the active one (as the app's `?` does).
    """

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, tab_title: str, figure_sources, tab_keys, global_keys, about: str = ""):
        super().__init__()
        self.tab_title = tab_title
        self.about = about
        self.figure_sources = figure_sources
        app = self.app
        acting = bound_keys(app.screen)
        tab_displays = {key for key, _ in tab_keys}

        def shown(display: str, app_key: bool) -> bool:
            known = [acting[name] for name in key_names(display) if name in acting]
            if not known:
                return True  # keys with no binding (arrows, Esc) are handled by the widgets
            # An app key means what the help says only where it runs one of the app's actions
            # (on the tmpfs tab, e picks the memfd section: no evict there).
            return any(ok and (not app_key or owner is app or hasattr(app, f"action_{action}"))
                       for owner, action, ok in known)

        # (key as shown, what it does): the rows of the screen, in order (tests press each).
        self.rows: tuple[tuple[str, str], ...] = (
            *((k, w) for k, w in global_keys if k not in tab_displays and shown(k, True)),
            *((k, w) for k, w in tab_keys if shown(k, False)))

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold")
        keys.add_column()
        # Text, not str: a source such as "[heap]" must not be read as Rich markup.
        for key, what in self.rows:
            keys.add_row(Text(key), Text(what))
        sources = Table(box=None, padding=(0, 2), show_header=True, header_style="bold")
        sources.add_column("figure")
        sources.add_column("where it comes from (check it by hand)")
        for figure, source in self.figure_sources:
            sources.add_row(Text(figure), Text(source))
        with VerticalScroll(id="help-body"):
            yield Static(Text(f"memtop help — {self.tab_title} tab", style="bold"))
            if self.about:
                yield Static(Text(self.about[0].upper() + self.about[1:] + "."))
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
