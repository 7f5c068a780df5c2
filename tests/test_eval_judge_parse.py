"""Judge output parsing on realistic and malformed judge texts (what GPT-4o-class and small local judges write)."""
import pytest

from findap.eval import judge_prompts
from findap.eval.judge import parse_justified_score, parse_rating, parse_verdict

RATINGS = [
    # the format we ask for
    ("The reply is accurate and well organised, though it misses one attraction.\n\n[[8]]", 8.0),
    ("Rating: [[7]]", 7.0),
    ("The answer is wrong on the key number.\nRating: [[2]]", 2.0),
    ("[[ 9 ]]", 9.0),
    ("Solid overall. [[7.5]]", 7.5),
    ("[[Rating: 6]]", 6.0),
    ("[[score=4]]", 4.0),
    ("Final verdict: [[10/10]]", 10.0),
    # the judge restates the scale or an example before its verdict: the last valid one wins
    ("Scores go from [[1]] to [[10]]. This reply deserves a middling grade.\n[[5]]", 5.0),
    ("For example [[6]] ... my own assessment: [[3]]", 3.0),
    # out-of-range bracketed numbers are not clipped; a later labelled score still counts
    ("[[11]] is not allowed, so Rating: 4", 4.0),
    # JSON, fenced or bare, as the curation judge writes it
    ('{"justification": "Relevant and coherent.", "score": 8}', 8.0),
    ('```json\n{"justification": "Clear.", "score": 9}\n```', 9.0),
    ('Thoughts first.\n{"rating": "6"}', 6.0),
    ('{"justification": "cut off because of the max tokens, "score": 7', 7.0),  # broken JSON: key regex
    # labelled plain text
    ("Rating: 7", 7.0),
    ("Score: 9/10", 9.0),
    ("My final score is 5.", 5.0),
    ("**Rating:** 6", 6.0),
    ("The score is **8**.", 8.0),
    ("I would rate this response 7 out of 10.", 7.0),
    ("Overall: 6/10", 6.0),
    # reasoning blocks are ignored
    ("<think>maybe [[2]]? no</think> After reflection: [[9]]", 9.0),
    ("<think>[[2]]</think> Rating: 9", 9.0),
]

NO_RATING = [
    "",
    "The reply is fine.",
    "It covers 3/4 of the requirements.",  # a fraction with the wrong denominator is not a score
    "Rating: 0",  # below the 1-10 scale
    "[[42]]",
    "[[A]]",
    "<think>[[8]]</think> I cannot decide.",
    "Score: 7/5",  # denominator does not match the scale
    "tik tok bonjour ### 1 2 3 <|im_end|> ???",
]


@pytest.mark.parametrize("text,expected", RATINGS)
def test_parse_rating_finds_the_verdict(text, expected):
    assert parse_rating(text) == expected


@pytest.mark.parametrize("text", NO_RATING)
def test_parse_rating_reports_failure(text):
    assert parse_rating(text) is None


def test_parse_rating_respects_custom_scale():
    assert parse_rating('{"justification": "ok", "score": 0}', low=0, high=5) == 0.0
    assert parse_rating('{"justification": "ok", "score": 6}', low=0, high=5) is None
    assert parse_rating("Score: 4/5", low=0, high=5) == 4.0
    assert parse_rating("Score: 4/10", low=0, high=5) is None


VERDICTS = [
    ("The figures match the reference ($1,577M vs 1577 million).\n[[CORRECT]]", True),
    ("The answer reports 2019 instead of 2020 capex.\n[[INCORRECT]]", False),
    ("[[correct]]", True),
    ("[[ Incorrect ]]", False),
    ("[[Verdict: CORRECT]]", True),
    ("[[YES]]", True),
    ("[[no]]", False),
    # never read "incorrect" or "not correct" as "correct"
    ("Verdict: incorrect", False),
    ("Final judgement: not correct", False),
    ("The model's answer is incorrect because it reports the wrong year.", False),
    ("The answer is not correct.", False),
    ("The answer is therefore correct.", True),
    # a restated instruction before the real verdict: last one wins
    ("I must answer [[CORRECT]] or [[INCORRECT]]. The numbers differ.\n[[INCORRECT]]", False),
    # JSON
    ('{"rationale": "same value", "correct": true}', True),
    ('{"verdict": "INCORRECT"}', False),
    ('```json\n{"is_correct": false, "reason": "wrong sign"}\n```', False),
    # a bare final line
    ("Both mention a 12% increase.\nCorrect.", True),
    ("Different conclusion.\n**Incorrect**", False),
    ("<think>[[INCORRECT]]</think>\n[[CORRECT]]", True),
]

NO_VERDICT = [
    "",
    "I am not sure what the filing says.",
    "The reference answer mentions revenue.",
    "correctness depends on the year",
    "<think>[[CORRECT]]</think> hmm",
    "tik tok bonjour ### 1 2 3 <|im_end|> ???",
]


@pytest.mark.parametrize("text,expected", VERDICTS)
def test_parse_verdict_finds_the_verdict(text, expected):
    assert parse_verdict(text) is expected


@pytest.mark.parametrize("text", NO_VERDICT)
def test_parse_verdict_reports_failure(text):
    assert parse_verdict(text) is None


def test_parse_justified_score_for_the_curation_judge():
    got = parse_justified_score('Here it is:\n{"justification": "Explains bond duration clearly.", "score": 4}')
    assert (got.score, got.justification) == (4.0, "Explains bond duration clearly.")
    broken = parse_justified_score('{"justification": "Useful for finance, "score": 3')
    assert broken.score == 3.0 and "Useful for finance" in broken.justification
    assert parse_justified_score('{"justification": "great", "score": 9}').score is None  # off the 0-5 scale
    assert parse_justified_score("no score here").score is None


def test_a_judge_that_parrots_its_prompt_gets_no_score():
    """Small judges often echo the instructions; nothing in our prompts may parse as a verdict."""
    turn1 = judge_prompts.rating_turn1_messages("How big is revenue?", "About 3.")
    turn2 = judge_prompts.rating_turn2_messages("Q1?", "A1.", "Q2?", "A2.", reference="R")
    check = judge_prompts.correctness_messages("What was capex?", "$1.5B", "1.5 billion")
    for messages in (turn1, turn2, check):
        text = "\n".join(m["content"] for m in messages)
        assert parse_rating(text) is None and parse_verdict(text) is None
        assert parse_rating(text + "\nThe reply is vague.\n[[3]]") == 3.0
    check_text = check[-1]["content"]
    assert parse_verdict(check_text + "\nThe figures match.\n[[CORRECT]]") is True
    assert parse_verdict(check_text + "\nWrong year.\n[[INCORRECT]]") is False


def test_prompts_put_reasoning_first_and_the_verdict_format_last():
    turn1 = judge_prompts.rating_turn1_messages("Q1?", "A1.")[-1]["content"]
    assert "[[N]]" in turn1 and "Q1?" in turn1 and "A1." in turn1 and "<reference>" not in turn1
    turn2 = judge_prompts.rating_turn2_messages("Q1?", "A1.", "Q2?", "A2.", reference="R2")[-1]["content"]
    assert turn2.index("Q1?") < turn2.index("A1.") < turn2.index("Q2?") < turn2.index("A2.")
    assert "R2" in turn2
    check = judge_prompts.correctness_messages("What was capex?", "$1.5B", "1.5 billion")[-1]["content"]
    assert "[[CORRECT]]" in check and check.index("explain") < check.index("[[CORRECT]]")
