"""Plain-words diagnoses derived from models."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Finding:
    """One diagnosis: what is the case, with numbers, and the next step."""

    severity: Severity
    text: str
    next_step: str | None = None

    def as_json(self) -> dict:
        return {"severity": self.severity.value, "text": self.text, "next_step": self.next_step}
