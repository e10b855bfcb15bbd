"""memtop: why is this memory here? Layered, live memory diagnosis for Linux."""

__version__ = "0.1.0"
