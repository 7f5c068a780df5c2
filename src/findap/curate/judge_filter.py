"""LLM-judge text filter: a 0-5 additive score for financial educational value, answered as JSON.

The judge is any findap engine (local hf model, OpenAI-compatible endpoint, vllm). Calls go through
`findap.eval.judge.run_judge` (greedy first, then bounded sampled retries for unparseable answers) and
`parse_justified_score` (JSON first, regex fallbacks). Nothing here raises on bad judge text: a text whose
answer never parses gets score None, is counted as a failure, and is kept or dropped as the recipe says.

Labels are appended to a JSONL checkpoint batch by batch, so a killed run re-judges at most one batch.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

from findap.curate.config import JudgeConfig
from findap.curate.records import example_text
from findap.engines.base import Engine
from findap.eval.judge import JudgeSettings, parse_justified_score, run_judge
from findap.io import append_jsonl, read_jsonl_tolerant

JUDGE_PROMPT = """You are rating a text for how much it would help someone learn finance.
Start from 0 and add one point for each statement that holds:
1. It is about finance, economics, markets, accounting, investing or business results.
2. It is coherent and what it states is factually sound.
3. It has educational value: a reader learns a fact, a method, a rule or how a result came about.
4. It explains financial concepts clearly enough for a student to follow.
5. It is excellent material for studying finance, with little that is off-topic or filler.

Text:
<<<
{text}
>>>

Answer with a JSON object only, the justification first:
{{"justification": "<one or two sentences>", "score": <integer 0-5>}}"""


def judge_prompt(text: str, max_chars: int) -> list[dict]:
    cut = text if len(text) <= max_chars else text[:max_chars] + " [...]"
    return [{"role": "user", "content": JUDGE_PROMPT.format(text=cut)}]


PLACEHOLDER = "<one or two sentences>"


def parse_score(output: str) -> tuple[int, str] | None:
    """(score 0-5, justification) or None. Fractional scores are rounded: the scale is additive points.

    An answer that copies the prompt's answer template (justification left as the placeholder) is a failure: small
    judges do that and then pick a number at random.
    """
    parsed = parse_justified_score(output, 0, 5)
    if parsed.score is None or parsed.justification.strip() == PLACEHOLDER:
        return None
    return int(round(parsed.score)), parsed.justification


def judge_examples(
    engine: Engine,
    examples: Sequence[dict],
    cfg: JudgeConfig,
    checkpoint: Path | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, dict]:
    """{id: {"score": int | None, "justification", "attempts"}} for every example; resumes from `checkpoint`."""
    labels = {row["id"]: row for row in read_jsonl_tolerant(checkpoint)} if checkpoint else {}
    todo = [ex for ex in examples if ex["id"] not in labels]
    settings = JudgeSettings(max_new_tokens=cfg.max_new_tokens, retries=cfg.retries, seed=seed)
    for start in range(0, len(todo), cfg.engine.batch_size):  # one engine call per checkpointed batch
        batch = todo[start : start + cfg.engine.batch_size]
        prompts = [judge_prompt(example_text(ex), cfg.max_chars) for ex in batch]
        for ex, judgement in zip(batch, run_judge(engine, prompts, parse_score, settings, progress=progress)):
            score, why = judgement.value if judgement.ok else (None, "")
            row = {"id": ex["id"], "score": score, "justification": why[:500], "attempts": judgement.attempts,
                   "last_output": judgement.outputs[-1][:300] if judgement.outputs else ""}
            labels[ex["id"]] = row
            if checkpoint:
                append_jsonl(checkpoint, row)
    return {ex["id"]: labels[ex["id"]] for ex in examples}


def judge_stats(labels: dict[str, dict]) -> dict:
    scores = [row["score"] for row in labels.values() if row["score"] is not None]
    return {
        "judged": len(labels),
        "parsed": len(scores),
        "failures": len(labels) - len(scores),
        "attempts": sum(row["attempts"] for row in labels.values()),
        "histogram": {str(k): v for k, v in sorted(Counter(scores).items())},
        "mean_score": round(sum(scores) / len(scores), 3) if scores else None,
    }
