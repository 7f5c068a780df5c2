"""Prompts for the LLM judges (MT-bench single-answer grading, reference-based correctness).

Written for findap in our own words. Two rules shape every prompt here:
- The judge reasons in free text FIRST and states its verdict LAST, on its own line, in a bracketed form
  (`[[7]]`, `[[CORRECT]]`). Forcing a strict schema up front tends to cut the judge's reasoning short; a final
  bracketed token is still trivial to parse (see `findap.eval.judge.parse_rating` / `parse_verdict`).
- The material being judged is fenced in XML-like tags so a judged answer cannot easily pose as instructions.
- No prompt contains a parsable verdict (the format is shown as `[[N]]`, and the two verdict words are stripped
  as a pair by the parser), so a judge that merely parrots its instructions is a parse failure, not a score.

Answering prompts (what the model under test sees) live here too, so a report can name the exact wording used.
"""
from __future__ import annotations

from findap.engines.base import Message

JUDGE_SYSTEM = (
    "You are a careful, impartial reviewer of answers written by AI assistants. "
    "You explain your assessment briefly and always finish with the verdict in the exact format requested."
)

# --- MT-bench style single-answer grading (1-10) --------------------------------------------------------------

_RATING_RUBRIC = (
    "Judge how well the reply serves the user: is it correct, does it do what was asked (including any "
    "constraints on form or length), is it relevant, is the level of detail right, and is it clearly written? "
    "Length alone earns nothing, and a confident but wrong reply is worse than a short correct one. "
    "Stay objective and do not let the order or style of the text sway you."
)

_RATING_FORMAT = (
    "Start with a short critique in plain prose. Then end your reply with one final line holding only the score "
    "in double square brackets, [[N]], where N is an integer from 1 (useless) to 10 (excellent)."
)

_REFERENCE_NOTE = (
    "A reference answer is given below. Use it to check the facts and the final result of the reply; "
    "a reply that reaches a different result than the reference is wrong on that point."
)

RATING_TURN1_TEMPLATE = """A user sent the request below to an AI assistant. Grade the assistant's reply.

{rubric}
{reference_note}
{format}

<request>
{question}
</request>
{reference_block}
<reply>
{answer}
</reply>"""

RATING_TURN2_TEMPLATE = """Here is a two-turn conversation between a user and an AI assistant. Grade ONLY the assistant's \
second reply (the answer to the follow-up), taking the first exchange into account as context.

{rubric}
{reference_note}
{format}

<first_request>
{question_1}
</first_request>

<first_reply>
{answer_1}
</first_reply>

<follow_up>
{question_2}
</follow_up>
{reference_block}
<second_reply>
{answer_2}
</second_reply>"""


def _reference_parts(reference: str | None, tag: str = "reference") -> tuple[str, str]:
    if not reference:
        return "", ""
    return _REFERENCE_NOTE, f"\n<{tag}>\n{reference}\n</{tag}>\n"


def rating_turn1_messages(question: str, answer: str, reference: str | None = None) -> list[Message]:
    """Chat messages asking the judge to grade a first-turn answer on 1-10."""
    note, block = _reference_parts(reference)
    user = RATING_TURN1_TEMPLATE.format(
        rubric=_RATING_RUBRIC, reference_note=note, format=_RATING_FORMAT,
        question=question, answer=answer, reference_block=block,
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def rating_turn2_messages(
    question_1: str, answer_1: str, question_2: str, answer_2: str, reference: str | None = None
) -> list[Message]:
    """Chat messages asking the judge to grade the second-turn answer, with the first exchange as context."""
    note, block = _reference_parts(reference, tag="reference_for_follow_up")
    user = RATING_TURN2_TEMPLATE.format(
        rubric=_RATING_RUBRIC, reference_note=note, format=_RATING_FORMAT,
        question_1=question_1, answer_1=answer_1, question_2=question_2, answer_2=answer_2,
        reference_block=block,
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


# --- Reference-based correctness (FinanceBench style) ---------------------------------------------------------

CORRECTNESS_TEMPLATE = """You are checking an answer to a question about a company's financial filings against an \
expert's reference answer.

Count the answer as CORRECT when it agrees with the reference on everything that matters: the same figures \
(rounding, units and number formats may differ if the value is the same), the same direction or conclusion, and \
no statement that contradicts the reference. Extra explanation is fine. Count it as INCORRECT when a key figure \
or conclusion differs, when it is missing, or when the answer refuses or hedges without committing to a result.

First explain your reasoning in a few sentences. Then end with one final line holding only [[CORRECT]] or \
[[INCORRECT]].

<question>
{question}
</question>

<reference_answer>
{reference}
</reference_answer>

<answer_to_check>
{answer}
</answer_to_check>"""


def correctness_messages(question: str, reference: str, answer: str) -> list[Message]:
    """Chat messages asking the judge whether `answer` matches `reference` for `question`."""
    user = CORRECTNESS_TEMPLATE.format(question=question, reference=reference, answer=answer)
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


# --- What the model under test is asked (open QA over filings) ------------------------------------------------

OPEN_QA_WITH_CONTEXT_TEMPLATE = """Use the excerpt from a company filing below to answer the question. Give the \
answer directly, with the figures and units it needs, and a short justification.

<excerpt>
{context}
</excerpt>

Question: {question}"""

OPEN_QA_TEMPLATE = """Answer the following question about a company's finances. Give the answer directly, with \
the figures and units it needs, and a short justification.

Question: {question}"""


def open_qa_messages(question: str, context: str | None = None) -> list[Message]:
    """Chat messages for the model under test on an open financial question (context = evidence text)."""
    if context:
        text = OPEN_QA_WITH_CONTEXT_TEMPLATE.format(context=context, question=question)
    else:
        text = OPEN_QA_TEMPLATE.format(question=question)
    return [{"role": "user", "content": text}]
