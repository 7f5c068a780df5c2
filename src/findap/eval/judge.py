"""LLM-as-judge over any engine: MT-bench 1-10 grading, reference-based correctness, and the parsers.

The judge is any `findap.engines.base.Engine`: a local model (hf) or an OpenAI-compatible endpoint whose key comes
from an environment variable (see `EngineSpec.api_key_env`). Every judge call goes through `run_judge`:

    attempt 0: greedy (temperature 0)           -> parse -> ok? done
    attempt k: sampled (retry_temperature, seed=seed+k), only for the items that failed to parse
    after 1 + retries attempts: value None, counted as a parse failure and reported as a rate; nothing raises.

Retries change the temperature and seed on purpose: a greedy judge that rambled once rambles identically again,
and an engine's request cache (keyed on prompt + settings, never used for sampling) would return the same bad text.

The parsers (`parse_rating`, `parse_verdict`, `parse_justified_score`) are plain functions on strings so the
curation filter (JSON `{"justification": ..., "score": N}`, 0-5) and the distillation judges reuse them.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Generic, Literal, Sequence, TypeVar

from findap.engines.base import Engine, GenerationRequest, Prompt
from findap.eval import judge_prompts
from findap.io import DataError, write_json

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------

_NUM = r"(-?\d+(?:\.\d+)?)"
# Reasoning models wrap their thoughts; a number inside the thoughts is not the verdict.
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S | re.I)
_DOUBLE_BRACKET = re.compile(r"\[\[\s*(?:(?:rating|score)\s*[:=]?\s*)?" + _NUM + r"\s*(?:/\s*\d+)?\s*\]\]", re.I)
_JSON_SCORE_KEY = re.compile(r"[\"'](?:score|rating)[\"']\s*:\s*[\"']?" + _NUM, re.I)  # quoted key: JSON
_LABELLED = re.compile(
    r"\b(?:final\s+)?(?:rating|score|grade)\b\s*(?:is|of|=|:|-)?\s*[:=]?\s*\**\s*\[?\s*" + _NUM
    + r"\s*\]?(?:\s*(?:/|out\s+of)\s*(\d+))?",
    re.I,
)
_OUT_OF = re.compile(_NUM + r"\s*(?:/|out\s+of)\s*(\d+)\b", re.I)


def _strip_thoughts(text: str) -> str:
    return _THINK_BLOCK.sub(" ", text or "")


def _in_range(value: float, low: float, high: float) -> bool:
    return math.isfinite(value) and low <= value <= high


def _last_valid(matches: list[re.Match], low: float, high: float, scale: float | None = None) -> float | None:
    """The last match whose number is in range (judges often restate the scale before the verdict)."""
    for m in reversed(matches):
        denom = m.group(2) if m.re.groups >= 2 else None
        if denom is not None and scale is not None and float(denom) != scale:
            continue
        value = float(m.group(1))
        if _in_range(value, low, high):
            return value
    return None


def _json_objects(text: str) -> list[dict]:
    """Every top-level JSON object embedded in `text` (fenced or bare), in order of appearance."""
    objects, decoder, i = [], json.JSONDecoder(), 0
    while (start := text.find("{", i)) != -1:
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        if isinstance(obj, dict):
            objects.append(obj)
        i = end
    return objects


def _json_score(text: str, low: float, high: float) -> tuple[float | None, str]:
    for obj in reversed(_json_objects(text)):
        for key in ("score", "rating"):
            raw = obj.get(key)
            if isinstance(raw, bool):
                continue
            try:
                value = float(raw)
            except (TypeError, ValueError):
                continue
            if _in_range(value, low, high):
                return value, str(obj.get("justification") or obj.get("explanation") or obj.get("reason") or "")
    return None, ""


def parse_rating(text: str, low: float = 1, high: float = 10) -> float | None:
    """The judge's numeric score in [low, high], or None when no valid score can be found.

    Formats, most explicit first; within a format the LAST occurrence wins (the verdict comes last):
    `[[7]]` / `[[Rating: 7]]` / `[[7/10]]`, a JSON object with "score"/"rating", `"score": 7` in broken JSON,
    `Rating: 7` / `Score: 7/10` / `final score is 7`, and finally a bare `7/10` or `7 out of 10` when the
    denominator equals `high`. Out-of-range numbers are ignored, never clipped.
    """
    text = _strip_thoughts(text)
    value = _last_valid(list(_DOUBLE_BRACKET.finditer(text)), low, high)
    if value is not None:
        return value
    value, _ = _json_score(text, low, high)
    if value is not None:
        return value
    for pattern in (_JSON_SCORE_KEY, _LABELLED):
        value = _last_valid(list(pattern.finditer(text)), low, high, scale=high)
        if value is not None:
            return value
    return _last_valid(list(_OUT_OF.finditer(text)), low, high, scale=high)


@dataclass(frozen=True)
class JustifiedScore:
    score: float | None
    justification: str


def parse_justified_score(text: str, low: float = 0, high: float = 5) -> JustifiedScore:
    """Parse the curation judge's `{"justification": ..., "score": N}`; regex fallbacks as in `parse_rating`.

    When the JSON is broken, the justification is the text before the score (the reasoning came first).
    """
    clean = _strip_thoughts(text)
    value, why = _json_score(clean, low, high)
    if value is not None:
        return JustifiedScore(value, why)
    value = parse_rating(clean, low, high)
    if value is None:
        return JustifiedScore(None, "")
    m = re.search(r"[\"']?justification[\"']?\s*:\s*[\"'](.*?)[\"']\s*[,}]", clean, re.S | re.I)
    return JustifiedScore(value, m.group(1).strip() if m else clean.strip())


_POSITIVE = {"correct", "right", "yes", "true", "pass", "accurate"}
_NEGATIVE = {"incorrect", "wrong", "no", "false", "fail", "inaccurate", "not correct", "not right"}
_VERDICT_WORD = r"(not\s+correct|not\s+right|incorrect|correct|wrong|right|yes|no|true|false|pass|fail|inaccurate|accurate)"
_BRACKET_VERDICT = re.compile(r"\[\[\s*(?:verdict\s*:\s*)?" + _VERDICT_WORD + r"\s*\]\]", re.I)
_LABELLED_VERDICT = re.compile(
    r"\b(?:final\s+)?(?:verdict|judg(?:e)?ment|decision|conclusion|grade|assessment)\b\s*(?:is)?\s*[:=\-]?\s*\**\s*\[?"
    + _VERDICT_WORD + r"\b",
    re.I,
)
_STATED_VERDICT = re.compile(
    r"\b(?:answer|response|reply|prediction)\s+(?:is|was)\s+(?:therefore\s+|thus\s+)?" + _VERDICT_WORD + r"\b", re.I
)
# The instruction itself names both verdicts ("[[CORRECT]] or [[INCORRECT]]"); a judge that repeats it has not
# decided anything, so the pair is removed before parsing.
_VERDICT_PAIR = re.compile(r"\[\[\s*correct\s*\]\]\W{0,3}(?:or|/|and)?\W{0,3}\[\[\s*incorrect\s*\]\]", re.I)
_LAST_LINE_VERDICT = re.compile(r"^\W*" + _VERDICT_WORD + r"\W*$", re.I)


def _word_to_bool(word: str) -> bool | None:
    word = re.sub(r"\s+", " ", word.lower().strip())
    if word in _NEGATIVE:
        return False
    if word in _POSITIVE:
        return True
    return None


def _json_verdict(text: str) -> bool | None:
    for obj in reversed(_json_objects(text)):
        for key in ("correct", "is_correct", "verdict", "judgement", "judgment", "label"):
            raw = obj.get(key)
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and (verdict := _word_to_bool(raw)) is not None:
                return verdict
    return None


def parse_verdict(text: str) -> bool | None:
    """True (correct), False (incorrect) or None when the judge gave no recognisable verdict.

    Formats, most explicit first, last occurrence wins: `[[CORRECT]]` / `[[INCORRECT]]` (also YES/NO, TRUE/FALSE),
    JSON `{"correct": true}` / `{"verdict": "incorrect"}`, `Verdict: incorrect`, a last line that is only the word,
    and "the answer is (not) correct". "incorrect" and "not correct" are never read as "correct".
    """
    text = _VERDICT_PAIR.sub(" ", _strip_thoughts(text))
    matches = list(_BRACKET_VERDICT.finditer(text))
    if matches:
        return _word_to_bool(matches[-1].group(1))
    if (verdict := _json_verdict(text)) is not None:
        return verdict
    matches = list(_LABELLED_VERDICT.finditer(text))
    if matches:
        return _word_to_bool(matches[-1].group(1))
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines and (m := _LAST_LINE_VERDICT.match(lines[-1])):
        return _word_to_bool(m.group(1))
    matches = list(_STATED_VERDICT.finditer(text))
    if matches:
        return _word_to_bool(matches[-1].group(1))
    return None


# ---------------------------------------------------------------------------------------------------------------
# Calling a judge with bounded retries
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Judgement(Generic[T]):
    """One judged item: the parsed value (None = parse failure) and every raw judge output, in attempt order."""

    value: T | None
    outputs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.value is not None

    @property
    def attempts(self) -> int:
        return len(self.outputs)


@dataclass(frozen=True)
class JudgeSettings:
    """How the judge is called. Defaults suit a strong API judge; tests shrink `max_new_tokens`."""

    max_new_tokens: int = 1024
    retries: int = 2  # extra attempts for outputs that do not parse (0 = no retry)
    retry_temperature: float = 0.7  # retries sample: a greedy judge repeats its own bad output
    seed: int = 0


def run_judge(
    judge: Engine,
    prompts: Sequence[Prompt],
    parse: Callable[[str], T | None],
    settings: JudgeSettings = JudgeSettings(),
    progress: bool = True,
) -> list[Judgement[T]]:
    """Ask `judge` about every prompt and parse its outputs; re-ask the failures up to `settings.retries` times.

    Attempts are batched per round so a batched engine stays efficient. Never raises on bad judge text.
    """
    results: list[Judgement[T]] = [Judgement(None) for _ in prompts]
    pending = list(range(len(prompts)))
    for attempt in range(settings.retries + 1):
        if not pending:
            break
        temperature = 0.0 if attempt == 0 else settings.retry_temperature
        requests = [
            GenerationRequest(prompt=prompts[i], max_new_tokens=settings.max_new_tokens,
                              temperature=temperature, seed=settings.seed + attempt)
            for i in pending
        ]
        outputs = judge.generate(requests, progress=progress)
        still_failing = []
        for i, text in zip(pending, outputs):
            results[i].outputs.append(text)
            value = parse(text)
            if value is None:
                still_failing.append(i)
            else:
                results[i].value = value
        pending = still_failing
    return results


# ---------------------------------------------------------------------------------------------------------------
# MT-bench: two-turn answers, single-answer grading on 1-10
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class JudgeRun:
    """What a judge task returns: aggregate `scores` (numbers only) and one dict per judged question."""

    scores: dict[str, float]
    samples: list[dict]

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _answer_turns(answers_engine: Engine, questions: Sequence[dict], max_new_tokens: int,
                  progress: bool) -> list[list[str]]:
    """Generate each question's answers turn by turn: turn k sees the user's earlier turns and our answers."""
    n_turns = max(len(q["turns"]) for q in questions)
    answers: list[list[str]] = [[] for _ in questions]
    for turn in range(n_turns):
        todo = [i for i, q in enumerate(questions) if len(q["turns"]) > turn]
        requests = []
        for i in todo:
            messages = []
            for k in range(turn):
                messages += [{"role": "user", "content": questions[i]["turns"][k]},
                             {"role": "assistant", "content": answers[i][k]}]
            messages.append({"role": "user", "content": questions[i]["turns"][turn]})
            requests.append(GenerationRequest(prompt=messages, max_new_tokens=max_new_tokens, temperature=0.0))
        for i, text in zip(todo, answers_engine.generate(requests, progress=progress)):
            answers[i].append(text)
    return answers


def _check_questions(questions: Sequence[dict]) -> None:
    for n, q in enumerate(questions):
        turns = q.get("turns")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise ValueError(f"MT-bench question #{n} (id {q.get('question_id')!r}): field 'turns' must be a "
                             f"non-empty list of strings")
        if len(turns) > 2:
            raise ValueError(f"MT-bench question #{n} (id {q.get('question_id')!r}): field 'turns' has "
                             f"{len(turns)} turns; single-answer grading supports 1 or 2")


def judge_mtbench(
    answers_engine: Engine | None,
    judge_engine: Engine,
    questions: Sequence[dict],
    *,
    answer_max_new_tokens: int = 1024,
    settings: JudgeSettings = JudgeSettings(),
    progress: bool = True,
) -> JudgeRun:
    """Answer MT-bench questions with `answers_engine`, then grade each turn 1-10 with `judge_engine`.

    A question is `{"question_id", "category", "turns": [str, str], "reference": str | [str, str] (optional),
    "answers": [str, str] (optional: pre-generated answers; then `answers_engine` may be None)}`.
    Turn 2 is graded with the first exchange as context. Parse failures are excluded from the means and
    reported as `parse_failure_rate`; `score` is the mean over every graded turn (the usual MT-bench number).
    """
    _check_questions(questions)
    need = [q for q in questions if "answers" not in q]
    if need and answers_engine is None:
        raise ValueError("judge_mtbench: questions without 'answers' need an answers_engine")
    generated = iter(_answer_turns(answers_engine, need, answer_max_new_tokens, progress) if need else [])
    answers = [list(q["answers"]) if "answers" in q else next(generated) for q in questions]

    prompts, slots = [], []  # slots[j] = (question index, turn index) of prompts[j]
    for i, q in enumerate(questions):
        refs = q.get("reference") or []
        refs = [refs] if isinstance(refs, str) else list(refs)  # one string = the first turn's reference
        refs += [None] * (len(q["turns"]) - len(refs))
        prompts.append(judge_prompts.rating_turn1_messages(q["turns"][0], answers[i][0], refs[0]))
        slots.append((i, 0))
        if len(q["turns"]) == 2:
            prompts.append(judge_prompts.rating_turn2_messages(
                q["turns"][0], answers[i][0], q["turns"][1], answers[i][1], refs[1]))
            slots.append((i, 1))
    judgements = run_judge(judge_engine, prompts, parse_rating, settings, progress)

    samples = [{"question_id": q.get("question_id", i), "category": q.get("category", ""),
                "turns": list(q["turns"]), "answers": answers[i], "turn_scores": [None] * len(q["turns"]),
                "judge_outputs": [[] for _ in q["turns"]]} for i, q in enumerate(questions)]
    for (i, turn), j in zip(slots, judgements):
        samples[i]["turn_scores"][turn] = j.value
        samples[i]["judge_outputs"][turn] = j.outputs
    for s in samples:
        valid = [v for v in s["turn_scores"] if v is not None]
        s["score"] = _mean(valid)
        s["parse_failures"] = len(s["turn_scores"]) - len(valid)
    return JudgeRun(scores=_mtbench_scores(samples, judgements), samples=samples)


def _mtbench_scores(samples: list[dict], judgements: list[Judgement]) -> dict[str, float]:
    by_turn: dict[int, list[float]] = {}
    by_category: dict[str, list[float]] = {}
    for s in samples:
        for turn, value in enumerate(s["turn_scores"]):
            if value is not None:
                by_turn.setdefault(turn, []).append(value)
                by_category.setdefault(s["category"] or "uncategorised", []).append(value)
    all_values = [v for values in by_turn.values() for v in values]
    failures = sum(not j.ok for j in judgements)
    scores: dict[str, float] = {
        "score": _mean(all_values),
        "n_judged": float(len(judgements)),
        "n_parse_failures": float(failures),
        "parse_failure_rate": failures / len(judgements) if judgements else 0.0,
        "judge_attempts": float(sum(j.attempts for j in judgements)),
    }
    for turn, values in sorted(by_turn.items()):
        scores[f"score_turn{turn + 1}"] = _mean(values)
    for category, values in sorted(by_category.items()):
        scores[f"score_{category}"] = _mean(values)
    return scores


# ---------------------------------------------------------------------------------------------------------------
# Reference-based correctness (FinanceBench style)
# ---------------------------------------------------------------------------------------------------------------


def _answer_prompt(item: dict) -> Prompt:
    return item.get("prompt") or judge_prompts.open_qa_messages(item["question"], item.get("context"))


def judge_correctness(
    answers_engine: Engine | None,
    judge_engine: Engine,
    items: Sequence[dict],
    *,
    answer_max_new_tokens: int = 512,
    settings: JudgeSettings = JudgeSettings(),
    progress: bool = True,
) -> JudgeRun:
    """Answer each item with `answers_engine` and have `judge_engine` mark the answer correct or incorrect.

    An item is `{"id", "question", "reference", "context" (optional evidence text), "prompt" (optional: the exact
    prompt for the model under test), "answer" (optional: pre-generated; then `answers_engine` may be None)}`.
    `accuracy` counts parse failures as incorrect (a conservative number that cannot be gamed by a judge that
    rambles); `accuracy_judged` is over parsed verdicts only; `parse_failure_rate` says how far they differ.
    """
    for n, item in enumerate(items):
        for key in ("question", "reference"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise ValueError(f"correctness item #{n} (id {item.get('id')!r}): field '{key}' must be a "
                                 f"non-empty string")
    need = [i for i, item in enumerate(items) if "answer" not in item]
    if need and answers_engine is None:
        raise ValueError("judge_correctness: items without 'answer' need an answers_engine")
    answers = [item.get("answer") for item in items]
    if need:
        requests = [GenerationRequest(prompt=_answer_prompt(items[i]), max_new_tokens=answer_max_new_tokens)
                    for i in need]
        for i, text in zip(need, answers_engine.generate(requests, progress=progress)):
            answers[i] = text

    prompts = [judge_prompts.correctness_messages(item["question"], item["reference"], answer)
               for item, answer in zip(items, answers)]
    judgements = run_judge(judge_engine, prompts, parse_verdict, settings, progress)
    samples = [{"id": item.get("id", n), "question": item["question"], "reference": item["reference"],
                "answer": answer, "correct": j.value, "rationale": j.outputs[-1] if j.outputs else "",
                "judge_outputs": j.outputs}
               for n, (item, answer, j) in enumerate(zip(items, answers, judgements))]
    n = len(judgements)
    parsed = [j.value for j in judgements if j.ok]
    failures = n - len(parsed)
    scores = {
        "accuracy": sum(parsed) / n if n else 0.0,
        "accuracy_judged": sum(parsed) / len(parsed) if parsed else None,
        "n_judged": float(n),
        "n_parse_failures": float(failures),
        "parse_failure_rate": failures / n if n else 0.0,
        "judge_attempts": float(sum(j.attempts for j in judgements)),
    }
    return JudgeRun(scores=scores, samples=samples)


# ---------------------------------------------------------------------------------------------------------------
# Scoring the eval runner's judge-task outputs (`needs_judge: true`)
# ---------------------------------------------------------------------------------------------------------------

JudgeKind = Literal["auto", "rating", "correctness"]


def judge_kind(samples: Sequence[dict]) -> str:
    """`correctness` when every sample is one turn with a reference answer (FinanceBench), else `rating` (MT-bench)."""
    reference_qa = all(len(s.get("turns") or []) == 1 and isinstance(s.get("reference"), str)
                       and s["reference"].strip() for s in samples)
    return "correctness" if samples and reference_qa else "rating"


def judge_result_file(
    path: str | Path,
    judge_engine: Engine,
    *,
    kind: JudgeKind = "auto",
    settings: JudgeSettings = JudgeSettings(),
    judge_name: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Judge the answers in one runner result JSON (`<task>.<mode>.json` with `needs_judge: true`) in place.

    Fills `scores` (see `judge_mtbench` / `judge_correctness`), adds each sample's judge fields, records which
    judge and settings were used under `judge`, sets `needs_judge` to false and rewrites the file atomically.
    A file already judged is returned untouched unless `force`, so re-running after a kill skips finished tasks.
    """
    path = Path(path)
    record = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(record, dict) or not isinstance(record.get("samples"), list):
        raise DataError(path, None, "samples", "expected a result JSON with a list of samples")
    if record.get("judge") and not record.get("needs_judge") and not force:
        return record
    samples = record["samples"]
    for n, s in enumerate(samples):
        if not isinstance(s.get("turns"), list) or not isinstance(s.get("answers"), list) \
                or len(s["answers"]) != len(s["turns"]):
            raise DataError(path, None, f"samples[{n}]", "a judge sample needs 'turns' and one answer per turn")
    kind = judge_kind(samples) if kind == "auto" else kind
    if kind == "rating":
        questions = [{"question_id": s.get("id", n), "category": s.get("category") or "", "turns": s["turns"],
                      "answers": s["answers"], "reference": s.get("reference")} for n, s in enumerate(samples)]
        run = judge_mtbench(None, judge_engine, questions, settings=settings, progress=progress)
        fields = ("turn_scores", "score", "judge_outputs", "parse_failures")
    else:
        items = [{"id": s.get("id", n), "question": s["turns"][0], "reference": s["reference"],
                  "answer": s["answers"][0]} for n, s in enumerate(samples)]
        run = judge_correctness(None, judge_engine, items, settings=settings, progress=progress)
        fields = ("correct", "rationale", "judge_outputs")
    for sample, judged in zip(samples, run.samples):
        sample.update({f: judged[f] for f in fields})
    record["scores"] = run.scores
    record["needs_judge"] = False
    record["judge"] = {"kind": kind, "engine": judge_name or _engine_label(judge_engine), **asdict(settings)}
    write_json(path, record)
    return record


def _engine_label(engine: Engine) -> str:
    spec = getattr(engine, "spec", None)
    return f"{engine.name}:{getattr(spec, 'model', '?')}"


def judge_pending(
    out_dir: str | Path,
    judge_engine: Engine,
    *,
    settings: JudgeSettings = JudgeSettings(),
    judge_name: str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Judge every `needs_judge` result JSON in an eval output directory; returns the files judged.

    The runner's `summary.json`, when present, gets the new scores under `results[task][mode]` so it agrees with
    the per-task files.
    """
    out_dir = Path(out_dir)
    judged = []
    for path in sorted(out_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(path, err.lineno, None, f"invalid JSON: {err.msg}") from None
        if isinstance(record, dict) and record.get("needs_judge"):
            record = judge_result_file(path, judge_engine, settings=settings, judge_name=judge_name,
                                       progress=progress)
            judged.append(path)
            _update_summary(out_dir / "summary.json", record)
    return judged


def _update_summary(summary_path: Path, record: dict) -> None:
    if not summary_path.exists():
        return
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    summary.setdefault("results", {}).setdefault(record["task"], {})[record.get("mode", "direct")] = record["scores"]
    write_json(summary_path, summary)
