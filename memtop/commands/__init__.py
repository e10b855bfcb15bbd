"""One module per subcommand of ``memtop``.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
(exit status: 0 success, 1 failure, 2 usage error). To add a command, write the module and list
it in ``COMMAND_MODULES``.
"""

COMMAND_MODULES = [
    "memtop.commands.snapshot",
    "memtop.commands.cache",
    "memtop.commands.trim",
    "memtop.commands.evict",
    "memtop.commands.drop_caches",
    "memtop.commands.explain",
    "memtop.commands.export",
    "memtop.commands.record",
    "memtop.commands.replay",
    "memtop.commands.guard",
    "memtop.commands.help",
    "memtop.commands.completion",
]


class CliError(Exception):
    """A failure the user should read in one line (``memtop: ...``, exit status 1)."""


def pid_arg(text: str) -> int:
    """argparse type of a PID: a positive integer (a bad one is a usage error, exit 2)."""
    import argparse

    try:
        pid = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a PID: {text!r} is not an integer") from None
    if pid <= 0:
        raise argparse.ArgumentTypeError(f"not a PID: {pid} (PIDs are positive integers)")
    return pid


def positive_int(text: str) -> int:
    """argparse type of a count: a whole number from 1 (a bad one is a usage error, exit 2)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def interval_seconds(text: str) -> float:
    """argparse type of a refresh interval: seconds from 0.5 (the sampler's floor) to an hour."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (0.5 <= value <= 3600):  # also rejects nan and inf
        raise argparse.ArgumentTypeError(f"must be between 0.5 and 3600 seconds, not {text}")
    return value
