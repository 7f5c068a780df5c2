"""Exercise answers re-derived with independent formulas, every solution step re-checked by evaluating its
arithmetic, and corrupt_solution's first wrong step located by that same checker."""
from __future__ import annotations

import ast
import json
import math
import operator
import random
import re
from fractions import Fraction

import pytest

from findap.demo import data_path, generate_exercises
from findap.demo.catalog import EXERCISES_SEED, EXERCISES_SHIPPED
from findap.demo.exercises import TOPICS, corrupt_solution

EXERCISES = generate_exercises(EXERCISES_SHIPPED, EXERCISES_SEED)
STEP = re.compile(r"^Step (\d+): (.+?) = (.+) = (-?\d+(?:\.\d+)?)$")

# ------------------------------------------------------------------ an arithmetic checker for the step lines
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow, ast.USub: operator.neg}


def evaluate(expr: str) -> float:
    """Evaluate a step's arithmetic as written (× for times, ^ for powers); only numbers, + - × / ^ and ceil."""
    tree = ast.parse(expr.replace("×", "*").replace("^", "**"), mode="eval")

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp):
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp):
            return _OPS[type(node.op)](walk(node.operand))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "ceil":
            return math.ceil(walk(node.args[0]))
        raise AssertionError(f"unexpected syntax in step arithmetic: {expr!r}")

    return walk(tree)


def parse_steps(solution: str) -> tuple[list[tuple[int, str, str, float]], float]:
    lines = solution.strip().splitlines()
    steps = []
    for line in lines[:-1]:
        match = STEP.match(line)
        assert match, f"malformed step line: {line!r}"
        steps.append((int(match.group(1)), match.group(2), match.group(3), float(match.group(4))))
    final = re.fullmatch(r"Answer: (-?\d+(?:\.\d+)?)", lines[-1])
    assert final, f"malformed final line: {lines[-1]!r}"
    return steps, float(final.group(1))


def first_inconsistent_step(solution: str) -> int | None:
    """The first step whose shown result does not follow from its own arithmetic (None if all do)."""
    steps, _ = parse_steps(solution)
    for number, _, expr, shown in steps:
        # Shown values are rounded to ~7 significant digits, so allow 0.1% drift; injected slips are >= 10%.
        if abs(evaluate(expr) - shown) > 1e-3 * max(1.0, abs(shown)):
            return number
    return None


# ---------------------------------------------------------- independent formulas, written unlike the generator
def _reference(topic: str, p: dict) -> float:
    if topic == "simple_interest":
        return p["principal"] * (1 + p["rate"] * p["years"] / 100)
    if topic == "compound_interest":
        value = p["principal"]
        for _ in range(p["per_year"] * p["years"]):
            value *= 1 + p["rate"] / 100 / p["per_year"]
        return value
    if topic == "present_value":
        value = p["target"]
        for _ in range(p["years"]):
            value /= 1 + p["rate"] / 100
        return value
    if topic == "loan_payment":
        i, n = p["rate"] / 1200, 12 * p["years"]
        growth = (1 + i) ** n
        return p["principal"] * i * growth / (growth - 1)
    if topic == "bond_price":
        y, coupon = p["yield"] / 100, p["face"] * p["coupon"] / 100
        flows = [coupon] * (p["years"] - 1) + [coupon + p["face"]]
        return sum(cf / (1 + y) ** (t + 1) for t, cf in enumerate(flows))
    if topic == "percentage_change":
        return (p["new"] / p["old"] - 1) * 100
    if topic == "pe_ratio":
        return p["price"] * p["shares"] / p["net_income"]
    if topic == "dividend_yield":
        return 400 * p["quarterly"] / p["price"]
    if topic == "roe":
        return 200 * p["net_income"] / (p["equity_start"] + p["equity_end"])
    if topic == "gross_margin":
        return (1 - p["cogs"] / p["revenue"]) * 100
    if topic == "break_even":
        # exact rational arithmetic on the decimal inputs, so the rounding up is never fooled by float error
        margin = Fraction(str(p["price"])) - Fraction(str(p["variable"]))
        return math.ceil(Fraction(str(p["fixed"])) / margin)
    if topic == "currency_conversion":
        return p["amount"] * p["first_rate"] * p["second_rate"] * (1 - p["fee"] / 100)
    if topic == "cagr":
        return math.expm1(math.log(p["end"] / p["start"]) / p["years"]) * 100
    if topic == "dividend_discount":
        return p["dividend"] * (100 + p["growth"]) / (p["required"] - p["growth"])
    if topic == "wacc":
        return (p["equity"] * p["cost_equity"] + p["debt"] * p["cost_debt"] * (1 - p["tax"] / 100)) / (
            p["equity"] + p["debt"])
    if topic == "real_interest_rate":
        return (100 + p["nominal"]) / (100 + p["inflation"]) * 100 - 100
    if topic == "holding_period_return":
        return (p["sell"] + p["dividends"]) / p["buy"] * 100 - 100
    raise AssertionError(f"no reference formula for topic {topic}")


