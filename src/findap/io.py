"""One reader for every record format findap meets, with errors that name file, line and field.

`read_records` returns a list of dicts whatever the source: JSONL, JSON (a list, or a dict holding one list),
CSV/TSV, parquet, xlsx, or a Hugging Face dataset (`hf:<id>[:<config>][@<split>]`, or a local directory saved
with `datasets.save_to_disk`). Line numbers are 1-based as an editor shows them (for CSV the header is line 1,
for xlsx the header is row 1; for JSON lists the element index is given instead).

Writers are atomic: a temp file in the same directory, fsync, then `os.replace`, so a kill never leaves a
half-written file behind.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".parquet", ".xlsx"}
BOM = "\ufeff"  # editors on Windows start UTF-8 files with it; it is not part of the first value


class DataError(ValueError):
    """A bad input row. Message format: `file:line: field 'x': problem`."""

    def __init__(self, file: str | os.PathLike, line: int | str | None, field: str | None, problem: str):
        self.file, self.line, self.field, self.problem = str(file), line, field, problem
        where = f"{file}:{line}" if line is not None else f"{file}"
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {problem}")


def read_records(
    source: str | os.PathLike,
    *,
    fmt: str | None = None,
    required: Sequence[str] = (),
    limit: int | None = None,
    keep_line: bool = False,
) -> list[dict[str, Any]]:
    """Read every record of `source`; fail with a DataError on the first malformed row or missing field.

    `keep_line=True` leaves each record's location in `record["__line__"]` (the file line for jsonl/csv/tsv/xlsx,
    "item i" otherwise), for callers that check more fields and must name where a bad one is.
    """
    src = str(source)
    if src.startswith("hf:"):
        return _check_required(_read_hf(src[3:], limit), src, required, line_offset=0, index_word="row",
                               keep_line=keep_line)
    path = Path(src).expanduser()
    if not path.exists():
        raise DataError(path, None, None, "file not found")
    kind = (fmt or (path.suffix.lower() if path.is_file() else "hf-disk")).lstrip(".")
    reader = {
        "jsonl": _read_jsonl,
        "json": _read_json,
        "csv": lambda p, n: _read_csv(p, n, ","),
        "tsv": lambda p, n: _read_csv(p, n, "\t"),
        "parquet": _read_parquet,
        "xlsx": _read_xlsx,
        "hf-disk": _read_hf_disk,
    }.get(kind)
    if reader is None:
        raise DataError(path, None, None, f"unknown format '{kind}' (known: {sorted(SUFFIXES)} or hf:<id>)")
    rows = reader(path, limit)
    offset = {"csv": 1, "tsv": 1, "xlsx": 1}.get(kind, 0)  # header line
    word = "item" if kind in ("json", "parquet", "hf-disk") else "line"
    return _check_required(rows, path, required, line_offset=offset, index_word=word, keep_line=keep_line)


def _check_required(rows, file, required, *, line_offset: int, index_word: str, keep_line: bool = False):
    for i, row in enumerate(rows):
        # JSONL rows carry their own line number (blank lines are skipped, so index != line)
        line = row.pop("__line__", None) if isinstance(row, dict) else None
        where = _where(i, line, line_offset, index_word)
        if not isinstance(row, dict):
            raise DataError(file, where, None, f"expected an object, got {type(row).__name__}")
        for name in required:
            value = row.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise DataError(file, where, name, "missing or empty")
        if keep_line:
            row["__line__"] = where
    return rows


def _where(i: int, line: int | None, offset: int, word: str):
    if line is not None:
        return line
    return i + 1 + offset if word == "line" else f"{word} {i}"


def read_text(path: str | os.PathLike) -> str:
    """A text file's content; bytes that are not UTF-8 raise a DataError naming the line and the byte offset."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8").removeprefix(BOM)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise not_utf8(path, line, data, e) from None


def not_utf8(path: Path, line: int, data: bytes, err: UnicodeDecodeError, base: int = 0) -> DataError:
    """`err` is from decoding `data`, which starts `base` bytes into the file."""
    column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    return DataError(path, line, None, f"not UTF-8 text: byte 0x{data[err.start]:02x} at byte offset "
                     f"{base + err.start} (column {column}); save the file as UTF-8")


