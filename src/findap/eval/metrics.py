"""Metrics: predictions + docs -> scores, with per-item statistics so every score can carry an interval.

A metric is registered as `fn(preds, docs, spec) -> {name: float}`. The built-in ones are `ItemMetric`s: they first
turn the predictions into `ItemStats`, one row of numbers per item whose column sums determine the scores (a mean
keeps each item's value and a count; F1 and MCC keep each item's cell of the confusion matrix; entity F1 keeps each
sentence's true positives, predicted and gold entities). The score of the whole set and of any bootstrap resample
is then `reduce(weights @ table)`, which is what makes a 1000-resample bootstrap over thousands of items a few
matrix products (findap.eval.uncertainty).

Standard metrics equal their reference libraries on the same predictions (scikit-learn, seqeval, rouge-score: the
tests compare them). The TAT-QA metric is written here from the official definition (NExTplusplus/TAT-QA
`tatqa_metric.py`): it is not on PyPI, and its numeracy-aware normalisation (scale words, '%', '(123)' as
negative) is the point. A prediction of None (nothing extracted) is `missing` and always counts as wrong; F1 is
never binary here.

`primary_metric` (which score is a task's headline number) lives here too: model selection and the report both
ask it.
"""
from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from findap.eval.registry import register_metric

MISSING = "missing"


# ---- per-item statistics ------------------------------------------------------------------------------------
Reduce = Callable[[np.ndarray], "dict[str, np.ndarray]"]


@dataclass(frozen=True)
class ItemStats:
    """`table[i]` holds item i's statistics; `reduce(sums)` turns column sums (shape (..., d)) into scores.

    `bernoulli` names the scores that are plain means of 0/1 items (accuracy-like): their interval has an exact
    closed form (Wilson) and needs no resampling.
    """

    table: np.ndarray
    reduce: Reduce
    bernoulli: frozenset = field(default_factory=frozenset)

    @property
    def n(self) -> int:
        return int(self.table.shape[0])

    def scores(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.reduce(self.table.sum(axis=0)).items()}

    def take(self, index: Sequence[int]) -> "ItemStats":
        """The same statistics over a subset (or reordering) of the items: pairing two models' items by id."""
        return ItemStats(self.table[np.asarray(index, dtype=int)], self.reduce, self.bernoulli)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den is 0 (scikit-learn's and seqeval's zero_division=0)."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def mean_stats(columns: dict[str, Sequence[float]], bernoulli: Sequence[str] = ()) -> ItemStats:
    """Scores that are means over items: one column per score plus a count column (an empty set scores 0).

    `bernoulli` names the scores whose items are 0 or 1 by construction (a hit or a miss), which licenses the
    exact interval; it is declared, not guessed from the values, since a ROUGE mean can be all zeros by chance.
    """
    names = list(columns)
    values = [np.asarray(list(columns[k]), dtype=float) for k in names]
    n = len(values[0]) if values else 0
    table = np.column_stack(values + [np.ones(n)]) if n else np.zeros((0, len(names) + 1))

    def reduce(sums: np.ndarray) -> dict[str, np.ndarray]:
        return {k: _safe_div(sums[..., i], sums[..., -1]) for i, k in enumerate(names)}

    for k, v in zip(names, values):
        if k in bernoulli and not np.isin(v, (0.0, 1.0)).all():
            raise ValueError(f"mean_stats: {k!r} is declared 0/1 but holds other values")
    return ItemStats(table, reduce, frozenset(bernoulli))


class ItemMetric:
    """A registered metric built from per-item statistics; calling it gives the plain scores."""

    def __init__(self, name: str, stats: Callable[..., ItemStats]):
        self.name = name
        self.stats = stats

    def __call__(self, preds, docs, spec) -> dict[str, float]:
        return self.stats(preds, docs, spec).scores()


def item_metric(name: str):
    """Register `stats(preds, docs, spec) -> ItemStats` as the metric `name`."""

    def decorator(stats: Callable[..., ItemStats]):
        register_metric(name)(ItemMetric(name, stats))
        return stats

    return decorator


