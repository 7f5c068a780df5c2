"""Generic records (`findap.io.read_records`: jsonl/json/csv/parquet/xlsx or `hf:<dataset-id>`) -> examples.

For users with internet: any Hugging Face dataset with a text column (CPT) or prompt/response columns (IT).
Field names come from the source's recipe entry (text_field, prompt_field, response_field).
"""
from __future__ import annotations

from typing import Iterator

from findap.curate.sources.context import ConvertContext


def _rows(location: str, ctx: ConvertContext, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    from findap.io import DataError, read_records

    try:
        rows = read_records(location)
    except DataError as e:
        ctx.bad.report(e.file, e.line, e.field or "row", e.problem)
        return
    for index, row in enumerate(rows, start=1):
        missing = [k for k in required if not isinstance(row.get(k), str) or not row[k].strip()]
        if missing:
            ctx.bad.report(location, f"row {index}", missing[0], "missing, empty or not a string")
            continue
        yield index, row


def records_text(location, ctx: ConvertContext) -> Iterator[dict]:
    for index, row in _rows(str(location), ctx, (ctx.text_field,)):
        yield ctx.cpt(str(row.get("id", index)), row[ctx.text_field])


def records_chat(location, ctx: ConvertContext) -> Iterator[dict]:
    for index, row in _rows(str(location), ctx, (ctx.prompt_field, ctx.response_field)):
        yield ctx.it(str(row.get("id", index)), row[ctx.prompt_field], row[ctx.response_field])
