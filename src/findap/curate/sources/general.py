"""Converters for general and math data: GSM8K, Self-Instruct seeds, PromptSource/T0 files.

The `*_text` variants render the same instruction data as plain "verifiable" CPT text (the paper's general CPT
half), the others keep it as conversations (general IT).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from findap.curate.sources.badrows import text_lines
from findap.curate.sources.context import ConvertContext
from findap.datasets import RowError
from findap.datasets.gsm8k import split_answer


def _jsonl(path: Path, ctx: ConvertContext, required: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    for number, line in text_lines(path, ctx.bad):  # a line that is not UTF-8 is a bad row (on_bad_row)
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            ctx.bad.report(path, number, "json", e.msg)
            continue
        if not isinstance(row, dict):
            ctx.bad.report(path, number, "json", f"expected a JSON object, got {type(row).__name__}")
            continue
        missing = [k for k in required if not isinstance(row.get(k), str)]
        if missing:
            ctx.bad.report(path, number, missing[0], "missing or not a string")
            continue
        yield number, row


def gsm8k_solution(answer: str) -> str:
    """GSM8K answer -> readable worked solution ending in 'The answer is N.' (RowError without '#### N')."""
    solution = split_answer(answer)
    return f"{solution.steps}\nThe answer is {solution.final}."


def gsm8k(path: Path, ctx: ConvertContext) -> Iterator[dict]:
    for number, row in _jsonl(path, ctx, ("question", "answer")):
        try:
            solution = gsm8k_solution(row["answer"])
        except RowError as err:
            ctx.bad.report(path, number, err.field, err.problem)
            continue
        if ctx.for_training("gsm8k", row["question"]):  # FinEval's gsm8k task scores the reserved questions
            yield ctx.it(row["question"], row["question"], solution)


def _self_instruct_rows(path: Path, ctx: ConvertContext) -> Iterator[tuple[str, str, str]]:
    for number, row in _jsonl(path, ctx, ("instruction",)):
        instances = row.get("instances")
        if not isinstance(instances, list) or not instances:
            ctx.bad.report(path, number, "instances", "expected a non-empty list")
            continue
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict) or not isinstance(instance.get("output"), str):
                ctx.bad.report(path, number, f"instances[{i}].output", "missing or not a string")
                continue
            key = f"{row.get('id', number)}/{i}"
            yield key, row["instruction"].strip(), (instance.get("input") or "").strip(), instance["output"]


def self_instruct(path: Path, ctx: ConvertContext) -> Iterator[dict]:
    for key, instruction, task_input, output in _self_instruct_rows(path, ctx):
        prompt = f"{instruction}\n\n{task_input}" if task_input else instruction
        yield ctx.it(key, prompt, output)


def self_instruct_text(path: Path, ctx: ConvertContext) -> Iterator[dict]:
    for key, instruction, task_input, output in _self_instruct_rows(path, ctx):
        parts = [f"Task: {instruction}"] + ([f"Input: {task_input}"] if task_input else []) + [f"Output: {output}"]
        yield ctx.cpt(key, "\n".join(parts))


def _promptsource_rows(root: Path, ctx: ConvertContext) -> Iterator[tuple[str, str, str]]:
    files = sorted(root.glob("*.jsonl")) if root.is_dir() else [root]
    for path in files:
        for number, row in _jsonl(path, ctx, ("prompt", "completion")):
            completion = row["completion"].replace("<|endoftext|>", "").strip()
            if not completion:  # well-formed but unusable (all TREC templates in the T0 dump): counted, not "bad"
                ctx.empty += 1
                continue
            yield f"{path.stem}:{number}", row["prompt"].strip(), completion


def promptsource(root: Path, ctx: ConvertContext) -> Iterator[dict]:
    for key, prompt, completion in _promptsource_rows(root, ctx):
        yield ctx.it(key, prompt, completion)


def promptsource_text(root: Path, ctx: ConvertContext) -> Iterator[dict]:
    for key, prompt, completion in _promptsource_rows(root, ctx):
        yield ctx.cpt(key, f"{prompt}\n{completion}")