# ---- classification and multiple choice ---------------------------------------------------------------------
def _mc_pick(pred, key: str = "pred"):
    return pred.get(key) if isinstance(pred, dict) else pred


def _labels(preds, spec) -> list[str]:
    """Unmatched outputs become the task's default label (stock movement style) or the `missing` class."""
    fallback = spec.default_label or MISSING
    return [p if p is not None else fallback for p in preds]


def _golds(docs) -> list:
    return [d["gold"] for d in docs]


def _hits(picks, golds) -> list[float]:
    return [float(p is not None and p == g) for p, g in zip(picks, golds)]


@item_metric("acc")
def accuracy(preds, docs, spec) -> ItemStats:
    if spec.answer_type == "classification":
        preds = _labels(preds, spec)
    else:
        preds = [_mc_pick(p) for p in preds]
    return mean_stats({"acc": _hits(preds, _golds(docs))}, bernoulli=["acc"])


@item_metric("acc_norm")
def accuracy_norm(preds, docs, spec) -> ItemStats:
    """Multiple choice by log-likelihood divided by the option's length in characters (lm-eval's acc_norm)."""
    picks = [_mc_pick(p, "pred_norm") if isinstance(p, dict) else p for p in preds]
    return mean_stats({"acc_norm": _hits(picks, _golds(docs))}, bernoulli=["acc_norm"])


def confusion_stats(golds: Sequence, preds: Sequence, labels: Sequence, outputs: Sequence[str]) -> ItemStats:
    """Each item's cell of the confusion matrix (one-hot over gold x predicted class).

    `labels` are the classes F1 averages over (scikit-learn's `labels=`: a `missing` prediction only lowers
    recall); empty means every class seen, as scikit-learn does. `outputs` picks among f1_weighted, f1_macro, mcc.
    """
    averaged = list(labels) or sorted({*map(str, golds), *map(str, preds)})
    classes = list(dict.fromkeys([*averaged, *golds, *preds]))
    index = {c: i for i, c in enumerate(classes)}
    k = len(classes)
    table = np.zeros((len(golds), k * k))
    table[np.arange(len(golds)), [index[g] * k + index[p] for g, p in zip(golds, preds)]] = 1.0
    cols = [index[c] for c in averaged]

    def reduce(sums: np.ndarray) -> dict[str, np.ndarray]:
        cm = sums.reshape(*sums.shape[:-1], k, k)  # rows gold, columns predicted
        true, pred = cm.sum(axis=-1), cm.sum(axis=-2)
        hit = np.diagonal(cm, axis1=-2, axis2=-1)
        f1 = _safe_div(2 * hit, true + pred)[..., cols]
        support = true[..., cols]
        out = {"f1_weighted": _safe_div((f1 * support).sum(axis=-1), support.sum(axis=-1)),
               "f1_macro": f1.mean(axis=-1) if cols else np.zeros(sums.shape[:-1])}
        # scikit-learn's multiclass MCC (Gorodkin's R_K) from the same matrix
        n, correct = cm.sum(axis=(-2, -1)), hit.sum(axis=-1)
        cov_tp = correct * n - (true * pred).sum(axis=-1)
        cov_pp = n ** 2 - (pred * pred).sum(axis=-1)
        cov_tt = n ** 2 - (true * true).sum(axis=-1)
        out["mcc"] = _safe_div(cov_tp, np.sqrt(cov_tt * cov_pp))
        return {name: out[name] for name in outputs}

    return ItemStats(table, reduce)


@item_metric("f1_weighted")
def f1_weighted(preds, docs, spec) -> ItemStats:
    return confusion_stats(_golds(docs), _labels(preds, spec), spec.labels, ["f1_weighted"])


@item_metric("f1_macro")
def f1_macro(preds, docs, spec) -> ItemStats:
    return confusion_stats(_golds(docs), _labels(preds, spec), spec.labels, ["f1_macro"])


@item_metric("mcc")
def mcc(preds, docs, spec) -> ItemStats:
    golds, filled = _golds(docs), _labels(preds, spec)
    return confusion_stats(golds, filled, [], ["mcc"])


