"""Placeholder: not read yet."""

from memtop.model.runtime import RuntimeReport


def cpython_report(target):
    return RuntimeReport(target.runtime_kind, target.runtime_version, "unsupported", "not read yet", None)
