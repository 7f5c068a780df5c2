"""When a stated number counts as the gold answer: FinEval's `numeric_acc` and distillation's exact check apply
one rule (integer golds exactly, other golds to their own rounding; a factor of 100 only as a percent)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from findap.distill.prompts import ReasoningItem
from findap.distill.trajectories import asks_percent, check_answer
from findap.eval.extract import extract_number
from findap.eval.metrics import numbers_match


# ------------------------------------------------------------------------------------------- FinEval numeric_acc
@pytest.mark.parametrize("pred, gold", [
    ("1000000", "1000000"), ("1,000,000", "1000000"), ("1000000.0", "1000000"), ("1000000.00", "1,000,000"),
    ("72", "72.0"), ("-16", "-16.0"),
    ("8.25", "8.25"), ("8.250", "8.25"), ("8.2549", "8.25"),  # 8.2549 rounds to the gold's 8.25
    ("0.375", "0.37"),  # half a unit at the gold's precision: the gold itself was rounded
])
def test_eval_accepts_the_gold_number(pred, gold):
    assert numbers_match(pred, gold)


@pytest.mark.parametrize("pred, gold", [
    ("1000099", "1000000"), ("1000001", "1000000"), ("999999.5", "1000000"),  # an integer gold is exact
    ("72.04", "72.0"), ("71.9", "72"), ("3501", "3500"),
    ("8.26", "8.25"), ("8.2551", "8.25"), ("8.3", "8.25"),
    ("0.3751", "0.37"), ("-8.25", "8.25"),
    (None, "3"), ("3", None), ("", "3"),
])
def test_eval_rejects_a_different_number(pred, gold):
    assert not numbers_match(pred, gold)


def test_eval_reads_the_extracted_number():
    assert numbers_match(extract_number("The total is $1,000,000.", {}, None), "1000000")
    assert numbers_match(extract_number("#### $1000000", {}, None), "1000000")
    assert not numbers_match(extract_number("Answer: 1000099", {}, None), "1000000")


# ------------------------------------------------------------------------------------ distillation's exact check
def _check(question: str, gold: str, reply: str) -> bool | None:
    return check_answer(reply, ReasoningItem("t", question, gold, "number", "test"))


def test_distill_integer_gold_is_exact():
    assert _check("How many bonds does the fund hold?", "1000", "Answer: 1000") is True
    assert _check("How many bonds does the fund hold?", "1000", "Answer: 1,000.00") is True
    assert _check("How many bonds does the fund hold?", "1000", "Answer: 1001") is False
    assert _check("How many bonds does the fund hold?", "1000000", "Answer: 1000099") is False


def test_distill_non_integer_gold_to_its_own_precision():
    assert _check("What is the rate?", "8.25", "Answer: 8.250") is True
    assert _check("What is the rate?", "8.25", "Answer: 8.26") is False
    assert _check("What is the change?", "-22.22", "Answer: -22.2") is False


# Numbers in the question carry '%', but it asks for a count or an amount: x100 and /100 are wrong answers.
NOT_ASKING_PERCENT = [
    "A store sells 50 apples at a 30% discount. How many dollars does it earn if an apple costs 70 cents?",
    "Betty saves 20% of her salary every month. If she earns $175, how much does she save?",
    "The price of a toy rose by 10 percent to $35. What is the new price in dollars?",
    "Revenue | 10% | 20%\nCost | 5% | 7%\n\nQuestion: How many segments grew?",
]
ASKING_PERCENT = [
    "There are 20 students and 7 are girls. What percentage of the students are girls?",
    "A price went from $20 to $27. What is the percentage change in the share price?",
    "A share costs $40 and pays $1.40 a year in dividends. What is the annual dividend yield in percent?",
    "Revenue | 10 | 20\n\nQuestion: What is the change in margin? (answer in percent)",
    "He paid $7 of the $20 bill. Express his share as a percentage.",
    "Sales rose from 20 to 27. By what percent did sales increase?",
    "Of 20 loans, 7 defaulted. What is the default rate, expressed as a decimal?",
]


@pytest.mark.parametrize("question", NOT_ASKING_PERCENT)
def test_percent_in_a_number_is_not_a_percent_question(question):
    assert not asks_percent(question)
    assert _check(question, "35", "Answer: 35") is True
    assert _check(question, "35", "Answer: 3500") is False  # the issue: this became a "chosen" solution
    assert _check(question, "35", "Answer: 0.35") is False


@pytest.mark.parametrize("question", ASKING_PERCENT)
def test_a_percent_question_accepts_the_other_scale(question):
    assert asks_percent(question)
    assert _check(question, "35", "Answer: 0.35") is True
    assert _check(question, "0.35", "Answer: 35") is True
    assert _check(question, "35", "Answer: 0.354") is False  # 35.4 is not the integer gold 35
    assert _check(question, "35", "Answer: 5") is False


def test_a_written_percent_sign_is_exact_under_any_question():
    question = NOT_ASKING_PERCENT[0]
    assert _check(question, "0.0825", "Answer: 8.25%") is True
    assert _check(question, "8.25%", "Answer: 0.0825") is True
    assert _check(question, "25%", "Answer: 25") is True
    assert _check(question, "25%", "Answer: 0.25%") is False  # both written in percent: no factor between them


GSM8K = Path(__file__).parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"


@pytest.mark.skipif(not GSM8K.exists(), reason="needs ../shared/data/gsm8k")
def test_gsm8k_questions_that_only_mention_percent_are_not_percent_questions():
    questions = [json.loads(line)["question"] for line in GSM8K.read_text(encoding="utf-8").splitlines()]
    with_percent = [q for q in questions if "%" in q or "percent" in q.lower()]
    asking = [q for q in with_percent if asks_percent(q)]
    # most GSM8K questions that mention a percent ask for an amount, not for a percent
    assert len(with_percent) > 900 and len(asking) < len(with_percent) / 2