@item_metric("missing")
def missing(preds, docs, spec) -> ItemStats:
    """Share of outputs where no answer could be extracted."""
    return mean_stats({"missing": [float(_mc_pick(p) is None) for p in preds]}, bernoulli=["missing"])


# ---- skill or a constant answer ------------------------------------------------------------------------------
# A model that always says "neutral" scores the share of neutral items as accuracy and a fair weighted F1; only
# its answers' spread and a chance-corrected score (MCC 0) show that it has learnt nothing about the items.
def _option_name(index: int) -> str:
    return chr(ord("A") + index) if 0 <= index < 26 else f"option {index + 1}"


def fixed_choices(docs: Sequence[dict]) -> list[str] | None:
    """The options every item offers when they are one fixed label set (yes/no, true/false), else None: only
    then is an option index a class, so that MCC and macro-F1 over indices mean what they mean for labels."""
    options = [d.get("choices") for d in docs]
    if not options or any(not isinstance(o, (list, tuple)) for o in options):
        return None
    first = [str(o) for o in options[0]]
    if len(set(first)) != len(first) or any([str(o) for o in other] != first for other in options[1:]):
        return None
    return first


def answer_classes(preds, docs, spec) -> tuple[list[str], list[str]]:
    """Each item's answer as its scores see it, and every answer class in a fixed order (the task's labels or its
    options first, then anything else seen, sorted): ties for the most frequent answer go to the first.

    Classification answers are the scored labels (nothing extracted counts as the default label, else
    `missing`); multiple choice answers are the option `acc` scores (`pred` for log-likelihood scoring), named by
    their text when every item has the same options and by letter otherwise (always "A" is a constant answer
    too)."""
    if spec.answer_type == "classification":
        answers = [str(a) for a in _labels(preds, spec)]
        first = [str(label) for label in spec.labels]
    else:
        options = fixed_choices(docs)
        picks = [_mc_pick(p) for p in preds]
        answers = [MISSING if i is None else options[i] if options and 0 <= i < len(options) else _option_name(i)
                   for i in picks]
        known = [i for i in picks if isinstance(i, int)]
        first = options or [_option_name(i) for i in range(max(known, default=-1) + 1)]
    return answers, list(dict.fromkeys([*first, *sorted(set(answers) - set(first))]))


@item_metric("top_pred")
def top_pred(preds, docs, spec) -> ItemStats:
    """`top_pred_share`: the share of items given the most frequent answer. Each item keeps a one-hot row over
    the answer classes; a resample's share is its largest column sum over its item count, so the bootstrap
    resamples the maximum itself (which answer is on top may change between resamples)."""
    answers, classes = answer_classes(preds, docs, spec)
    index = {c: i for i, c in enumerate(classes)}
    table = np.zeros((len(answers), max(1, len(classes))))
    table[np.arange(len(answers)), [index[a] for a in answers]] = 1.0

    def reduce(sums: np.ndarray) -> dict[str, np.ndarray]:
        return {"top_pred_share": _safe_div(sums.max(axis=-1), sums.sum(axis=-1))}

    return ItemStats(table, reduce)


def top_prediction(preds, docs, spec) -> tuple[str | None, float]:
    """The most frequent answer (first in `answer_classes` order on a tie) and its share of the items."""
    answers, classes = answer_classes(preds, docs, spec)
    if not answers:
        return None, 0.0
    counts = {c: 0 for c in classes}
    for a in answers:
        counts[a] += 1
    top = max(classes, key=lambda c: counts[c])  # max keeps the first of equal counts
    return top, counts[top] / len(answers)


