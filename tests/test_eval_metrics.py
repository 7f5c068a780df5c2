"""FinEval metrics equal their references on the same predictions (sklearn, seqeval, rouge-score, TAT-QA)."""
from __future__ import annotations

import random

import pytest

from findap.eval.metrics import numbers_match, score, tatqa_em_f1
from findap.eval.registry import get_task
from findap.eval.task import TaskSpec


def _spec(**kw) -> TaskSpec:
    base = dict(name="t", capability="task", domain="finance", novelty="similar", answer_type="classification",
                labels=["positive", "neutral", "negative"], source={"loader": "jsonl", "args": {"path": "x"}})
    base.update(kw)
    return TaskSpec.model_validate(base)


def test_classification_metrics_equal_sklearn_with_missing_counted_wrong():
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    rng = random.Random(0)
    labels = ["positive", "neutral", "negative"]
    gold = [rng.choice(labels) for _ in range(200)]
    preds = [g if rng.random() < 0.5 else rng.choice(labels + [None]) for g in gold]
    docs = [{"gold": g} for g in gold]
    got = score(preds, docs, _spec(metrics=["acc", "f1_weighted", "f1_macro", "mcc", "missing"]), "direct")
    filled = [p if p is not None else "missing" for p in preds]
    assert got["acc"] == pytest.approx(accuracy_score(gold, filled))
    assert got["f1_weighted"] == pytest.approx(f1_score(gold, filled, labels=labels, average="weighted"))
    assert got["f1_macro"] == pytest.approx(f1_score(gold, filled, labels=labels, average="macro"))
    assert got["mcc"] == pytest.approx(matthews_corrcoef(gold, filled))
    assert got["missing"] == pytest.approx(preds.count(None) / len(preds))
    # a 3-class task never gets a binary F1: binary averaging would raise on these labels
    with pytest.raises(ValueError):
        f1_score(gold, filled, average="binary", pos_label="positive")


def test_default_label_replaces_missing_for_stock_movement():
    spec = _spec(labels=["rise", "fall"], default_label="fall", metrics=["acc", "missing"])
    got = score([None, "rise", None], [{"gold": "fall"}, {"gold": "rise"}, {"gold": "rise"}], spec, "direct")
    # every classification task also gets macro-F1, MCC and the top answer's share, whatever its list names:
    # scored as ["fall", "rise", "fall"] against ["fall", "rise", "rise"] (MCC by hand: 1 / sqrt(1 * 2 * 1 * 2))
    assert got == {"acc": pytest.approx(2 / 3), "missing": pytest.approx(2 / 3), "f1_macro": pytest.approx(2 / 3),
                   "mcc": pytest.approx(0.5), "top_pred_share": pytest.approx(2 / 3)}


def test_entity_f1_equals_seqeval():
    from seqeval.metrics import f1_score

    gold = [["B-ORG", "I-ORG", "O", "B-PER"], ["O", "B-LOC", "O"]]
    pred = [["B-ORG", "I-ORG", "O", "O"], ["O", "B-LOC", "B-PER"]]
    spec = _spec(answer_type="ner", labels=[], metrics=["entity_f1"])
    got = score(pred, [{"tags": g, "gold": g} for g in gold], spec, "direct")
    assert got["entity_f1"] == pytest.approx(f1_score(gold, pred))
    # hand count: 2 of 3 predicted spans right, 2 of 3 gold spans found -> P = R = F1 = 2/3
    assert got["entity_f1"] == pytest.approx(2 / 3)


def test_rouge_equals_rouge_score():
    from rouge_score import rouge_scorer

    golds = ["q1 revenue rose 11.1 percent to $481.1 million.", "sees fy revenue $1.725 billion to $1.775 billion."]
    preds = ["Revenue rose 11.1% to $481.1 million in q1.", "The company expects revenue of about $1.7 billion."]
    got = score(preds, [{"gold": g} for g in golds], _spec(answer_type="summarization", labels=[], metrics=["rouge"]), "direct")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for key in ("rouge1", "rouge2", "rougeL"):
        ref = sum(scorer.score(g, p)[key].fmeasure for g, p in zip(golds, preds)) / 2
        assert got[key] == pytest.approx(ref)
    assert 0 < got["rouge2"] < got["rouge1"] < 1


