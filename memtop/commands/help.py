"""``memtop help [TOPIC]``: what each tab shows, its keys, and where every figure comes from.

The same words as the TUI's help screens (``?``): each tab's FIGURE_SOURCES and TAB_KEYS, and
the app's keys, printed as plain text, so that they can be read (and searched, and quoted)
without the TUI. ``memtop help all`` prints every tab, like a manual.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap

NAME = "help"
HELP = "what each tab shows, its keys, and where every figure comes from (TOPIC: a tab, keys, exit, all)"

# The tabs' ids in the app's order (memtop/tui/app.py TABS; a test checks it): the topics are
# known without importing the TUI (and Textual), which the parser of every command would pay for.
# What each tab shows is the tab's own text (TAB_ABOUT, FIGURE_SOURCES, TAB_KEYS), read when
# help is printed.
TAB_IDS = ("processes", "layers", "arenas", "pagecache", "kernel", "tmpfs", "pressure", "containers")
EXIT = (("0", "success"), ("1", "failure: one line on stderr, memtop: ..."), ("2", "usage error"),
        ("129", "the live view lost its terminal (SIGHUP)"), ("130", "interrupted (Ctrl-C)"))


def _tabs():
    from memtop.tui.app import tab_classes

    return tab_classes()


TOPICS = (*TAB_IDS, "keys", "exit", "all")  # the tabs in the app's order (a test checks it), then the rest


def _topics() -> dict[str, str]:
    """Every name a topic answers to -> the topic: a tab by its id, number or title (no TUI import:
    the parser is built for every command)."""
    names = {topic: topic for topic in TOPICS}
    for i, tab_id in enumerate(TAB_IDS):
        names[str(i + 1)] = tab_id
    names.update({"page-cache": "pagecache", "page cache": "pagecache", "page_cache": "pagecache"})
    return names


def topic_arg(text: str) -> str:
    topic = _topics().get(text.strip().lower())
    if topic is None:
        raise argparse.ArgumentTypeError(f"no help topic {text!r}: choose one of {', '.join(TOPICS)} (or a tab's number)")
    return topic


def add_arguments(parser) -> None:
    parser.add_argument("topic", nargs="?", type=topic_arg, choices=TOPICS, metavar="TOPIC",
                        help=f"{', '.join(TAB_IDS)} (or the tab's number 1-{len(TAB_IDS)}), keys, exit, all")


def _table(rows, width: int, indent: int = 2) -> list[str]:
    """Two columns, the second wrapped to the width."""
    rows = list(rows)
    if not rows:
        return []
    left = min(max(len(a) for a, _ in rows), 28)
    out = []
    for a, b in rows:
        body = textwrap.wrap(b, max(30, width - indent - left - 2)) or [""]
        if len(a) > left:
            out.append(" " * indent + a)
            out.extend(" " * (indent + left + 2) + line for line in body)
            continue
        out.append(" " * indent + a.ljust(left) + "  " + body[0])
        out.extend(" " * (indent + left + 2) + line for line in body[1:])
    return out


def tab_help(tab, number: int, width: int) -> list[str]:
    lines = [f"{tab.TAB_TITLE} tab (key {number})", *textwrap.wrap(tab.TAB_ABOUT, width - 2,
                                                                    initial_indent="  ", subsequent_indent="  "), ""]
    if tab.TAB_KEYS:
        lines += ["Keys of this tab (the keys of every tab: memtop help keys)", *_table(tab.TAB_KEYS, width), ""]
    lines += ["Figures, and where each comes from (check them by hand)", *_table(tab.FIGURE_SOURCES, width)]
    return lines


def keys_help(width: int) -> list[str]:
    from memtop.tui.app import GLOBAL_KEYS

    return ["Keys on every tab (the footer shows those that act on the tab shown)", *_table(GLOBAL_KEYS, width),
            "", "Each tab's own keys: memtop help TAB; in the TUI: ?"]


def overview(width: int) -> list[str]:
    rows = [(f"{i + 1} {t.TAB_ID}", t.TAB_ABOUT) for i, t in enumerate(_tabs())]
    return ["memtop help TOPIC: a tab's keys and the source of every figure on it", "",
            "Tabs (TOPIC: the name or the number)", *_table(rows, width), "",
            "Other topics", *_table((("keys", "the keys of every tab"), ("exit", "exit statuses"),
                                     ("all", "everything, tab by tab")), width),
            "", "Commands: memtop --help; memtop COMMAND --help"]


def run(args) -> int:
    width = max(60, min(120, shutil.get_terminal_size((100, 24)).columns))
    tabs = list(_tabs())
    topic = args.topic
    if topic is None:
        lines = overview(width)
    elif topic == "keys":
        lines = keys_help(width)
    elif topic == "exit":
        lines = ["Exit statuses of memtop and every command", *_table(EXIT, width)]
    elif topic == "all":
        lines = keys_help(width)
        for i, tab in enumerate(tabs):
            lines += ["", "-" * min(width, 72), *tab_help(tab, i + 1, width)]
        lines += ["", "-" * min(width, 72), "Exit statuses", *_table(EXIT, width)]
    else:
        i, tab = next((i, t) for i, t in enumerate(tabs) if t.TAB_ID == topic)
        lines = tab_help(tab, i + 1, width)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
