"""``memtop completion bash|zsh``: a shell completion script for memtop and its subcommands.

The script is generated from memtop's own argument parser (memtop/cli.py), so it always offers
the subcommands and options this memtop has: subcommands, their options, the choices of options
that have them (``cache --sort``, ``drop-caches`` levels), PIDs of the running processes where a
PID is asked for, and file names for FILE and PATH arguments. No dependency: argparse alone
(shtab would do the same from the same parser, at the cost of a package to install everywhere).

    memtop completion bash > ~/.local/share/bash-completion/completions/memtop
    memtop completion zsh > ~/.zfunc/_memtop    (zsh: through its bashcompinit)
"""

from __future__ import annotations

import argparse
import shlex
import sys

NAME = "completion"
HELP = "print a shell completion script (bash or zsh) for memtop and its subcommands"

_FILE_METAVARS = {"FILE", "PATH", "DIR"}


def add_arguments(parser) -> None:
    parser.add_argument("shell", choices=("bash", "zsh"), help="the shell the script is for")


def _words(actions) -> tuple[list[str], list[tuple[str, str]]]:
    """(every option string shown in --help, (option, what its value completes to) pairs)."""
    options, values = [], []
    for action in actions:
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        options.extend(action.option_strings)
        if action.nargs == 0:
            continue
        if action.choices:
            kind = "words:" + " ".join(str(c) for c in action.choices)
        elif action.metavar == "PID":
            kind = "pids"
        elif action.metavar in _FILE_METAVARS:
            kind = "files"
        else:
            kind = "none"  # a number, a size, a spec: nothing to offer
        values.extend((option, kind) for option in action.option_strings)
    return options, values


def _positional(actions) -> str:
    """What the subcommand's positional arguments complete to."""
    for action in actions:
        if action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if action.choices:
            return "words:" + " ".join(str(c) for c in action.choices)
        if action.metavar == "PID":
            return "pids"
        if action.metavar in _FILE_METAVARS:
            return "files"
    return "none"


def _reply(kind: str, cur: str = '"$cur"') -> str:
    if kind == "pids":
        return f'COMPREPLY=($(compgen -W "$(_memtop_pids)" -- {cur}))'
    if kind == "files":
        return f"COMPREPLY=($(compgen -f -- {cur}))"
    if kind.startswith("words:"):
        return f"COMPREPLY=($(compgen -W {shlex.quote(kind[6:])} -- {cur}))"
    return "COMPREPLY=()"


def bash_script(parser: argparse.ArgumentParser) -> str:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    top_options, top_values = _words(parser._actions)  # noqa: SLF001
    commands = list(sub.choices)
    lines = [
        "# bash completion for memtop (made by `memtop completion bash`; zsh: `memtop completion zsh`)",
        "_memtop_pids() {",
        "    local p",
        "    for p in /proc/[0-9]*; do printf '%s\\n' \"${p#/proc/}\"; done",
        "}",
        "_memtop() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" cmd="" i',
        "    COMPREPLY=()",
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        f"        case \"${{COMP_WORDS[i]}}\" in {'|'.join(commands)}) cmd=\"${{COMP_WORDS[i]}}\"; break ;; esac",
        "    done",
        '    case "$cmd:$prev" in',
    ]
    for option, kind in top_values:
        lines.append(f"        :{option}) {_reply(kind)}; return ;;")
    for name, subparser in sub.choices.items():
        _, values = _words(subparser._actions)  # noqa: SLF001
        for option, kind in values:
            lines.append(f"        {name}:{option}) {_reply(kind)}; return ;;")
    lines += ["    esac", '    case "$cmd" in']
    lines.append(f'        "") {_reply("words:" + " ".join(top_options + commands))} ;;')
    for name, subparser in sub.choices.items():
        options, _ = _words(subparser._actions)  # noqa: SLF001
        positional = _positional(subparser._actions)  # noqa: SLF001
        lines.append(f"        {name})")
        lines.append(f'            if [[ "$cur" == -* ]]; then {_reply("words:" + " ".join(options))}; '
                     f"else {_reply(positional)}; fi ;;")
    lines += ["    esac", "}", "complete -o default -F _memtop memtop", ""]
    return "\n".join(lines)


def zsh_script(parser: argparse.ArgumentParser) -> str:
    return ("#compdef memtop\n"
            "# zsh completion for memtop (made by `memtop completion zsh`): the bash script, through zsh's\n"
            "# bashcompinit (which provides complete and compgen).\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(parser))


def run(args) -> int:
    parser = args.parser  # memtop's whole parser (memtop/cli.py hands it to every command)
    sys.stdout.write(bash_script(parser) if args.shell == "bash" else zsh_script(parser))
    return 0
