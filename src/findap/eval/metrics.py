"""Metrics: predictions + docs -> scores. Every metric is `fn(preds, docs, spec) -> {name: float}`.

Standard metrics come from their reference libraries (scikit-learn, seqeval, rouge-score) so our numbers are
theirs. The TAT-QA metric is written here from the official definition (NExTplusplus/TAT-QA `tatqa_metric.py`):
it is not on PyPI, and its numeracy-aware normalisation (scale words, '%', '(123)' as negative) is the point.
A prediction of None (nothing extracted) is `missing` and always counts as wrong; F1 is never binary here.
"""
from __future__ import annotations

import math
import re
import string

import numpy as np

from findap.eval.registry import register_metric

MISSING = "missing"


def _mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else 0.0


# ---- classification and multiple choice ---------------------------------------------------------------------
def _mc_pick(pred, key: str = "pred"):
    return pred.get(key) if isinstance(pred, dict) else pred


def _labels(preds, spec) -> list[str]:
    """Unmatched outputs become the task's default label (stock movement style) or the `missing` class."""
    fallback = spec.default_label or MISSING
    return [p if p is not None else fallback for p in preds]


def _golds(docs) -> list:
    return [d["gold"] for d in docs]


@register_metric("acc")
def accuracy(preds, docs, spec) -> dict:
    if spec.answer_type == "classification":
        preds = _labels(preds, spec)
    else:
        preds = [_mc_pick(p) for p in preds]
    return {"acc": _mean(p is not None and p == g for p, g in zip(preds, _golds(docs)))}


@register_metric("acc_norm")
def accuracy_norm(preds, docs, spec) -> dict:
    """Multiple choice by log-likelihood divided by the option's length in characters (lm-eval's acc_norm)."""
    picks = [_mc_pick(p, "pred_norm") if isinstance(p, dict) else p for p in preds]
    return {"acc_norm": _mean(p is not None and p == g for p, g in zip(picks, _golds(docs)))}


@register_metric("f1_weighted")
def f1_weighted(preds, docs, spec) -> dict:
    from sklearn.metrics import f1_score

    # labels= restricts the average to the real classes: a `missing` prediction only lowers recall
    return {"f1_weighted": float(f1_score(_golds(docs), _labels(preds, spec), labels=spec.labels,
                                          average="weighted", zero_division=0))}


@register_metric("f1_macro")
def f1_macro(preds, docs, spec) -> dict:
    from sklearn.metrics import f1_score

    return {"f1_macro": float(f1_score(_golds(docs), _labels(preds, spec), labels=spec.labels,
                                       average="macro", zero_division=0))}


@register_metric("mcc")
def mcc(preds, docs, spec) -> dict:
    from sklearn.metrics import matthews_corrcoef

    return {"mcc": float(matthews_corrcoef(_golds(docs), _labels(preds, spec)))}


@register_metric("missing")
def missing(preds, docs, spec) -> dict:
    """Share of outputs where no answer could be extracted."""
    return {"missing": _mean(_mc_pick(p) is None for p in preds)}


# ---- NER and summarization ----------------------------------------------------------------------------------
@register_metric("entity_f1")
def entity_f1(preds, docs, spec) -> dict:
    from seqeval.metrics import f1_score, precision_score, recall_score

    gold = [list(d["tags"]) for d in docs]
    pred = [list(p) if p else ["O"] * len(d["tags"]) for p, d in zip(preds, docs)]
    return {"entity_f1": float(f1_score(gold, pred, zero_division=0)),
            "entity_precision": float(precision_score(gold, pred, zero_division=0)),
            "entity_recall": float(recall_score(gold, pred, zero_division=0))}


