"""Content problems (sequence and template files) reported to marketers as file:line, what, and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class ContentProblem:
    path: Path
    line: int
    message: str
    fix: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        location = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{location}: {self.severity.value}: {self.message}. Fix: {self.fix}"


class ContentInvalid(Exception):
    """Content failed validation; the whole load is refused and the previous version keeps sending."""

    def __init__(self, problems: list[ContentProblem]) -> None:
        self.problems = [p for p in problems if p.severity is Severity.ERROR]
        self.warnings = [p for p in problems if p.severity is Severity.WARNING]
        super().__init__("\n".join(str(p) for p in self.problems))
