"""Answer extraction on realistic model outputs (direct and CoT)."""
from __future__ import annotations

import pytest

from findap.eval.extract import (
    entities_to_tags,
    extract_label,
    extract_letter,
    extract_number,
    extract_tatqa,
    final_answer,
)
from findap.eval.task import TaskSpec


def _spec(**kw) -> TaskSpec:
    base = dict(name="t", capability="task", domain="finance", novelty="similar", answer_type="classification",
                source={"loader": "jsonl", "args": {"path": "x"}})
    base.update(kw)
    return TaskSpec.model_validate(base)


SENTIMENT = _spec(labels=["positive", "neutral", "negative"])
STOCK = _spec(labels=["rise", "fall"], synonyms={"rise": ["yes", "positive"], "fall": ["no", "negative", "neutral"]},
              default_label="fall")


@pytest.mark.parametrize(
    "output,expected",
    [
        ("Positive.", "positive"),  # real SmolLM2 reply
        ("Positive sentiment: All rights reserved", "positive"),
        ("The sentiment of this sentence is **negative**, since sales fell.", "negative"),
        # CoT: the reasoning mentions other labels; the final line decides
        ("The company grew, which sounds positive, but the tone is factual.\nAnswer: neutral", "neutral"),
        ("I cannot tell.", None),  # nothing usable -> missing
        ("nonpositive", None),  # whole words only
    ],
)
def test_label_extraction(output, expected):
    assert extract_label(output, {}, SENTIMENT) == expected


def test_label_synonyms_map_to_labels():
    assert extract_label("Yes, the price will go up.", {}, STOCK) == "rise"
    assert extract_label("Answer: negative", {}, STOCK) == "fall"
    assert extract_label("Hard to say.", {}, STOCK) is None  # the metric applies default_label and counts missing


@pytest.mark.parametrize(
    "output,expected",
    [
        ("Selection: [[B]]", 1),  # the hub's CFA-Challenge format
        ("Answer: C", 2),
        ("The correct option is (A) because inflation expectations matter.", 0),
        ("B. liquidity", 1),
        ("Option A ignores risk; option B overstates it.\nSo the best choice is C.\nAnswer: C", 2),
        ("A good way to think about this is carefully.", None),  # an article, not an answer
        ("equal to zero.", 1),  # the option text itself, when it names exactly one option
    ],
)
def test_letter_extraction(output, expected):
    doc = {"choices": ["negative.", "equal to zero.", "positive."]}
    assert extract_letter(output, doc, None) == expected


@pytest.mark.parametrize(
    "output,expected",
    [
        ("Natalia sold 48/2 = 24 clips in May.\nIn total 48+24 = 72 clips.\n#### 72", "72"),
        ("The answer is $1,250.50.", "1250.50"),
        ("Step 1: 10 - 3 = 7\nAnswer: 7", "7"),
        ("Net change: (1,234)", "-1234"),
        ("no idea", None),
    ],
)
def test_number_extraction(output, expected):
    assert extract_number(output, {}, None) == expected


def test_tatqa_extraction_splits_spans_and_reads_scale():
    assert extract_tatqa("Answer: 12.6 million", {}, None) == {"answer": ["12.6"], "scale": "million"}
    assert extract_tatqa("The change is -22.22%", {}, None) == {"answer": ["-22.22%"], "scale": "percent"}
    assert extract_tatqa("Answer: fixed-price type; cost-plus type", {}, None) == {
        "answer": ["fixed-price type", "cost-plus type"], "scale": ""}


def test_ner_lines_to_iob_tags():
    tokens = "This agreement between SILICON VALLEY BANK and John Smith of California".split()
    output = "SILICON VALLEY BANK, ORG\nJohn Smith, PER\nCalifornia, LOC\nNew York, LOC\nfoo, MONEY"
    assert entities_to_tags(output, tokens, ["PER", "ORG", "LOC"]) == [
        "O", "O", "O", "B-ORG", "I-ORG", "I-ORG", "O", "B-PER", "I-PER", "O", "B-LOC"]
    assert entities_to_tags("None", tokens, ["PER", "ORG", "LOC"]) == ["O"] * len(tokens)