def iter_lines(path: str | os.PathLike):
    """(line number, text) of a UTF-8 text file, line by line (newline kept), without reading it whole; a line that
    is not UTF-8 raises a DataError naming the line and the byte offset."""
    path = Path(path)
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise not_utf8(path, lineno, raw, e, base=offset) from None
            offset += len(raw)
            yield lineno, (text.removeprefix(BOM) if lineno == 1 else text).replace("\r\n", "\n")


def _read_jsonl(path: Path, limit: int | None):
    rows = []
    for lineno, line in iter_lines(path):  # line by line: a bad byte is named at its line; `limit` stops early
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, lineno, None, f"invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise DataError(path, lineno, None, f"expected a JSON object, got {type(row).__name__}")
        row["__line__"] = lineno
        rows.append(row)
        if limit and len(rows) >= limit:
            break
    return rows


def _read_json(path: Path, limit: int | None):
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"invalid JSON ({e.msg} at column {e.colno})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(path, None, None, "expected a JSON list of records (or an object holding exactly one list)")
        data = lists[0]
    if not isinstance(data, list):
        raise DataError(path, None, None, f"expected a JSON list, got {type(data).__name__}")
    return data[:limit] if limit else data


def _read_csv(path: Path, limit: int | None, delimiter: str):
    rows = []
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        for row in reader:
            if None in row:  # more cells than header columns
                raise DataError(path, reader.line_num, None, f"{len(row) - 1 + len(row[None])} cells but {len(reader.fieldnames)} columns in the header")
            if any(v is None for v in row.values()):
                missing = [k for k, v in row.items() if v is None][0]
                raise DataError(path, reader.line_num, missing, "row has fewer cells than the header")
            row["__line__"] = reader.line_num
            rows.append(row)
            if limit and len(rows) >= limit:
                break
    return rows


def _read_parquet(path: Path, limit: int | None):
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if limit:
        table = table.slice(0, limit)
    return table.to_pylist()


def _read_xlsx(path: Path, limit: int | None):
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    ws = wb.worksheets[0]
    it = ws.iter_rows(values_only=True)
    header = next(it, None)
    if header is None:
        raise DataError(path, 1, None, "empty sheet: no header row")
    names = [str(h) if h is not None else f"column{i}" for i, h in enumerate(header)]
    rows = []
    for rowno, values in enumerate(it, 2):
        if all(v is None for v in values):
            continue
        row = dict(zip(names, values))
        row["__line__"] = rowno
        rows.append(row)
        if limit and len(rows) >= limit:
            break
    wb.close()
    return rows


def _read_hf_disk(path: Path, limit: int | None):
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        ds = ds[next(iter(ds))]
    if limit:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.to_list()


def _read_hf(spec: str, limit: int | None):
    """`id[:config][@split]`, e.g. `Salesforce/FinEval:FPB@test`. Needs the hub (or its local cache)."""
    import datasets

    spec, _, split = spec.partition("@")
    name, _, config = spec.partition(":")
    ds = datasets.load_dataset(name, config or None, split=split or "test")
    if limit:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.to_list()


# ------------------------------------------------------------------------------------------------ writers
def _atomic_write(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic_write(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def write_parquet(path: str | os.PathLike, rows: Sequence[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(rows)
    # from_pylist takes the column set from the first row: a mixed cpt/it shard would silently drop `text` or
    # `messages`. Give every row every column (None where absent).
    columns = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in rows])

    def write(f):
        pq.write_table(table, f)

    return _atomic_write(path, write)


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one record and flush it to disk: for logs and resumable outputs (a partial last line is skipped
    by `read_jsonl_tolerant`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl_tolerant(path: str | os.PathLike) -> list[dict]:
    """Read an append-only JSONL written by `append_jsonl`, dropping a torn last line left by a kill."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    lines = read_text(path).splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # torn final write from a killed process
            raise DataError(path, i + 1, None, "invalid JSON in an append-only log") from None
    return rows
