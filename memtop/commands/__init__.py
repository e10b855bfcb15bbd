"""One module per subcommand of ``memtop``.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
(exit status: 0 success, 1 failure, 2 usage error). To add a command, write the module and list
it in ``COMMAND_MODULES``.
"""

COMMAND_MODULES = [
    "memtop.commands.snapshot",
    "memtop.commands.trim",
    "memtop.commands.evict",
    "memtop.commands.drop_caches",
    "memtop.commands.explain",
]


class CliError(Exception):
    """A failure the user should read in one line (``memtop: ...``, exit status 1)."""
