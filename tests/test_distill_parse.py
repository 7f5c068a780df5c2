"""GenORM/GenPRM building blocks on realistic text: steps, answers, first-error parsing, pair construction."""
import random

import pytest

from findap.demo.exercises import corrupt_solution, generate_exercises
from findap.distill.genprm import corrected_prefix, join_continuation
from findap.distill.judges import first_error_step, parse_orm, parse_prm
from findap.distill.pairs import prm_records, select_orm_pairs
from findap.distill.genorm import Candidate, decide
from findap.distill.prompts import ReasoningItem, load_cfa, load_gsm8k, load_tatqa
from findap.distill.trajectories import check_answer, extract_answer, split_steps

DATA = "/work/shared/data"


def item_of(ex: dict) -> ReasoningItem:
    return ReasoningItem(ex["id"], ex["question"], str(ex["answer"]), "number", "exercises", ex["solution"])


JUDGE_TEXT = """Let me go through the candidate's work.
Step 1 converts the percentage to a decimal; that is right.
Step 2 should multiply the values from the question, but the candidate's result does not match the product, so the
reasoning goes wrong here. Everything after it inherits the error.

First error: Step {k}
Correction: {fixed}"""


@pytest.mark.parametrize("index", range(6))
def test_first_error_and_corrected_trajectory_from_a_known_slip(index):
    ex = generate_exercises(6, seed=0)[index]
    wrong = corrupt_solution(ex, random.Random(index))
    k = wrong["first_wrong_step"]
    good_steps, bad_steps = split_steps(ex["solution"]), split_steps(wrong["solution"])
    assert good_steps[: k - 1] == bad_steps[: k - 1] and good_steps[k - 1] != bad_steps[k - 1]
    judgement = parse_prm(JUDGE_TEXT.format(k=k, fixed=good_steps[k - 1]))
    assert judgement.first_error == k and judgement.correction == good_steps[k - 1]
    prefix = corrected_prefix(bad_steps, judgement)
    assert prefix == "\n".join(good_steps[:k])
    # A continuation that finishes the job (here the reference's remaining steps) gives a correct trajectory.
    rest = "\n".join(good_steps[k:] + [f"Answer: {ex['answer']}"])
    chosen = join_continuation(prefix, rest)
    item = item_of(ex)
    assert check_answer(chosen, item) is True and check_answer(wrong["solution"], item) is False
    cand = Candidate(item.id, 0, wrong["solution"], False, extract_answer(wrong["solution"], "number"))
    records = prm_records(item, cand, bad_steps, k, judgement.correction, chosen, "judge says", step_pairs=True)
    full, step = records
    assert full["source"] == "genprm" and full["chosen"] == chosen and full["rejected"] == wrong["solution"]
    assert step["source"] == "genprm-step"
    shared = step["meta"]["prefix_chars"]
    assert step["chosen"][:shared] == step["rejected"][:shared]  # the shared, correct prefix
    assert step["chosen"][shared:] == good_steps[k - 1] and step["rejected"][shared:] == bad_steps[k - 1]


@pytest.mark.parametrize("text, expected", [
    ("Step 3 uses 0.5 instead of 0.05.\nFirst error: Step 3\nCorrection: Step 3: Rate = 5 / 100 = 0.05", 3),
    ("**First error:** Step 2\n**Correction:** Step 2: Price = 40 / 2 = 20", 2),
    ("I checked each line and found nothing wrong.\nFirst error: none", 0),
    ("The first incorrect step is Step 4, where the tax rate is applied twice.", 4),
    ("First error: Step 1 ... wait, step 1 is fine. First error: Step 2\nCorrection: Step 2: x = 3", 2),
    ("The solution looks plausible but I am not sure.", None),
])
def test_first_error_step(text, expected):
    assert first_error_step(text) == expected


def test_prm_without_a_correction_is_unparsable():
    assert parse_prm("First error: Step 2") is None
    assert parse_prm("First error: Step 2\nCorrection:   ") is None
    assert parse_prm("First error: none").first_error == 0


def test_orm_verdicts():
    assert parse_orm("The balance 2490 matches the reference.\nVerdict: correct") is True
    assert parse_orm("The interest is computed on the wrong base.\nVerdict: incorrect") is False
    assert parse_orm("Hmm, hard to say.") is None


@pytest.mark.parametrize("solution, gold, kind, ok", [
    ("Step 1: 1500 × 0.0825 × 8 = 990\nAnswer: 990", "990.0", "number", True),
    ("Step 1: ...\nAnswer: $2,490.00", "2490", "number", True),
    ("Answer: 22.2%", "-22.22", "number", False),
    ("Answer: (22.22)", "-22.22", "number", True),
    ("Answer: 0.2222", "22.22", "number", True),  # a percent written as a fraction
    ("The liquidity premium explains it.\n**Answer:** C", "C", "choice", True),
    ("Answer: B) maturity", "C", "choice", False),
    ("I could not finish.", "3", "number", None),
])
def test_answer_check(solution, gold, kind, ok):
    assert check_answer(solution, ReasoningItem("x", "q", gold, kind, "t")) is ok


def test_split_steps_keeps_preamble_and_drops_answer():
    text = "Let us think.\nStep 1: a = 2\nStep 2: b = a + 1\ncontinued\nAnswer: 3"
    assert split_steps(text) == ["Let us think.\nStep 1: a = 2", "Step 2: b = a + 1\ncontinued"]
    assert split_steps("x = 1\ny = 2\nAnswer: 2") == ["x = 1", "y = 2"]


def test_loaders_read_real_files():
    cfa = load_cfa(f"{DATA}/cfa/CFA_Easy.json", limit=3)
    assert cfa[0].gold == "C" and "Choices:\nA: maturity.\nB: liquidity.\nC: expected inflation." in cfa[0].question
    gsm = load_gsm8k(f"{DATA}/gsm8k/train.jsonl", limit=2)
    assert gsm[0].gold == "72" and "<<" not in gsm[0].reference_solution
    tat = load_tatqa(f"{DATA}/tatqa/tatqa_dataset_dev.json", limit=5)
    assert len(tat) == 5 and all(t.answer_type == "number" for t in tat)
    assert tat[1].gold == "-22.22" and "(answer in percent)" in tat[1].question


def test_pair_policies():
    mk = lambda i, ok, text, judge=None: Candidate("q", i, text, ok, judge=judge)
    good = [mk(0, True, "long correct solution", True), mk(1, True, "short ok", True), mk(-1, True, "reference")]
    bad = [mk(2, False, "wrong a", True), mk(3, False, "wrong b", False), mk(4, False, "wrong a", True)]
    rng = random.Random(0)
    all_pairs = select_orm_pairs(good, bad, "all", cap=100, rng=rng)
    assert len(all_pairs) == 6  # 3 x 3 minus the duplicate "wrong a" rejections
    assert len(select_orm_pairs(good, bad, "all", cap=4, rng=rng)) == 4
    (chosen, rejected), = select_orm_pairs(good, bad, "best_worst", cap=4, rng=rng)
    assert chosen.text == "short ok" and rejected.text == "wrong b"  # on-policy, shortest; judge agrees it's wrong
    assert decide(mk(0, True, "x", judge=False), "both") is None
    assert decide(mk(0, True, "x", judge=False), "check") is True
    assert decide(mk(0, True, "x", judge=False), "judge") is False