def test_final_answer_keeps_text_after_last_marker():
    assert final_answer("Reasoning... Answer: A\nWait.\nFinal answer: B") == "B"
    assert final_answer("no marker here") == "no marker here"


FOMC = _spec(labels=["dovish", "hawkish", "neutral"])


@pytest.mark.parametrize("spec, output, expected", [
    # issue #11: label order used to decide; the label the answer states (and is not negated) wins now
    (SENTIMENT, "Negative. It is not a positive development.", "negative"),
    (FOMC, "Answer: neutral (neither hawkish nor dovish)", "neutral"),
    (FOMC, "Hawkish. The Committee will keep raising rates; it is not dovish.", "hawkish"),
    (SENTIMENT, "Despite positive sales, the overall sentiment is **negative**.", "negative"),
    (SENTIMENT, "The news is not negative; the tone is neutral.", "neutral"),
    (STOCK, "It will not rise; I predict a fall.", "fall"),
])
def test_label_is_the_one_stated(spec, output, expected):
    assert extract_label(output, {}, spec) == expected


@pytest.mark.parametrize("output, expected", [
    ("Answer: C, since option A ignores the tax shield.", 2),  # issue #11: was A
    ("B. Option A ignores taxes.", 1),  # issue #11: was A
    ("The answer is D.", 3),
    ("I think it's A, but actually C.", 2),
    ("**Answer:** B", 1),
    ("Reasoning about option A and option B...\nTherefore, the answer is (B).", 1),
])
def test_letter_is_the_one_the_answer_states(output, expected):
    assert extract_letter(output, {"choices": ["w", "x", "y", "z"]}, None) == expected


@pytest.mark.parametrize("output, expected", [
    ("Answer: 990 (rounded to 2 decimals)", "990"),  # issue #11
    ("Answer: 990 dollars after 8 years", "990"),  # issue #11: was 8
    ("After 8 years, the balance is $2,490.", "2490"),
    ("Growth: 12%", "12"),
    ("Answer: −3.5", "-3.5"),
])
def test_number_right_after_the_marker(output, expected):
    assert extract_number(output, {}, None) == expected


def test_tatqa_reads_the_stated_number_and_its_scale():
    assert extract_tatqa("Answer: 12.6 million (up from 10.1 million in 2018)", {}, None) == {
        "answer": ["12.6"], "scale": "million"}
    assert extract_tatqa("Answer: revenue was $12.6 million in 2019", {}, None) == {
        "answer": ["12.6"], "scale": "million"}
    assert extract_tatqa("Answer: fiscal 2019 revenue", {}, None) == {"answer": ["fiscal 2019 revenue"], "scale": ""}



def _task_spec(name: str) -> TaskSpec:
    from findap.eval.registry import all_specs

    return all_specs()[name]


CRA = _task_spec("cra_polish")  # labels yes / no
SM = _task_spec("sm_acl")  # rise / fall, 'yes' and 'no' among their synonyms


@pytest.mark.parametrize("task, output, expected", [
    # 'no' quantifying the noun after it ('no sign', 'no major news') is not the label 'no'
    (CRA, "There is no sign of default, so yes.", "yes"),
    (CRA, "No default is likely given no late payments; yes.", "yes"),
    (CRA, "With no missing payments and no debt, the answer is: yes", "yes"),
    (SM, "Given no major news, I expect it to rise.", "rise"),
    (SM, "No negative tweets and no bad earnings: up.", "rise"),
    # 'no' standing as the answer still reads 'no' / 'fall'
    (CRA, "No.", "no"),
    (CRA, "no", "no"),
    (CRA, "Answer: no", "no"),
    (CRA, "no, it will not file a claim.", "no"),
    (CRA, "**No** - the ratios are healthy.", "no"),
    (CRA, "No the company is not in distress.", "no"),
    (CRA, "There is no sign of fraud in the record, so no.", "no"),
    (CRA, "Given no red flags in the record, my answer is no.", "no"),
    (SM, "No, it will go down.", "fall"),
    (SM, "Answer: no", "fall"),
    (SM, "Despite no major news, I expect a fall.", "fall"),
])
def test_determiner_no_is_not_the_label(task, output, expected):
    assert extract_label(output, {}, task) == expected
