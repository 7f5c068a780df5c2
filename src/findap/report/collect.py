"""Reading result files: every per-task result JSON under a run or eval folder as a TaskResult.

A result JSON is recognised by having `task` and a `scores` dict (the eval runner's per-task files); every other
JSON under an input directory is ignored. A result file whose samples reproduce its headline score gives that
score's item statistics (findap.eval.metrics.ItemStats), from which the report computes intervals and paired
deltas; a file whose samples cannot reproduce its score (hand-written, third-party, scored by an older metric)
keeps the interval it stores under `uncertainty`, if any, and is never paired.

Classification and multiple-choice results also give MCC, macro-F1 and the share of the most frequent answer
(`top_pred_share`, with which answer it is); a model giving one answer to at least CONSTANT_SHARE of a task's items
is flagged as constant.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from findap.eval.metrics import ItemStats, item_stats, mean_stats, primary_metric, top_prediction
from findap.io import DataError
from findap.report.layout import (
    CAPABILITY_ORDER, CONSTANT_SHARE, DOMAIN_ORDER, NOVELTY_ORDER, SPLIT_ORDER, display_scale,
)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class TaskResult:
    """One model's result on one task in one answer mode, as read from a per-task result JSON.

    `stats` are the headline metric's item statistics (None when the samples cannot reproduce the score), `ids`
    the item ids in the same order, `stored_interval` the file's own `uncertainty` entry for the headline.
    `score_stats` holds the item statistics of every score the samples give back (the headline's included),
    `stored_intervals` the file's whole `uncertainty` block, `top_pred` the most frequent answer (classification
    and multiple choice; None when the samples cannot be read). `spec` is the task spec the runner recorded
    (`settings.spec`), `relation` the task's relation to what this result's run trained on, with the reason
    (findap.report.novelty; empty until the report derives it).
    """

    task: str
    model: str
    scores: dict
    metric: str
    mode: str = "direct"
    capability: str = "task"
    domain: str = "finance"
    novelty: str = "similar"
    split: str = "unseen"
    path: str = ""
    n: int | None = None
    stats: ItemStats | None = field(default=None, repr=False, compare=False)
    ids: list | None = field(default=None, repr=False, compare=False)
    stored_interval: dict | None = None
    score_stats: dict[str, ItemStats] = field(default_factory=dict, repr=False, compare=False)
    stored_intervals: dict[str, dict] = field(default_factory=dict, repr=False)
    top_pred: str | None = None
    spec: dict | None = field(default=None, repr=False, compare=False)
    relation: str = ""

    def raw(self, name: str) -> float | None:
        """Score `name` on its own scale (a fraction or a rating): as the file stores it, else recomputed from
        the samples (a file written before the score existed); None when neither has a finite number."""
        if _finite(self.scores.get(name)):
            return float(self.scores[name])
        stats = self.score_stats.get(name)
        value = stats.scores()[name] if stats is not None else None
        return value if _finite(value) else None

    def shown(self, name: str) -> float | None:
        """Score `name` as displayed (x100 for fractions)."""
        value = self.raw(name)
        return None if value is None else value * display_scale(name)

    def stats_for(self, name: str) -> ItemStats | None:
        return self.stats if name == self.metric else self.score_stats.get(name)

    @property
    def constant(self) -> bool:
        """One answer to at least CONSTANT_SHARE of the items."""
        share = self.raw("top_pred_share")
        return share is not None and share >= CONSTANT_SHARE

    @property
    def scale(self) -> float:
        return display_scale(self.metric)

    @property
    def value(self) -> float | None:
        """The headline number as displayed (x100 for fractions); None when the metric is missing or NaN."""
        raw = self.scores.get(self.metric)
        if not isinstance(raw, (int, float)) or isinstance(raw, bool) or not math.isfinite(raw):
            return None
        return raw * self.scale

    @property
    def judged(self) -> bool:
        return "parse_failure_rate" in self.scores

    @property
    def key(self) -> tuple:
        return (self.split, self.novelty, self.capability, self.domain, self.task, self.mode)

    def to_dict(self) -> dict:
        """The JSON form (item statistics left out: they are recomputed from the result file)."""
        return {k: v for k, v in asdict(self).items() if k not in ("stats", "ids", "score_stats", "spec")}


def _first(record: dict, *names: str, default=None):
    for name in names:
        if record.get(name) not in (None, ""):
            return record[name]
    return default


def _model_from_path(path: Path) -> str:
    """Fallback label: the run directory a result sits in (runs/<run>/eval/<task>.json -> <run>)."""
    parts = path.parts
    if "eval" in parts:
        i = len(parts) - 1 - parts[::-1].index("eval")
        if i > 0:
            return parts[i - 1]
    return path.parent.name


NOT_JUDGED = "(not judged)"


def _judge_stats(samples: list[dict], metric: str) -> ItemStats | None:
    """Item statistics of judge scores: MT-bench's `score` is the mean over every parsed turn (a ratio of sums
    over questions); correctness `accuracy` counts unparsed verdicts as wrong."""
    if metric == "score" and all(isinstance(s.get("turn_scores"), list) for s in samples):
        rows = [(sum(v for v in s["turn_scores"] if v is not None), sum(v is not None for v in s["turn_scores"]))
                for s in samples]
        table = np.asarray(rows, dtype=float).reshape(-1, 2)
        return ItemStats(table, lambda sums: {"score": np.divide(sums[..., 0], sums[..., 1],
                                                                 out=np.full(sums.shape[:-1], np.nan),
                                                                 where=sums[..., 1] != 0)})
    if metric == "accuracy" and all("correct" in s for s in samples):
        return mean_stats({"accuracy": [float(s["correct"] is True) for s in samples]}, bernoulli=["accuracy"])
    return None


def _agrees(value: float, stored: float) -> bool:
    return math.isclose(value, stored, rel_tol=1e-6, abs_tol=1e-9)


def _score_stats(record: dict, metric: str, answer_type: str | None) -> tuple[dict[str, ItemStats], str | None]:
    """Every score's item statistics recomputed from the stored samples, and the most frequent answer; nothing
    when that is not possible or the headline does not come back as stored (then an interval would describe some
    other number). Another score the file stores with a different value is left out as well; one it lacks (a
    file written before that score existed) is kept, computed from the same samples the headline checked."""
    from findap.eval.runner import preds_and_docs
    from findap.eval.task import TaskSpec

    samples = record.get("samples")
    stored = record["scores"].get(metric)
    if not samples or not _finite(stored):
        return {}, None
    top = None
    try:
        if answer_type == "judge" or record.get("judge"):
            judged = _judge_stats(samples, metric)
            found = {metric: judged} if judged is not None else {}
        else:
            spec = TaskSpec.model_validate((record.get("settings") or {}).get("spec"))
            preds, docs = preds_and_docs(record)
            for doc, sample in zip(docs, samples):
                if isinstance(sample, dict) and "choices" in sample:  # log-likelihood samples keep their options
                    doc["choices"] = sample["choices"]
            found = item_stats(preds, docs, spec, str(record.get("mode", "direct")))
            if spec.answer_type in ("classification", "multiple_choice"):
                top = top_prediction(preds, docs, spec)[0]
    except Exception:  # noqa: BLE001 - any unreadable or foreign sample layout simply means "no interval"
        return {}, None
    headline = found.get(metric)
    if headline is None or not _agrees(headline.scores()[metric], stored):
        return {}, None
    theirs = record["scores"]
    kept = {name: stats for name, stats in found.items()
            if not _finite(theirs.get(name)) or _agrees(stats.scores()[name], theirs[name])}
    return kept, top


def parse_result(record: dict, path: Path) -> TaskResult:
    """Turn one result record into a TaskResult; a bad field raises DataError naming the file and the field.

    Reads the eval runner's layout (`tags: {capability, domain, novelty, role, answer_type}`, `settings.spec`)
    and flat records with the same names at the top level (`split` or `split_role` for the role).
    """
    scores = record.get("scores")
    if not isinstance(scores, dict):
        raise DataError(path, None, "scores", f"expected an object of metric -> number, got {type(scores).__name__}")
    tags = record.get("tags") if isinstance(record.get("tags"), dict) else {}
    flat = {**record, **tags}
    spec = (record.get("settings") or {}).get("spec") or {}
    answer_type = _first(flat, "answer_type")
    metric = primary_metric(scores, _first(record, "primary_metric", "metric"), answer_type,
                            spec.get("metrics") or ())
    if metric is None and record.get("needs_judge"):
        metric = NOT_JUDGED  # answers written, judge not run yet: the row shows "–"
    if metric is None:
        raise DataError(path, None, "scores", "no numeric metric in the result")
    checked = {
        "capability": (_first(flat, "capability", default="task"), CAPABILITY_ORDER),
        "domain": (_first(flat, "domain", default="finance"), DOMAIN_ORDER),
        "novelty": (_first(flat, "novelty", default="similar"), NOVELTY_ORDER),
        "split": (_first(flat, "split", "split_role", "role", default="unseen"), SPLIT_ORDER),
    }
    for name, (value, allowed) in checked.items():
        if value not in allowed:
            raise DataError(path, None, name, f"{value!r} is not one of {list(allowed)}")
    score_stats, top = _score_stats(record, metric, answer_type) if metric != NOT_JUDGED else ({}, None)
    stats = score_stats.get(metric)
    uncertainty = record.get("uncertainty") if isinstance(record.get("uncertainty"), dict) else {}
    stored_intervals = {k: v for k, v in uncertainty.items() if isinstance(v, dict)}
    stored = stored_intervals.get(metric)
    n = record.get("n") if isinstance(record.get("n"), int) else (stats.n if stats else None)
    return TaskResult(
        task=str(record["task"]),
        model=str(_first(record, "model_label", "model", default=_model_from_path(path))),
        scores=scores,
        metric=metric,
        mode=str(_first(record, "mode", default="direct")),
        capability=checked["capability"][0],
        domain=checked["domain"][0],
        novelty=checked["novelty"][0],
        split=checked["split"][0],
        path=str(path),
        n=n,
        stats=stats,
        ids=[s.get("id") for s in record["samples"]] if stats is not None else None,
        stored_interval=stored,
        score_stats=score_stats,
        stored_intervals=stored_intervals,
        top_pred=top,
        spec=spec if isinstance(spec, dict) and spec else None,
    )


# JSON files a run directory holds that are never results (model and tokenizer files of saved checkpoints, our own
# report output): skipped without being read, so a report over a whole run stays fast.
NOT_RESULTS = {"config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "generation_config.json", "model.safetensors.index.json", "trainer_state.json", "vocab.json",
               "added_tokens.json", "adapter_config.json", "leaderboard.json", "summary.json", "manifest.json"}


def _result_files(inputs: Iterable[str | Path]) -> list[tuple[int, Path]]:
    """(index of the input it was found under, file) for every candidate result file."""
    files: list[tuple[int, Path]] = []
    for i, item in enumerate(inputs):
        p = Path(item)
        if p.is_file():
            files.append((i, p))
        elif p.is_dir():
            files += [(i, q) for q in sorted(p.rglob("*.json")) if q.is_file() and q.name not in NOT_RESULTS]
        else:
            raise FileNotFoundError(f"report input {p} does not exist")
    return files


def input_name(item: str | Path) -> str:
    """What a report input is called in a label: its run's folder name (runs/<run>, runs/<run>/eval, a file)."""
    p = Path(item).absolute()
    p = p.parent if p.is_file() else p
    return p.parent.name if p.name == "eval" else p.name


