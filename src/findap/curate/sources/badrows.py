"""Malformed source rows: reported with file:line and field, then skipped or fatal as the recipe says."""
from __future__ import annotations

from dataclasses import dataclass, field


class SourceError(ValueError):
    """A source row could not be converted (message: `file:line: field 'x': problem`)."""


@dataclass
class BadRows:
    policy: str = "skip"  # "skip" | "fail"
    max_bad: int = 100
    rows: list[str] = field(default_factory=list)

    def report(self, path, line: int | str, fld: str, problem: str) -> None:
        """`line` is a 1-based line number, or e.g. "item 12" for an element of a JSON list."""
        message = f"{path}:{line}: field '{fld}': {problem}"
        if self.policy == "fail":
            raise SourceError(message)
        self.rows.append(message)
        if len(self.rows) > self.max_bad:
            raise SourceError(f"more than {self.max_bad} malformed rows; last: {message}")