def test_multiple_choice_acc_and_acc_norm():
    spec = _spec(answer_type="multiple_choice", labels=[], metrics=["acc", "acc_norm"])
    preds = [{"pred": 0, "pred_norm": 1}, {"pred": 2, "pred_norm": 2}]
    got = score(preds, [{"gold": 1}, {"gold": 2}], spec, "direct")
    assert got == {"acc": 0.5, "acc_norm": 1.0, "top_pred_share": 0.5}  # the docs name no options: no MCC
    # CoT answers are letters turned into indices: acc_norm does not apply, missing does
    got = score([1, None], [{"gold": 1}, {"gold": 2}], spec, "cot")
    assert got == {"acc": 0.5, "missing": 0.5, "top_pred_share": 0.5}


def test_numeric_tolerance():
    assert numbers_match("72", "72.0") and numbers_match("1,000", "1000")
    assert not numbers_match("71.9", "72") and not numbers_match(None, "3")


# TAT-QA: expected values worked by hand from the official definition (tatqa_metric.py / tatqa_utils.py):
# numbers become '%.4f' of round(x, 2) * scale ('%' answers are already scaled), answers of arithmetic/count
# type get F1 = EM, and multi-span F1 is the bag-of-tokens F1 after lowercasing and dropping punctuation.
@pytest.fixture(scope="module")
def tatqa_docs(shared_data):
    task = get_task("tatqa", root=shared_data)
    return task.all_docs


def _find(docs, raw, gold_type):
    return next(d for d in docs if d["gold_raw"] == raw and d["gold_type"] == gold_type)


@pytest.mark.parametrize(
    "raw,gold_type,pred,pred_scale,expected",
    [
        # "$1,496.5" million: 1496.5 * 1e6 -> '1496500000.0000' on both sides
        (["$1,496.5"], "span", ["1,496.5"], "million", (1.0, 1.0)),
        # same number without its scale: '1496.5000' vs '1496500000.0000', tokens share nothing
        (["$1,496.5"], "span", ["1,496.5"], "", (0.0, 0.0)),
        # arithmetic -12.6 million: '-12600000.0000'; right number, right scale
        (-12.6, "arithmetic", ["-12.6"], "million", (1.0, 1.0)),
        # right number, scale dropped: EM 0 and, being arithmetic, F1 = EM = 0
        (-12.6, "arithmetic", ["-12.6"], "", (0.0, 0.0)),
        # -22.22 percent: gold round(-22.22, 2) * 0.01 -> '-0.2222'; '-22.22%' is scaled by its own '%'
        (-22.22, "arithmetic", ["-22.22%"], "percent", (1.0, 1.0)),
        # a bare ratio: '%.4f' of round(-0.2222, 2) is '-0.2200' (wrong) but the unscaled fallback '-0.2222' matches
        (-22.22, "arithmetic", ["-0.2222"], "", (1.0, 1.0)),
        # multi-span, 2 of 3 items: bags {costplus, type, fixedprice} vs {..., timeandmaterial}: P=1, R=3/4 -> 0.86
        (["fixed-price type", "cost-plus type", "time-and-material type"], "multi-span",
         ["fixed-price type", "cost-plus type"], "", (0.0, 0.86)),
        # all three items in another order: sorted before joining -> exact match
        (["fixed-price type", "cost-plus type", "time-and-material type"], "multi-span",
         ["time-and-material type", "cost-plus type", "fixed-price type"], "", (1.0, 1.0)),
        # a year is a number: '2019.0000' both sides
        (["2019"], "span", ["2019"], "", (1.0, 1.0)),
    ],
)
def test_tatqa_matches_hand_computed_official_values(tatqa_docs, raw, gold_type, pred, pred_scale, expected):
    doc = _find(tatqa_docs, raw, gold_type)
    got = tatqa_em_f1(pred, pred_scale, doc["gold_raw"], doc["gold_type"], doc["scale"])
    assert got == pytest.approx(expected)


