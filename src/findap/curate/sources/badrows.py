"""Malformed source rows: reported with file:line and field, then skipped or fatal as the recipe says."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator


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


def text_lines(path, bad: BadRows) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) of a UTF-8 text file. A line that is not UTF-8 is a bad row like any
    other: reported with its line and byte offset, then skipped or fatal as `on_bad_row` says."""
    from findap.io import not_utf8

    offset = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad.report(path, number, "encoding", not_utf8(path, number, raw, err, base=offset).problem)
                continue
            finally:
                offset += len(raw)
            yield number, text.removesuffix("\n").removesuffix("\r")


def file_text(path, bad: BadRows, fld: str) -> str | None:
    """A whole UTF-8 text file (a transcript, a JSON document), or None when it is not UTF-8 (reported as a bad row
    naming the line and byte offset, then skipped or fatal as `on_bad_row` says)."""
    from findap.io import DataError, read_text

    try:
        return read_text(path)
    except DataError as err:
        bad.report(path, err.line, fld, err.problem)
        return None
