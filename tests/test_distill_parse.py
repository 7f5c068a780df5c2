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
    ("Answer: 0.2222", "22.22", "number", False),  # was True (the bug): the question does not say percent
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


# ---------------------------------------------------------------------------------- labels you can trust
from findap.distill.genprm import numbered_steps, step_index  # noqa: E402
from findap.distill.judges import StepJudgement, prm_messages  # noqa: E402
from findap.distill.trajectories import asks_percent  # noqa: E402
from findap.eval.answers import same_number, single_number  # noqa: E402


def _match(pred: str, gold: str, percent_question: bool = False) -> bool:
    return same_number(single_number(pred), single_number(gold), percent_question)


def test_tolerance_rule_by_hand():
    # the documented rule: an integer gold exactly; another gold within half a unit in its last decimal place
    assert _match("1000", "1000") and _match("1000.0", "1000") and not _match("1001", "1000")
    assert _match("0.375", "0.37") and not _match("0.3751", "0.37")  # gold written to 2 decimals: +-0.005
    assert _match("-22.22", "-22.220") and not _match("-22.2", "-22.22") and not _match("22.22", "-22.22")
    assert not _match("101", "100") and not _match("0.085", "0.0825")


def test_factor_100_only_for_percent():
    assert not _match("5", "500") and not _match("500", "5")  # the issue: wrong solutions became "chosen"
    assert not _match("5", "500", percent_question=False) and _match("0.25", "25", percent_question=True)
    assert _match("25", "0.25", percent_question=True) and not _match("0.25", "25")
    assert _match("8.25%", "0.0825") and _match("25", "25%")  # a written '%' is exact: 8.25% is 0.0825


def test_asks_percent_reads_the_question_not_the_table():
    table_question = "Revenue | 10% | 20%\nCost | 5% | 7%\n\nQuestion: How many segments grew?"
    assert not asks_percent(table_question)
    assert asks_percent("Revenue | 10% | 20%\n\nQuestion: What is the change? (answer in percent)")
    assert asks_percent("What percentage of the loan is repaid after 3 years?")
    item = ReasoningItem("t", table_question, "20", "number", "tatqa")
    assert check_answer("Answer: 0.2", item) is False


def test_unreadable_gold_is_unchecked_not_wrong():
    for gold in ("between 10 and 15", "N/A", ""):
        assert check_answer("Answer: 12", ReasoningItem("x", "q", gold, "number", "t")) is None
    assert check_answer("Answer: 12", ReasoningItem("x", "q", "", "choice", "t")) is None


def test_check_mode_sends_unreadable_gold_to_the_judge(tmp_path):
    """Real tiny model as policy and judge: under label_mode 'check' the candidate of an unreadable gold is
    judged (the tiny judge never gives a verdict: dropped and counted), never silently labelled wrong."""
    from findap.distill.config import DistillConfig
    from findap.distill.driver import process_batch
    from findap.engines import EngineSpec, make_engine
    from findap.models import save_tiny_llama

    engine = make_engine(EngineSpec(kind="hf", model=save_tiny_llama(tmp_path / "tiny", seed=0), device="cpu",
                                    precision="fp32", batch_size=4))
    items = [ReasoningItem("unreadable", "Estimate the multiple.", "between 10 and 15", "number", "t"),
             ReasoningItem("readable", "What is 2 + 2?", "4", "number", "t")]
    cfg = DistillConfig(label_mode="check", genprm=False, n_samples=1, max_new_tokens=4,
                        judge_max_new_tokens=4, judge_retries=0)
    unreadable, readable = process_batch(items, engine, engine, cfg, seed=0, progress=False)
    assert unreadable.unchecked == 1 and unreadable.drops["orm_judge_unparsable"] == 1 and unreadable.correct == 0
    assert "label_disagreement" not in unreadable.drops
    assert readable.unchecked == 0 and "orm_judge_unparsable" not in readable.drops  # its check decides


def test_genprm_numbers_unlabelled_steps_and_maps_the_verdict_back():
    solution = "Rate = 8.25 / 100 = 0.0825\nInterest = 1500 × 0.0825 × 8 = 99\nTotal = 1500 + 99 = 1599\nAnswer: 1599"
    steps = split_steps(solution)
    shown = numbered_steps(steps)
    assert shown == ["Step 1: Rate = 8.25 / 100 = 0.0825", "Step 2: Interest = 1500 × 0.0825 × 8 = 99",
                     "Step 3: Total = 1500 + 99 = 1599"]
    item = ReasoningItem("x", "Simple interest on 1500 at 8.25% for 8 years, and the total?", "2490", "number", "t")
    assert "Step 2: Interest = 1500 × 0.0825 × 8 = 99" in prm_messages(item, shown)[1]["content"]
    judged = parse_prm("Step 2 multiplies wrongly.\nFirst error: Step 2\n"
                       "Correction: Step 2: Interest = 1500 × 0.0825 × 8 = 990")
    assert step_index(judged.first_error, len(steps)) == 1  # 'Step 2' is the second line, index 1
    assert corrected_prefix(steps, judged) == "Rate = 8.25 / 100 = 0.0825\nStep 2: Interest = 1500 × 0.0825 × 8 = 990"
    assert step_index(0, 3) is None and step_index(4, 3) is None
    with pytest.raises(ValueError, match="step 4"):
        corrected_prefix(steps, StepJudgement(4, "Step 4: x"))
    # a labelled solution that skips a number is renumbered, so 'Step K' is still steps[K - 1]
    assert numbered_steps(["Let us think.\nStep 1: a = 2", "Step 3: b = 3"]) == [
        "Let us think.\nStep 1: a = 2", "Step 2: b = 3"]


def test_correction_is_read_after_its_conclusion():
    text = ("First error: Step 1\nCorrection: Step 1: x = 1\nHmm, actually step 1 is fine.\n"
            "First error: Step 2\nCorrection: Step 2: First multiply 40 by 2 to get 80")
    assert parse_prm(text) == StepJudgement(2, "Step 2: First multiply 40 by 2 to get 80")
    assert parse_prm("First error: Step 1\nCorrection: Step 1: r = 0.05\nNo, step 1 is right.\nFirst error: Step 3") is None


@pytest.mark.parametrize("solution, expected", [
    ("Answer: C, since option A ignores the tax shield.", "C"),
    ("B. Option A ignores taxes.", "B"),
    ("The correct option is C. A and B ignore inflation.", "C"),
])
def test_choice_answers_read_like_fineval(solution, expected):
    assert extract_answer(solution, "choice") == expected


def test_number_answers_read_after_the_marker():
    assert extract_answer("Step 1: 1500 × 0.0825 × 8 = 990\nAnswer: 990 (rounded to 2 decimals)", "number") == "990"
    assert extract_answer("Answer: -22.22%", "number") == "-22.22%"