def test_tatqa_empty_prediction_scores_zero(tatqa_docs):
    doc = tatqa_docs[0]
    assert tatqa_em_f1([], "", doc["gold_raw"], doc["gold_type"], doc["scale"]) == (0.0, 0.0)


# TAT-QA's official scorer leaves DROP's number rule switched off ("# if _match_numbers_if_present(...): no need to
# match number in tatqa" in tatqa_metric.py `_align_bags`); `tatqa_f1_drop` switches it on. Values by hand:
@pytest.mark.parametrize(
    "pred,official,drop",
    [
        # {3.5, years} vs gold {2.5, years}: P = R = 1/2 -> F1 0.5; the gold number 2.5 is absent -> DROP 0
        (["3.5 years"], 0.5, 0.0),
        # {about, 2.5, years} vs {2.5, years}: P = 2/3, R = 1 -> F1 0.8; the number is there -> DROP keeps 0.8
        (["about 2.5 years"], 0.8, 0.8),
        (["2.5 years"], 1.0, 1.0),
    ],
)
def test_tatqa_drop_number_rule_on_a_real_span_gold(tatqa_docs, pred, official, drop):
    doc = _find(tatqa_docs, ["2.5 years"], "span")
    gold = (doc["gold_raw"], doc["gold_type"], doc["scale"])
    assert tatqa_em_f1(pred, "", *gold)[1] == pytest.approx(official)
    assert tatqa_em_f1(pred, "", *gold, numbers_must_match=True)[1] == pytest.approx(drop)


def test_tatqa_metric_reports_official_and_drop_f1():
    # the example: 2 of 3 tokens shared -> official F1 0.67; gold number 2018 not stated -> DROP F1 0
    spec = _spec(answer_type="numeric_qa", labels=[], metrics=["tatqa"])
    docs = [{"gold": ["fiscal 2018 revenue"], "gold_raw": ["fiscal 2018 revenue"], "gold_type": "span", "scale": ""}]
    got = score([{"answer": ["fiscal 2019 revenue"], "scale": ""}], docs, spec, "direct")
    assert got == {"tatqa_em": 0.0, "tatqa_f1": pytest.approx(0.67), "tatqa_f1_drop": 0.0}


def test_rouge_lsum_on_multi_sentence_summaries_equals_rouge_score():
    """ECTSum-style: gold bullet lines, predictions written as one paragraph. rougeLsum is rouge-score's, on the
    texts split one sentence per line (here split by hand for the reference), and differs from plain rougeL."""
    from rouge_score import rouge_scorer

    gold_sentences = [["Q1 adjusted earnings per share $1.01.", "Sees fiscal 2021 revenue of $6.1 billion."],
                      ["Net sales rose 12% to $2.3 billion.", "Company raises full-year guidance."]]
    pred_sentences = [["Sees fiscal 2021 revenue of $6.1 billion.", "Q1 adjusted earnings per share were $1.01."],
                      ["The company raises guidance.", "Sales rose 12% to $2.3 billion!", "Margins fell."]]
    docs = [{"gold": "\n".join(g)} for g in gold_sentences]
    preds = [" ".join(p) for p in pred_sentences]
    spec = _spec(answer_type="summarization", labels=[], metrics=["rouge_sum"])
    got = score(preds, docs, spec, "direct")
    assert set(got) == {"rouge1", "rouge2", "rougeLsum"}
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    ref = [scorer.score("\n".join(g), "\n".join(p)) for g, p in zip(gold_sentences, pred_sentences)]
    for key in ("rouge1", "rouge2", "rougeLsum"):
        assert got[key] == pytest.approx(sum(r[key].fmeasure for r in ref) / 2)
    plain_l = sum(r["rougeL"].fmeasure for r in ref) / 2
    assert got["rougeLsum"] > plain_l + 0.05  # sentence order swapped: summary-level LCS recovers it


def test_ectsum_and_edtsum_report_rouge_lsum():
    for name in ("ectsum", "edtsum"):
        assert get_task(name).spec.metrics == ["rouge_sum"]


