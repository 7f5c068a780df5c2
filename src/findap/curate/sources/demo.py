"""Converters for findap's own demo dataset (findap.demo): only each set's `train` role (the demo's id-hash
split keeps dev and test for evaluation). A source path of `demo:<set>` reads the shipped file; any other path
reads the user's own file in the same format (checked by findap.demo.load_demo)."""
from __future__ import annotations

from typing import Iterator

from findap.curate.sources.context import ConvertContext

SENTIMENT_PROMPT = (
    "Is the following news sentence good, bad or neither for investors in the company it mentions? Reply "
    "positive, negative or neutral.\n\nSentence: {sentence}"
)
STANCE_PROMPT = (
    "Classify the monetary-policy stance of this central-bank sentence as hawkish, dovish or neutral. Reply with "
    "one word.\n\nSentence: {sentence}"
)
LETTERS = "ABCDEFGH"


def _train_rows(name: str, location) -> list[dict]:
    from findap.demo import demo_split, load_demo
    from findap.demo.catalog import demo_location_problem
    from findap.errors import UsageError

    location = str(location)
    problem = demo_location_problem(f"demo_{name}", location)
    if problem:  # recipes are checked when they load; this catches sources built in code
        raise UsageError(problem)
    rows = load_demo(name, path=None if location.startswith("demo:") else location)
    return demo_split(rows, "train")


def demo_finance_texts(location, ctx: ConvertContext) -> Iterator[dict]:
    for row in _train_rows("finance_texts", location):
        yield ctx.cpt(row["id"], f"{row['title']}\n\n{row['text']}")


def demo_sentiment(location, ctx: ConvertContext) -> Iterator[dict]:
    for row in _train_rows("sentiment", location):
        yield ctx.it(row["id"], SENTIMENT_PROMPT.format(sentence=row["sentence"]), row["label"])


def demo_stance(location, ctx: ConvertContext) -> Iterator[dict]:
    for row in _train_rows("stance", location):
        yield ctx.it(row["id"], STANCE_PROMPT.format(sentence=row["sentence"]), row["label"])


def demo_concepts_mc(location, ctx: ConvertContext) -> Iterator[dict]:
    for row in _train_rows("concepts_mc", location):
        options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(row["choices"]))
        prompt = f"Choose the correct option and reply with its letter.\n\n{row['question']}\n{options}"
        yield ctx.it(row["id"], prompt, f"{LETTERS[row['gold']]}. {row['choices'][row['gold']]}")


def demo_general_it(location, ctx: ConvertContext) -> Iterator[dict]:
    for row in _train_rows("general_it", location):
        yield ctx.it(row["id"], row["instruction"], row["response"])


def demo_exercises(location, ctx: ConvertContext) -> Iterator[dict]:
    for row in _train_rows("exercises", location):
        yield ctx.it(row["id"], row["question"], row["solution"])
