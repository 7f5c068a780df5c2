"""Loaders for tabular records (FinBen's credit-risk sets): headerless CSV with named columns, and ARFF.

A row becomes a classification doc whose `text` describes it attribute by attribute, one sentence each
("The state of credit balance is 3000."), the form FinBen's hub configs use for tabular rows. The sentence
pattern and the attribute descriptions in the task YAMLs are our wording; the column names and label codings
come from each dataset's readme (or the ARFF header). Missing values ('?' in ARFF, an empty CSV cell) read
"unknown", so a row is never silently shortened.

Splits: where the dataset ships its own train/test files, test rows are the scored rows (the task's `carve`
divides them into dev and unseen) and train rows are the few-shot pool. Where it does not (the Polish ARFF
years), `fractions` gives the loader a seeded train/dev/unseen split of its own, so the task's carve stays free
for the hub config (whose test split must not be cut into a few-shot pool). In both cases a pool row identical
to a scored row is dropped: a few-shot prompt must never show the item it scores, answer included.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from findap.eval.loaders import _path, assign_seeded_split
from findap.eval.registry import register_loader
from findap.io import DataError

# Our wording of one attribute; FinBen's hub text states tabular attributes the same way.
ROW_SENTENCE = "The state of {attribute} is {value}."
MISSING_TEXT = "unknown"
MISSING_TOKENS = ("?", "")


def describe_row(values: dict[str, str | None], describe: dict[str, str]) -> str:
    """One sentence per attribute, in column order; a missing value reads 'unknown'."""
    return " ".join(ROW_SENTENCE.format(attribute=describe.get(name, name),
                                        value=MISSING_TEXT if value is None else value)
                    for name, value in values.items())


def _check_describe(file, columns: list[str], label: str, describe: dict | None) -> dict[str, str]:
    """The attribute descriptions must name exactly the non-label columns: a renamed column in the file or
    the YAML fails here rather than showing a raw column name (or nothing) in every prompt."""
    attributes = [c for c in columns if c != label]
    if describe is None:
        return {c: c for c in attributes}
    unknown = [k for k in describe if k not in attributes]
    missing = [c for c in attributes if c not in describe]
    if unknown or missing:
        raise DataError(file, None, "describe", f"descriptions must cover the columns {attributes}; "
                        f"unknown: {unknown}, undescribed: {missing}")
    return {c: str(describe[c]) for c in attributes}


def _label(file, line, label: str, raw: str | None, label_map: dict, spec) -> str:
    mapping = {str(k): str(v) for k, v in label_map.items()}
    if raw is None or raw not in mapping:
        raise DataError(file, line, label, f"{raw!r} is not one of {sorted(mapping)}")
    gold = mapping[raw]
    if spec.labels and gold not in spec.labels:
        raise ValueError(f"task {spec.name}: label_map maps {raw!r} to {gold!r}, which is not one of {spec.labels}")
    return gold


def _doc(file: Path, line: int, row: dict[str, str | None], label: str, label_map: dict, describe: dict,
         spec) -> dict:
    gold = _label(file, line, label, row[label], label_map, spec)
    values = {name: row[name] for name in describe}
    return {"id": f"{file.stem}-{line}", "text": describe_row(values, describe), "gold": gold}


def _drop_pool_copies(docs: list[dict]) -> list[dict]:
    scored = {d["text"] for d in docs if d.get("split") != "train"}
    return [d for d in docs if d.get("split") != "train" or d["text"] not in scored]


# ---- headerless CSV -----------------------------------------------------------------------------------------
def _csv_rows(file: Path, columns: list[str]) -> list[tuple[int, dict[str, str | None]]]:
    if not file.exists():
        raise DataError(file, None, None, "file not found (set FINDAP_DATA to the data directory)")
    rows = []
    with open(file, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        start = 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not cells:
                continue
            if len(cells) != len(columns):
                raise DataError(file, line, None, f"expected {len(columns)} columns {columns}, got {len(cells)}")
            rows.append((line, {c: None if v.strip() in MISSING_TOKENS else v.strip() for c, v in zip(columns, cells)}))
    return rows


@register_loader("tabular_csv")
def load_tabular_csv(root, spec, test: str, columns: list, label: str, label_map: dict, train: str | None = None,
                     describe: dict | None = None) -> list[dict]:
    """Headerless CSV files: `columns` names the cells in file order, `label` the label column, `label_map`
    its raw values -> task labels, `describe` each other column's wording. Rows of `test` are scored (carved
    into dev / unseen by the task); rows of `train` are the few-shot pool."""
    columns = [str(c) for c in columns]
    if label not in columns:
        raise ValueError(f"task {spec.name}: label column {label!r} is not one of {columns}")
    test_file = _path(root, test)
    wording = _check_describe(test_file, columns, label, describe)
    docs = [_doc(test_file, line, row, label, label_map, wording, spec) for line, row in _csv_rows(test_file, columns)]
    if train:
        train_file = _path(root, train)
        for line, row in _csv_rows(train_file, columns):
            docs.append({**_doc(train_file, line, row, label, label_map, wording, spec), "split": "train"})
    return _drop_pool_copies(docs)


# ---- ARFF ---------------------------------------------------------------------------------------------------
_ATTRIBUTE = re.compile(r"@attribute\s+('(?:[^']*)'|\"(?:[^\"]*)\"|\S+)\s+(.+?)\s*$", re.I)


def read_arff(file: Path) -> tuple[list[tuple[str, list[str] | str]], list[tuple[int, list[str | None]]]]:
    """([(attribute, type or nominal values)], [(line, values)]) of a dense ARFF file; '?' -> None.
    Numeric cells must parse as numbers and nominal cells must be one of the declared values."""
    if not file.exists():
        raise DataError(file, None, None, "file not found (set FINDAP_DATA to the data directory)")
    attributes: list[tuple[str, list[str] | str]] = []
    rows: list[tuple[int, list[str | None]]] = []
    in_data = False
    for lineno, raw in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith("%"):
            continue
        if not in_data:
            low = text.lower()
            if low.startswith("@attribute"):
                m = _ATTRIBUTE.match(text)
                if not m:
                    raise DataError(file, lineno, None, f"cannot read the attribute declaration {text[:80]!r}")
                name, kind = m.group(1).strip("'\""), m.group(2).strip()
                if kind.startswith("{"):
                    if not kind.endswith("}"):
                        raise DataError(file, lineno, name, f"unterminated nominal values {kind[:80]!r}")
                    kind = [v.strip().strip("'\"") for v in kind[1:-1].split(",")]
                else:
                    kind = kind.lower()
                attributes.append((name, kind))
            elif low.startswith("@data"):
                in_data = True
            elif not low.startswith("@relation"):
                raise DataError(file, lineno, None, f"unexpected header line {text[:80]!r}")
            continue
        if text.startswith("{"):
            raise DataError(file, lineno, None, "sparse ARFF rows are not supported")
        cells = next(csv.reader([text], quotechar="'", skipinitialspace=True))
        if len(cells) != len(attributes):
            raise DataError(file, lineno, None, f"expected {len(attributes)} values, got {len(cells)}")
        values: list[str | None] = []
        for (name, kind), cell in zip(attributes, cells):
            cell = cell.strip()
            if cell == "?":
                values.append(None)
                continue
            if isinstance(kind, list) and cell not in kind:
                raise DataError(file, lineno, name, f"{cell!r} is not one of {kind}")
            if kind in ("numeric", "real", "integer"):
                try:
                    float(cell)
                except ValueError:
                    raise DataError(file, lineno, name, f"{cell!r} is not a number") from None
            values.append(cell)
        rows.append((lineno, values))
    if not in_data:
        raise DataError(file, None, None, "no @data section")
    return attributes, rows


@register_loader("tabular_arff")
def load_tabular_arff(root, spec, paths: list, label: str, label_map: dict, describe: dict | None = None,
                      fractions: list | None = None, seed: int = 1234) -> list[dict]:
    """ARFF files with the same attributes (e.g. several years of one survey): `label` names the class
    attribute, `label_map` its values -> task labels, `describe` each other attribute's wording. `fractions`
    (train, dev, unseen) gives the rows a seeded split here; without it the task's carve divides them."""
    docs: list[dict] = []
    first: list[str] | None = None
    wording: dict[str, str] = {}
    for path in paths:
        file = _path(root, path)
        attributes, rows = read_arff(file)
        names = [name for name, _ in attributes]
        if first is None:
            if label not in names:
                raise DataError(file, None, label, f"no such attribute; the file declares {names}")
            first, wording = names, _check_describe(file, names, label, describe)
        elif names != first:
            raise DataError(file, None, None, f"attributes differ from {paths[0]}: {names} vs {first}")
        for line, values in rows:
            docs.append(_doc(file, line, dict(zip(names, values)), label, label_map, wording, spec))
    if fractions is not None:
        docs = assign_seeded_split(docs, fractions, seed)
    return _drop_pool_copies(docs)