def _resampled(values: list, counts) -> list:
    return [v for v, c in zip(values, counts) for _ in range(int(c))]


def test_resampled_scores_from_item_stats_equal_sklearn_and_seqeval():
    """The bootstrap's shortcut (column sums of per-item statistics) gives on each resample exactly what the
    reference libraries give on that resample written out item by item."""
    import numpy as np
    from seqeval.metrics import f1_score as seq_f1
    from sklearn.metrics import f1_score, matthews_corrcoef

    from findap.eval.metrics import item_stats

    rng = random.Random(3)
    labels = ["positive", "neutral", "negative"]
    gold = [rng.choice(labels) for _ in range(60)]
    preds = [g if rng.random() < 0.6 else rng.choice(labels + [None]) for g in gold]
    spec = _spec(metrics=["f1_weighted", "f1_macro", "mcc"])
    stats = item_stats(preds, [{"gold": g} for g in gold], spec, "direct")
    filled = [p if p is not None else "missing" for p in preds]
    counts = np.random.default_rng(0).multinomial(60, [1 / 60] * 60, size=5).astype(float)
    for c in counts:
        g, p = _resampled(gold, c), _resampled(filled, c)
        assert stats["f1_weighted"].reduce(c @ stats["f1_weighted"].table)["f1_weighted"] == pytest.approx(
            f1_score(g, p, labels=labels, average="weighted", zero_division=0))
        assert stats["f1_macro"].reduce(c @ stats["f1_macro"].table)["f1_macro"] == pytest.approx(
            f1_score(g, p, labels=labels, average="macro", zero_division=0))
        assert stats["mcc"].reduce(c @ stats["mcc"].table)["mcc"] == pytest.approx(matthews_corrcoef(g, p))

    tags = [["B-ORG", "I-ORG", "O", "B-PER"], ["O", "B-LOC", "O"], ["B-PER", "O"], ["O", "O", "B-ORG"]]
    pred_tags = [["B-ORG", "I-ORG", "O", "O"], ["O", "B-LOC", "B-PER"], ["B-PER", "O"], None]
    ner = item_stats(pred_tags, [{"tags": t, "gold": t} for t in tags],
                     _spec(answer_type="ner", labels=[], metrics=["entity_f1"]), "direct")["entity_f1"]
    filled_tags = [p or ["O"] * len(t) for p, t in zip(pred_tags, tags)]
    for c in ([1, 1, 1, 1], [2, 0, 1, 3], [0, 3, 0, 1]):
        c = np.asarray(c, dtype=float)
        assert ner.reduce(c @ ner.table)["entity_f1"] == pytest.approx(
            seq_f1(_resampled(tags, c), _resampled(filled_tags, c), zero_division=0))


