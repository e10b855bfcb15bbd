"""Text renderings of model records shared by the TUI and the text outputs."""