def test_every_topic_has_a_reference_and_appears():
    assert {ex["topic"] for ex in EXERCISES} == set(TOPICS)
    for topic in TOPICS:
        assert sum(ex["topic"] == topic for ex in EXERCISES) == EXERCISES_SHIPPED // len(TOPICS)


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex["id"])
def test_answer_matches_independent_formula(ex):
    reference = _reference(ex["topic"], ex["params"])
    # answers are rounded to cents (or whole units), so they sit within half a cent of the exact value
    assert abs(ex["answer"] - reference) <= 0.005 + 1e-9 * abs(reference), (ex["question"], reference)


def test_loan_payment_amortizes_to_zero():
    loans = [ex for ex in EXERCISES if ex["topic"] == "loan_payment"]
    for ex in loans:
        p = ex["params"]
        balance, i = p["principal"], p["rate"] / 1200
        for _ in range(12 * p["years"]):
            balance = balance * (1 + i) - ex["answer"]
        # the payment is rounded by at most half a cent, and each half cent compounds until the end of the loan
        n = 12 * p["years"]
        assert abs(balance) <= 0.0051 * ((1 + i) ** n - 1) / i, (ex["id"], balance)


@pytest.mark.parametrize("ex", EXERCISES[:68], ids=lambda ex: ex["id"])
def test_solution_steps_check_out_and_end_in_the_answer(ex):
    steps, final = parse_steps(ex["solution"])
    assert [s[0] for s in steps] == list(range(1, len(steps) + 1))
    assert final == ex["answer"]
    assert first_inconsistent_step(ex["solution"]) is None
    assert abs(steps[-1][3] - ex["answer"]) <= 0.0051 + 1e-6 * abs(ex["answer"])


def test_question_states_every_input():
    for ex in EXERCISES:
        numbers = {float(x) for x in re.findall(r"\d+(?:\.\d+)?", ex["question"].replace(",", ""))}
        p = ex["params"]
        for key, value in p.items():
            if isinstance(value, str) or (key == "first_rate" and p["source"] == p["via"]):
                continue
            if key == "per_year":  # stated in words
                assert {1: "annually", 4: "quarterly", 12: "monthly"}[value] in ex["question"]
                continue
            assert float(value) in numbers, (ex["id"], key, value, ex["question"])


def test_generation_is_deterministic_and_prefix_stable():
    assert generate_exercises(40, seed=3) == generate_exercises(40, seed=3)
    assert generate_exercises(25, seed=3) == generate_exercises(40, seed=3)[:25]
    assert generate_exercises(20, seed=3) != generate_exercises(20, seed=4)
    assert len({ex["id"] for ex in generate_exercises(200, seed=1)}) == 200


def test_shipped_file_is_the_generator_output():
    shipped = [json.loads(line) for line in data_path("exercises").read_text(encoding="utf-8").splitlines()]
    assert shipped == json.loads(json.dumps(EXERCISES))


def test_corrupt_solution_first_wrong_step_is_where_it_says():
    rng = random.Random(7)
    seen_steps = set()
    for ex in EXERCISES[:120]:
        bad = corrupt_solution(ex, rng)
        k = bad["first_wrong_step"]
        seen_steps.add(k)
        assert first_inconsistent_step(bad["solution"]) == k
        good_lines, bad_lines = ex["solution"].splitlines(), bad["solution"].splitlines()
        assert good_lines[: k - 1] == bad_lines[: k - 1]
        assert good_lines[k - 1] != bad_lines[k - 1]
        _, wrong = parse_steps(bad["solution"])
        assert wrong == bad["solution_answer"]
        assert abs(wrong - ex["answer"]) > 0.01
        assert bad["answer"] == ex["answer"] and bad["reference_solution"] == ex["solution"]
        # later steps are computed from the wrong value, so their own arithmetic still checks out
        steps, _ = parse_steps(bad["solution"])
        for number, _, expr, shown in steps[k:]:
            assert abs(evaluate(expr) - shown) <= 1e-3 * max(1.0, abs(shown)), (bad["id"], number)
    assert len(seen_steps) >= 5


def test_corrupt_solution_at_a_chosen_step_and_every_step():
    ex = next(e for e in EXERCISES if e["topic"] == "bond_price")
    n_steps = len(parse_steps(ex["solution"])[0])
    for k in range(1, n_steps + 1):
        bad = corrupt_solution(ex, random.Random(k), step=k)
        assert bad["first_wrong_step"] == k == first_inconsistent_step(bad["solution"])
    with pytest.raises(ValueError, match="outside"):
        corrupt_solution(ex, random.Random(0), step=n_steps + 1)


def test_corrupt_solution_is_deterministic_for_a_seeded_rng():
    ex = EXERCISES[5]
    assert corrupt_solution(ex, random.Random(3)) == corrupt_solution(ex, random.Random(3))