def test_top_answer_share_and_fixed_choice_mcc_equal_sklearn():
    """`top_pred_share` is the largest column of scikit-learn's confusion matrix (what was predicted) over the
    item count, on the scores' labels and on every bootstrap resample; a multiple-choice task whose items all offer
    the same options gets MCC and macro-F1 over those options as scikit-learn gives them on the option texts, and
    options that change from item to item give neither (an option index is no class there)."""
    from collections import Counter

    import numpy as np
    from sklearn.metrics import confusion_matrix, f1_score, matthews_corrcoef

    from findap.eval.metrics import item_stats, top_prediction

    rng = random.Random(5)
    labels = ["positive", "neutral", "negative"]
    gold = [rng.choice(labels) for _ in range(120)]
    preds = [g if rng.random() < 0.3 else rng.choice(["neutral"] * 4 + [None]) for g in gold]
    spec = _spec(metrics=["acc", "f1_weighted"])  # a list naming none of them: every classification task gets them
    docs = [{"gold": g} for g in gold]
    got = score(preds, docs, spec, "direct")
    filled = [p if p is not None else "missing" for p in preds]
    classes = labels + ["missing"]
    predicted = confusion_matrix(gold, filled, labels=classes).sum(axis=0)
    assert got["top_pred_share"] == pytest.approx(predicted.max() / len(gold))
    assert top_prediction(preds, docs, spec) == ("neutral", pytest.approx(predicted.max() / len(gold)))
    assert classes[int(predicted.argmax())] == "neutral"
    assert got["mcc"] == pytest.approx(matthews_corrcoef(gold, filled))
    assert got["f1_macro"] == pytest.approx(f1_score(gold, filled, labels=labels, average="macro"))
    stats = item_stats(preds, docs, spec, "direct")["top_pred_share"]
    for c in np.random.default_rng(1).multinomial(120, [1 / 120] * 120, size=5).astype(float):
        resampled = confusion_matrix(_resampled(gold, c), _resampled(filled, c), labels=classes).sum(axis=0)
        assert stats.reduce(c @ stats.table)["top_pred_share"] == pytest.approx(resampled.max() / 120)

    # BoolQ-style: every item offers true/false. `pred` (what acc scores) is the answer, not `pred_norm`.
    mc = _spec(answer_type="multiple_choice", labels=[], metrics=["acc", "acc_norm"])
    options = ["true", "false"]
    mc_gold = [rng.randrange(2) for _ in range(80)]
    picks = [g if rng.random() < 0.6 else 0 for g in mc_gold]
    mc_docs = [{"gold": g, "choices": list(options)} for g in mc_gold]
    mc_preds = [{"pred": p, "pred_norm": 1 - p} for p in picks]
    got = score(mc_preds, mc_docs, mc, "direct")
    gold_text, pred_text = [options[g] for g in mc_gold], [options[p] for p in picks]
    assert got["mcc"] == pytest.approx(matthews_corrcoef(gold_text, pred_text))
    assert got["f1_macro"] == pytest.approx(f1_score(gold_text, pred_text, labels=options, average="macro"))
    top, count = Counter(pred_text).most_common(1)[0]
    assert got["top_pred_share"] == pytest.approx(count / 80) and top_prediction(mc_preds, mc_docs, mc)[0] == top
    stats = item_stats(mc_preds, mc_docs, mc, "direct")["mcc"]
    for c in np.random.default_rng(2).multinomial(80, [1 / 80] * 80, size=5).astype(float):
        assert stats.reduce(c @ stats.table)["mcc"] == pytest.approx(
            matthews_corrcoef(_resampled(gold_text, c), _resampled(pred_text, c)))
    # chain of thought: an answer nothing could be read from is the `missing` class, as in classification
    cot = [p if i % 7 else None for i, p in enumerate(picks)]
    cot_text = [options[p] if p is not None else "missing" for p in cot]
    got = score(cot, mc_docs, mc, "cot")
    assert got["mcc"] == pytest.approx(matthews_corrcoef(gold_text, cot_text))
    assert got["f1_macro"] == pytest.approx(f1_score(gold_text, cot_text, labels=options, average="macro"))
    # options that differ per item (ARC, MMLU): no MCC; the top answer is a letter (always "A" is constant too)
    varying = [{"gold": g, "choices": [f"{i}-yes", f"{i}-no"]} for i, g in enumerate(mc_gold)]
    got = score(mc_preds, varying, mc, "direct")
    assert "mcc" not in got and "f1_macro" not in got
    assert top_prediction(mc_preds, varying, mc) == ({"true": "A", "false": "B"}[top], pytest.approx(count / 80))


def test_diagnostics_are_added_once_to_any_metric_list():
    from findap.eval.metrics import metric_names

    assert metric_names(_spec(metrics=["acc", "mcc"]), "direct") == ["acc", "mcc", "f1_macro", "top_pred"]
    mc = _spec(answer_type="multiple_choice", labels=[], metrics=["acc", "acc_norm"])
    assert metric_names(mc, "direct") == ["acc", "acc_norm", "choice_mcc", "top_pred"]
    assert metric_names(mc, "cot") == ["acc", "missing", "choice_mcc", "top_pred"]
    assert metric_names(_spec(answer_type="ner", labels=[], metrics=["entity_f1"]), "direct") == ["entity_f1"]