def load_results(inputs: Iterable[str | Path], notes: list[str] | None = None) -> list[TaskResult]:
    """Every task result under `inputs` (files or directories). When several files hold the same model, task,
    mode and split (a re-run written elsewhere), the most recently modified one wins.

    Two runs side by side both call their trained model `cpt_it`: a label that names different weights (by their
    content fingerprint) under different inputs is shown as `<run>/<label>` for each, rather than one run's results
    silently replacing the other's; a line saying so is appended to `notes`. The same weights under one label (the
    base model every run scores) stay one model."""
    inputs = list(inputs)
    parsed: list[tuple[int, TaskResult, str | None]] = []
    for i, path in sorted(_result_files(inputs), key=lambda ip: (ip[1].stat().st_mtime_ns, str(ip[1]))):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(path, err.lineno, None, f"invalid JSON: {err.msg}") from None
        if not (isinstance(record, dict) and "task" in record and "scores" in record):
            continue
        provenance = record.get("provenance") if isinstance(record.get("provenance"), dict) else {}
        parsed.append((i, parse_result(record, path), provenance.get("model_fingerprint")))
    weights: dict[str, dict[int, set]] = {}
    for i, result, fingerprint in parsed:
        weights.setdefault(result.model, {}).setdefault(i, set()).add(fingerprint)
    clashing = {label for label, by_input in weights.items()
                if len(by_input) > 1 and len(set().union(*by_input.values())) > 1}
    names = [input_name(item) for item in inputs]
    if len(set(names)) < len(names):  # two inputs with one folder name: number them
        names = [f"{name}#{i + 1}" for i, name in enumerate(names)]
    for label in sorted(clashing):
        shown = ", ".join(f"{names[i]}/{label}" for i in sorted(weights[label]))
        if notes is not None:
            notes.append(f"`{label}` names different weights in different runs: shown as {shown}")
    found: dict[tuple, TaskResult] = {}
    for i, result, _ in parsed:
        if result.model in clashing:
            result.model = f"{names[i]}/{result.model}"
        found[(result.model, *result.key)] = result
    return list(found.values())