@item_metric("choice_mcc")
def choice_mcc(preds, docs, spec) -> ItemStats:
    """`mcc` and `f1_macro` of a multiple-choice task whose items all offer the same options, over the options as
    classes (a choice nothing could be extracted for is the `missing` class, as in classification); a task whose
    options change from item to item gets neither (an index is no class there)."""
    options = fixed_choices(docs)
    if options is None:
        return ItemStats(np.zeros((len(docs), 0)), lambda sums: {})
    golds = [options[d["gold"]] for d in docs]
    picks = [_mc_pick(p) for p in preds]
    answers = [MISSING if i is None else options[i] for i in picks]
    return confusion_stats(golds, answers, options, ["f1_macro", "mcc"])


# ---- NER and summarization ----------------------------------------------------------------------------------
@item_metric("entity_f1")
def entity_f1(preds, docs, spec) -> ItemStats:
    """seqeval's micro-averaged entity F1: per sentence (correct, predicted, gold) entity counts, summed."""
    from seqeval.metrics.sequence_labeling import get_entities

    rows = []
    for p, d in zip(preds, docs):
        gold = set(get_entities(list(d["tags"])))
        pred = set(get_entities(list(p) if p else ["O"] * len(d["tags"])))
        rows.append((len(gold & pred), len(pred), len(gold)))
    table = np.asarray(rows, dtype=float).reshape(-1, 3)

    def reduce(sums: np.ndarray) -> dict[str, np.ndarray]:
        correct, predicted, gold = sums[..., 0], sums[..., 1], sums[..., 2]
        return {"entity_f1": _safe_div(2 * correct, predicted + gold),
                "entity_precision": _safe_div(correct, predicted), "entity_recall": _safe_div(correct, gold)}

    return ItemStats(table, reduce)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9$])")


def sentence_lines(text: str) -> str:
    """One sentence per line, as rougeLsum expects: existing line breaks kept, each line split after '.', '!' or
    '?' followed by a space and a capital or digit ('$1.7 billion' and lower-case bullet lines stay whole)."""
    out = []
    for line in str(text).splitlines():
        out += [s.strip() for s in _SENTENCE_END.split(line) if s.strip()]
    return "\n".join(out)


def _rouge_stats(preds, docs, keys: tuple[str, ...]) -> ItemStats:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)
    split = "rougeLsum" in keys
    columns: dict[str, list[float]] = {k: [] for k in keys}
    for p, d in zip(preds, docs):
        gold, pred = str(d["gold"]), p or ""
        if split:  # rougeLsum reads sentences from line breaks; the other keys ignore them
            gold, pred = sentence_lines(gold), sentence_lines(pred)
        scored = scorer.score(gold, pred)
        for k in keys:
            columns[k].append(scored[k].fmeasure)
    return mean_stats(columns)


@item_metric("rouge")
def rouge(preds, docs, spec) -> ItemStats:
    """Mean ROUGE-1/2/L F-measure (rouge-score, Porter stemming): for single-sentence outputs."""
    return _rouge_stats(preds, docs, ("rouge1", "rouge2", "rougeL"))


@item_metric("rouge_sum")
def rouge_summary(preds, docs, spec) -> ItemStats:
    """Mean ROUGE-1/2 and summary-level ROUGE-L (`rougeLsum`: LCS over sentences, texts split one sentence per
    line) for multi-sentence summaries, as summarisation benchmarks report them."""
    return _rouge_stats(preds, docs, ("rouge1", "rouge2", "rougeLsum"))


# ---- numeric and open QA ------------------------------------------------------------------------------------
def numbers_match(pred, gold) -> bool:
    """Whether the extracted number `pred` is the gold number, by the rule distillation's check uses too
    (`findap.eval.answers.same_number`): an integer gold exactly, another gold within its own rounding.
    Either side that is not exactly one number ('N/A', None) never matches."""
    from findap.eval.answers import same_number, single_number

    p = single_number(str(pred)) if pred is not None else None
    g = single_number(str(gold)) if gold is not None else None
    return p is not None and g is not None and same_number(p, g)


@item_metric("numeric_acc")
def numeric_acc(preds, docs, spec) -> ItemStats:
    """The extracted number equals any gold (GSM8K `#### N`, generated exercises): an integer gold exactly,
    another within half a unit of its last written decimal (`numbers_match`)."""
    return mean_stats({"numeric_acc": [float(any(numbers_match(p, g) for g in d["gold"]))
                                       for p, d in zip(preds, docs)]}, bernoulli=["numeric_acc"])


