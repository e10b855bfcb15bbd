"""The Textual app: the only package of memtop that imports textual."""
