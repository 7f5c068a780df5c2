"""Load a demo dataset (or a user's file in the same format) and check every row against its schema.

    rows = load_demo("sentiment")                      # the shipped file
    rows = load_demo("sentiment", path="my_news.jsonl")  # your own data, same fields, same checks

Errors are `findap.io.DataError`s naming file, line and field.
"""
from __future__ import annotations

import os
import re
from importlib import resources
from pathlib import Path

from findap.demo.catalog import DemoSet, demo_set
from findap.io import DataError, read_records

ANSWER_LINE = re.compile(r"^Answer: (-?\d+(?:\.\d+)?)$")


def data_path(name: str) -> Path:
    """Where the shipped file of demo dataset `name` lives (inside the installed package)."""
    return Path(str(resources.files("findap.demo") / "data" / demo_set(name).file))


def load_demo(name: str, path: str | os.PathLike | None = None) -> list[dict]:
    """All rows of demo dataset `name`, validated. `path` reads your own file in the same format instead."""
    spec = demo_set(name)
    file = Path(path) if path is not None else data_path(name)
    rows = read_records(file, fmt="jsonl", keep_line=True)  # keeps each row's line for the checks below
    if not rows:
        raise DataError(file, None, None, f"the file is empty: a {name} file needs at least one row")
    for row in rows:
        _check_row(spec, row, file, row["__line__"])
    _check_unique(spec, rows, file)
    return rows


def _check_row(spec: DemoSet, row: dict, file: Path, line: int) -> None:
    for name, kind in spec.fields.items():
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(file, line, name, "missing or empty")
        # JSON has no int/float distinction for whole numbers: accept an int where a float is expected.
        ok = isinstance(value, kind) or (kind is float and isinstance(value, int))
        if not ok or (kind is int and isinstance(value, bool)):
            raise DataError(file, line, name, f"expected {kind.__name__}, got {type(value).__name__}")
    if spec.labels is not None and row["label"] not in spec.labels:
        raise DataError(file, line, "label", f"{row['label']!r} is not one of {list(spec.labels)}")
    if spec.name == "concepts_mc":
        choices = row["choices"]
        if len(choices) != 4 or not all(isinstance(c, str) and c.strip() for c in choices):
            raise DataError(file, line, "choices", "expected 4 non-empty strings")
        if len(set(choices)) != 4:
            raise DataError(file, line, "choices", "two choices are the same")
        if not 0 <= row["gold"] < 4:
            raise DataError(file, line, "gold", f"{row['gold']} is not an index into 4 choices (0-3)")
    if spec.name == "exercises":
        match = ANSWER_LINE.match(row["solution"].strip().splitlines()[-1])
        if match is None:
            raise DataError(file, line, "solution", "last line must be 'Answer: <number>'")
        if abs(float(match.group(1)) - float(row["answer"])) > 1e-9:
            raise DataError(file, line, "solution", f"final line says {match.group(1)}, answer is {row['answer']}")


def _check_unique(spec: DemoSet, rows: list[dict], file: Path) -> None:
    seen_ids: dict[str, int] = {}
    seen_text: dict[str, int] = {}
    for row in rows:
        line = row.pop("__line__")
        if row["id"] in seen_ids:
            raise DataError(file, line, "id", f"duplicate id {row['id']!r} (first on line {seen_ids[row['id']]})")
        seen_ids[row["id"]] = line
        text = " ".join(row[spec.text_field].lower().split())
        if text in seen_text:
            raise DataError(file, line, spec.text_field, f"duplicate of line {seen_text[text]}")
        seen_text[text] = line