def _normalize_text(s: str) -> str:
    s = "".join(ch for ch in str(s).lower() if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


@item_metric("exact_match")
def exact_match(preds, docs, spec) -> ItemStats:
    """SQuAD-style normalised exact match against any acceptable answer (NQ-open)."""
    return mean_stats({"exact_match": [
        float(p is not None and any(_normalize_text(p) == _normalize_text(g) for g in d["gold"]))
        for p, d in zip(preds, docs)]}, bernoulli=["exact_match"])


# ---- TAT-QA (official definition, our code) -----------------------------------------------------------------
_NUM_JUNK = set("'\"\\$€£¥%(),[]")
_SCALE_WORDS = (("hundred", 100), ("thousand", 1000), ("million", 1000000), ("billion", 1000000000),
                ("percent", 0.01))


def _scale_value(text: str):
    low = text.lower()
    for word, value in _SCALE_WORDS:
        if word in low:
            return value
    return 1


def _strip_num(text: str) -> str:
    return "".join(ch for ch in str(text) if ch not in _NUM_JUNK)


def _is_number(text: str) -> bool:
    """A number, optionally followed by a scale word ('12', '$1,496.5', '3 million')."""
    words = " ".join(_strip_num(w) for w in text.split()).split()
    if not words:
        return False
    try:
        value = float(words[0])
    except ValueError:
        return False
    if math.isnan(value):
        return False
    return len(words) < 2 or _scale_value(words[1]) != 1


def _to_number(text: str):
    """The first number in `text`, times its scale word, negative if in parentheses, /100 if followed by %."""
    found = re.findall(r"([+-]?\d+(\.\d+)?)|([+-]?\.\d+)", _strip_num(text))
    if not found or not found[0][0]:
        return None
    raw = found[0][0]
    num = float(raw) if "." in raw else int(raw)
    scale = 1
    for m in re.finditer(r"[\d.]+\s?[a-zA-Z]+", text):
        scale = _scale_value(m.group(0))
        break
    sign = -1 if re.findall(r"\([\d.\s]+\)", text.strip()) else 1
    percent = 0.01 if re.findall(r"[\d.\s]+%", text.strip()) else 1
    return round(num * scale * sign * percent, 4)


def _normalize_tatqa(text: str) -> str:
    parts = []
    for token in text.split(" "):
        token = token.lower()
        if not _is_number(token):
            token = "".join(ch for ch in token if ch not in set(string.punctuation))
        if _is_number(token):
            token = str(_to_number(token))
        token = " ".join(re.sub(r"\b(a|an|the)\b", " ", token).split())
        if token.strip():
            parts.append(token)
    return " ".join(parts).strip()


def _bag_f1(pred: set, gold: set) -> float:
    common = len(gold & pred)
    precision = common / len(pred) if pred else 1.0
    recall = common / len(gold) if gold else 1.0
    return 0.0 if precision == 0 and recall == 0 else 2 * precision * recall / (precision + recall)


def _plain_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _numbers_agree(pred: set, gold: set) -> bool:
    """DROP's rule: when the gold bag holds numbers, the predicted bag must share at least one of them."""
    gold_numbers = {t for t in gold if _plain_number(t)}
    return not gold_numbers or bool(gold_numbers & {t for t in pred if _plain_number(t)})


def _em_f1(pred: str, gold: str, numbers_must_match: bool = False) -> tuple[float, float]:
    """DROP-style EM and bag-of-tokens F1 between two answer strings (spans aligned one-to-one).

    TAT-QA's official scorer switches DROP's number rule off ("no need to match number in tatqa");
    `numbers_must_match=True` switches it back on.
    """
    from scipy.optimize import linear_sum_assignment

    p_spans, g_spans = [_normalize_tatqa(pred)], [_normalize_tatqa(gold)]
    em = 1.0 if set(p_spans) == set(g_spans) and len(p_spans) == len(g_spans) else 0.0
    p_bags, g_bags = [set(s.split()) for s in p_spans], [set(s.split()) for s in g_spans]
    scores = np.array([[_bag_f1(p, g) if not numbers_must_match or _numbers_agree(p, g) else 0.0 for p in p_bags]
                       for g in g_bags])
    rows, cols = linear_sum_assignment(-scores)
    best = np.zeros(max(len(g_bags), len(p_bags)))
    for r, c in zip(rows, cols):
        best[r] = max(best[r], scores[r, c])
    return em, round(float(np.mean(best)), 2)


def _answer_string(answers: list, scale: str) -> str:
    """All answers as one string; numbers rendered '%.4f' with the scale applied ('%' means already scaled)."""
    out = []
    for ans in sorted(str(a) for a in answers):
        value = _to_number(ans) if _is_number(ans) else None
        if value is None:
            out.append(f"{ans} {scale}" if scale else ans)
        elif "%" in ans:
            out.append("%.4f" % value)
        else:
            out.append("%.4f" % (round(value, 2) * _scale_value(scale)))
    return " ".join(out)


def tatqa_em_f1(pred_answers: list, pred_scale: str, gold_raw, gold_type: str, gold_scale: str, *,
                numbers_must_match: bool = False) -> tuple[float, float]:
    """EM and numeracy-aware F1 of one TAT-QA prediction, as the official scorer computes them.

    `numbers_must_match=True` adds DROP's rule that the official TAT-QA scorer leaves out: a span answer whose
    gold holds numbers gets F1 0 unless it states one of them ("fiscal 2019 revenue" vs "fiscal 2018 revenue").
    """
    if not pred_answers:
        return 0.0, 0.0
    if gold_type in ("span", "multi-span") or isinstance(gold_raw, (list, tuple)):
        gold = [str(g) for g in gold_raw]
    elif gold_type == "count":
        gold = [str(int(float(gold_raw)))]
    else:
        gold = [str(gold_raw)]
    if not gold:
        return 0.0, 0.0
    gold_strings = [_answer_string(gold, gold_scale)]
    pred_strings = [_answer_string(pred_answers, pred_scale)]
    # a bare number may be a ratio whose gold is stated in percent: also try it unscaled
    only = str(pred_answers[0])
    if len(pred_answers) == 1 and not pred_scale and "%" not in only and _is_number(only):
        value = _to_number(only)
        if value is not None:
            pred_strings.append("%.4f" % value)
    em, f1 = max(_em_f1(p, g, numbers_must_match) for p in pred_strings for g in gold_strings)
    if gold_type in ("arithmetic", "count"):
        f1 = em  # numbers are right or wrong: no partial credit
    return em, f1


@item_metric("tatqa")
def tatqa(preds, docs, spec) -> ItemStats:
    """`tatqa_em` and `tatqa_f1` as the official scorer; `tatqa_f1_drop` with DROP's numbers-must-match rule."""
    columns: dict[str, list[float]] = {"tatqa_em": [], "tatqa_f1": [], "tatqa_f1_drop": []}
    for pred, doc in zip(preds, docs):
        pred = pred or {"answer": [], "scale": ""}
        gold = (doc.get("gold_raw", doc["gold"]), doc.get("gold_type", "span"), doc.get("scale", ""))
        em, f1 = tatqa_em_f1(pred["answer"], pred["scale"], *gold)
        _, f1_drop = tatqa_em_f1(pred["answer"], pred["scale"], *gold, numbers_must_match=True)
        columns["tatqa_em"].append(em)
        columns["tatqa_f1"].append(f1)
        columns["tatqa_f1_drop"].append(f1_drop)
    return mean_stats(columns, bernoulli=["tatqa_em"])


DEFAULT_METRICS = {
    "multiple_choice": ["acc", "acc_norm"],
    "classification": ["acc", "f1_weighted", "f1_macro", "mcc", "missing"],
    "ner": ["entity_f1"],
    "summarization": ["rouge_sum"],
    "numeric_qa": ["numeric_acc"],
    "judge": [],
}


# Scores every classification and multiple-choice task gets, whatever its own metric list names: they tell skill
# from a constant answer (the report shows them beside the headline and flags a model giving one answer to most
# items). choice_mcc scores only tasks whose options are one fixed label set.
DIAGNOSTIC_METRICS = {
    "classification": ["f1_macro", "mcc", "top_pred"],
    "multiple_choice": ["choice_mcc", "top_pred"],
}


def metric_names(spec, mode: str) -> list[str]:
    names = spec.metrics or DEFAULT_METRICS[spec.answer_type]
    if spec.answer_type == "multiple_choice" and mode == "cot":
        names = [n for n in names if n != "acc_norm"] + (["missing"] if "missing" not in names else [])
    return names + [n for n in DIAGNOSTIC_METRICS.get(spec.answer_type, ()) if n not in names]


def item_stats(preds: list, docs: list[dict], spec, mode: str) -> dict[str, ItemStats]:
    """Per score name, the item statistics it is computed from; metrics registered as plain functions (no
    per-item form) are absent, and their scores then carry no interval."""
    from findap.eval.registry import get_metric

    out: dict[str, ItemStats] = {}
    for name in metric_names(spec, mode):
        metric = get_metric(name)
        if isinstance(metric, ItemMetric):
            stats = metric.stats(preds, docs, spec)
            out.update({score_name: stats for score_name in stats.reduce(stats.table.sum(axis=0))})
    return out


def score(preds: list, docs: list[dict], spec, mode: str) -> dict[str, float]:
    from findap.eval.registry import get_metric

    out: dict[str, float] = {}
    for name in metric_names(spec, mode):
        out.update(get_metric(name)(preds, docs, spec))
    return out


# ---- the headline metric ------------------------------------------------------------------------------------
# Which score is a task's headline number when the result does not name one (first present wins).
PRIMARY_METRICS = (
    "acc", "accuracy", "f1_weighted", "weighted_f1", "entity_f1", "f1_entity", "f1", "f1_macro", "macro_f1",
    "mcc", "rouge1", "rouge_1", "rougeLsum", "rougeL", "em", "exact_match", "numeracy_f1", "score",
)
# Scores that describe the run rather than the model's quality: never a headline.
BOOKKEEPING = {"n", "missing", "n_judged", "n_parse_failures", "judge_attempts", "n_samples", "parse_failure_rate",
               "missing_rate", "top_pred_share"}
# The headline metric per answer type when a task declares no metric list (FinBen's choices: weighted F1 for
# classification, entity F1 for NER, ROUGE-1 for summaries; MT-bench's mean rating; accuracy elsewhere).
PRIMARY_BY_ANSWER_TYPE = {
    "multiple_choice": ("acc",),
    "classification": ("f1_weighted", "acc"),
    "ner": ("entity_f1",),
    "summarization": ("rouge1", "rougeLsum", "rougeL"),
    "numeric_qa": ("tatqa_em", "numeric_acc", "exact_match"),
    "judge": ("score", "accuracy"),
}


def primary_metric(scores: dict, declared: str | None, answer_type: str | None = None,
                   declared_metrics: Sequence[str] = ()) -> str | None:
    """The metric a task's headline shows: named by the result (`primary_metric`), else the answer type's usual
    headline, else the first output of the task's own metric list, else a well-known name, else the first number."""

    def usable(name: str) -> bool:
        # None is kept: a judge task where no verdict parsed has score None and still gets a row ("–").
        value = scores.get(name, False)
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))

    if declared and declared in scores:
        return declared
    for name in PRIMARY_BY_ANSWER_TYPE.get(answer_type or "", ()):
        if name in scores and usable(name):
            return name
    if declared_metrics:  # a custom metric list: its first output is the task author's headline
        first = next((n for n in scores if n not in BOOKKEEPING and usable(n)), None)
        if first:
            return first
    for name in PRIMARY_METRICS:
        if name in scores and usable(name):
            return name
    return next((n for n in scores if n not in BOOKKEEPING and usable(n)), None)