@register_metric("rouge")
def rouge(preds, docs, spec) -> dict:
    """Mean ROUGE-1/2/L F-measure (rouge-score, Porter stemming)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(str(d["gold"]), p or "") for p, d in zip(preds, docs)]
    return {k: _mean(s[k].fmeasure for s in scores) for k in ("rouge1", "rouge2", "rougeL")}


# ---- numeric and open QA ------------------------------------------------------------------------------------
def _to_float(x) -> float | None:
    try:
        return float(str(x).replace(",", ""))
    except (TypeError, ValueError):
        return None


def numbers_match(pred, gold, rel_tol: float = 1e-4, abs_tol: float = 1e-6) -> bool:
    p, g = _to_float(pred), _to_float(gold)
    return p is not None and g is not None and math.isclose(p, g, rel_tol=rel_tol, abs_tol=abs_tol)


@register_metric("numeric_acc")
def numeric_acc(preds, docs, spec) -> dict:
    """A single number within a relative tolerance of 1e-4 of any gold (GSM8K `#### N`, generated exercises)."""
    return {"numeric_acc": _mean(any(numbers_match(p, g) for g in d["gold"]) for p, d in zip(preds, docs))}


def _normalize_text(s: str) -> str:
    s = "".join(ch for ch in str(s).lower() if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


@register_metric("exact_match")
def exact_match(preds, docs, spec) -> dict:
    """SQuAD-style normalised exact match against any acceptable answer (NQ-open)."""
    return {"exact_match": _mean(p is not None and any(_normalize_text(p) == _normalize_text(g) for g in d["gold"])
                                 for p, d in zip(preds, docs))}


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


def _em_f1(pred: str, gold: str) -> tuple[float, float]:
    """DROP-style EM and bag-of-tokens F1 between two answer strings (spans aligned one-to-one)."""
    from scipy.optimize import linear_sum_assignment

    p_spans, g_spans = [_normalize_tatqa(pred)], [_normalize_tatqa(gold)]
    em = 1.0 if set(p_spans) == set(g_spans) and len(p_spans) == len(g_spans) else 0.0
    p_bags, g_bags = [set(s.split()) for s in p_spans], [set(s.split()) for s in g_spans]
    scores = np.array([[_bag_f1(p, g) for p in p_bags] for g in g_bags])
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


def tatqa_em_f1(pred_answers: list, pred_scale: str, gold_raw, gold_type: str, gold_scale: str) -> tuple[float, float]:
    """EM and numeracy-aware F1 of one TAT-QA prediction, as the official scorer computes them."""
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
    em, f1 = max(_em_f1(p, g) for p in pred_strings for g in gold_strings)
    if gold_type in ("arithmetic", "count"):
        f1 = em  # numbers are right or wrong: no partial credit
    return em, f1


@register_metric("tatqa")
def tatqa(preds, docs, spec) -> dict:
    ems, f1s = [], []
    for pred, doc in zip(preds, docs):
        pred = pred or {"answer": [], "scale": ""}
        em, f1 = tatqa_em_f1(pred["answer"], pred["scale"], doc.get("gold_raw", doc["gold"]),
                             doc.get("gold_type", "span"), doc.get("scale", ""))
        ems.append(em)
        f1s.append(f1)
    return {"tatqa_em": _mean(ems), "tatqa_f1": _mean(f1s)}


DEFAULT_METRICS = {
    "multiple_choice": ["acc", "acc_norm"],
    "classification": ["acc", "f1_weighted", "f1_macro", "mcc", "missing"],
    "ner": ["entity_f1"],
    "summarization": ["rouge"],
    "numeric_qa": ["numeric_acc"],
    "judge": [],
}


def metric_names(spec, mode: str) -> list[str]:
    names = spec.metrics or DEFAULT_METRICS[spec.answer_type]
    if spec.answer_type == "multiple_choice" and mode == "cot":
        names = [n for n in names if n != "acc_norm"] + (["missing"] if "missing" not in names else [])
    return names


def score(preds: list, docs: list[dict], spec, mode: str) -> dict[str, float]:
    from findap.eval.registry import get_metric

    out: dict[str, float] = {}
    for name in metric_names(spec, mode):
        out.update(get_metric(name)(preds, docs, spec))
    return out
