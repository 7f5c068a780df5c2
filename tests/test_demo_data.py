"""The shipped demo files load, validate and are balanced; bad files fail with file, line and field."""
from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from findap.demo import DEMO_SETS, data_path, export_demo, load_demo
from findap.demo.catalog import SENTIMENT_LABELS, STANCE_LABELS
from findap.io import DataError

MINIMUM_ROWS = {"finance_texts": 40, "sentiment": 150, "stance": 90, "concepts_mc": 60, "general_it": 40,
                "exercises": 300}


def _raw(name: str) -> list[dict]:
    """The file parsed with nothing but json, so checks do not depend on load_demo's own validation."""
    return [json.loads(line) for line in data_path(name).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("name", list(DEMO_SETS))
def test_file_loads_with_its_schema_and_unique_ids(name):
    rows = load_demo(name)
    assert rows == _raw(name)
    assert len(rows) >= MINIMUM_ROWS[name]
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        assert set(DEMO_SETS[name].fields) <= set(row)


@pytest.mark.parametrize("name, labels", [("sentiment", SENTIMENT_LABELS), ("stance", STANCE_LABELS)])
def test_labelled_sets_are_balanced_and_free_of_duplicates(name, labels):
    rows = _raw(name)
    counts = Counter(r["label"] for r in rows)
    assert set(counts) == set(labels)
    assert max(counts.values()) - min(counts.values()) <= 0.1 * len(rows) / len(labels)
    normalized = [re.sub(r"\W+", " ", r["sentence"].lower()).strip() for r in rows]
    assert len(set(normalized)) == len(rows)
    for row in rows:
        assert 6 <= len(row["sentence"].split()) <= 45, row


def test_concept_questions_have_four_distinct_choices_and_unbiased_gold():
    rows = _raw("concepts_mc")
    for row in rows:
        assert len(row["choices"]) == 4 and len(set(row["choices"])) == 4, row["id"]
        assert isinstance(row["gold"], int) and 0 <= row["gold"] < 4, row["id"]
    positions = Counter(r["gold"] for r in rows)
    assert set(positions) == {0, 1, 2, 3} and max(positions.values()) - min(positions.values()) <= 1
    assert len({r["question"] for r in rows}) == len(rows)
    assert len({r["topic"] for r in rows}) >= 10


def test_concept_questions_with_numbers_have_the_computed_answer():
    # spot-check the arithmetic questions against values computed here
    by_question = {r["question"]: r["choices"][r["gold"]] for r in _raw("concepts_mc")}

    def gold(fragment: str) -> str:
        return next(answer for question, answer in by_question.items() if fragment in question)

    assert gold("$200,000 has a probability of default") == f"${200_000 * 0.03 * 0.5:,.0f}"
    assert gold("P/E ratio?") == f"{60 / 4:g}"
    assert gold("next year's dividend is $3") == f"${3 / (0.09 - 0.03):.0f}"
    assert gold("beta of 1.5") == f"{3 + 1.5 * 6:g}%"
    assert gold("60% by equity") == f"{0.6 * 10 + 0.4 * 5:g}%"
    assert gold("exact Fisher") == f"About {(1.06 / 1.02 - 1) * 100:.2f}%"
    assert gold("1.20 dollars and one dollar buys 140 yen") == f"{1.2 * 140:g}"
    assert gold("strike of $50") == f"${62 - 50}"
    assert gold("quick ratio") == f"{(600 - 250) / 400:g}"
    assert gold("interest coverage") == f"{90 / 15:g}"
    assert gold("cash conversion cycle") == f"{50 + 40 - 35} days"
    assert gold("compounded monthly") == f"About {(1.01 ** 12 - 1) * 100:.2f}%"
    assert gold("yields 6.1%") == f"{round((6.1 - 4.3) * 100)} basis points"


def test_finance_texts_are_short_explainers_on_many_topics():
    rows = _raw("finance_texts")
    for row in rows:
        words = len(row["text"].split())
        assert 150 <= words <= 350, (row["id"], words)
    assert len({r["title"] for r in rows}) == len(rows)
    assert len({r["topic"] for r in rows}) >= 12


def test_general_instructions_are_not_finance():
    finance_words = re.compile(r"\b(stock|bond|dividend|inflation|interest rate|loan|equity|invest\w*|bank)\b", re.I)
    for row in _raw("general_it"):
        assert not finance_words.search(row["instruction"] + " " + row["response"]), row["id"]
        assert row["response"].strip()


def _write(tmp_path, rows, name="mine.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_own_file_in_the_same_format_loads(tmp_path):
    rows = [{"id": "a", "sentence": "Revenue rose 10 percent.", "label": "positive"},
            {"id": "b", "sentence": "The meeting is on Monday.", "label": "neutral"}]
    assert load_demo("sentiment", path=_write(tmp_path, rows)) == rows


@pytest.mark.parametrize("rows, line, field, problem", [
    ([{"id": "a", "sentence": "Profit fell.", "label": "bearish"}], 1, "label", "not one of"),
    ([{"id": "a", "sentence": "Profit fell.", "label": "negative"}, {"id": "b", "label": "neutral"}], 2, "sentence",
     "missing"),
    ([{"id": "a", "sentence": "Profit fell.", "label": "negative"},
      {"id": "a", "sentence": "Profit rose.", "label": "positive"}], 2, "id", "duplicate id"),
    ([{"id": "a", "sentence": "Profit fell.", "label": "negative"},
      {"id": "b", "sentence": "profit  FELL.", "label": "negative"}], 2, "sentence", "duplicate of line 1"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, rows, line, field, problem):
    path = _write(tmp_path, rows)
    with pytest.raises(DataError) as err:
        load_demo("sentiment", path=path)
    assert (err.value.line, err.value.field) == (line, field)
    assert str(path) in str(err.value) and problem in str(err.value)


def test_bad_multiple_choice_and_exercise_rows(tmp_path):
    mc = {"id": "q", "question": "Q?", "choices": ["a", "b", "c", "d"], "gold": 4, "topic": "t"}
    with pytest.raises(DataError, match="field 'gold'"):
        load_demo("concepts_mc", path=_write(tmp_path, [mc]))
    with pytest.raises(DataError, match="field 'choices'"):
        load_demo("concepts_mc", path=_write(tmp_path, [{**mc, "gold": 0, "choices": ["a", "b", "c"]}]))
    ex = {**_raw("exercises")[0]}
    ex["solution"] = ex["solution"].rsplit("\n", 1)[0] + "\nAnswer: 1.5"
    with pytest.raises(DataError, match="field 'solution'"):
        load_demo("exercises", path=_write(tmp_path, [ex]))


def test_invalid_json_and_unknown_names(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": "a", "sentence": "x y", "label": "neutral"}\n\n{"id": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl:3: invalid JSON"):
        load_demo("sentiment", path=path)
    with pytest.raises(KeyError, match="unknown demo dataset"):
        load_demo("nope")
    with pytest.raises(DataError, match="file not found"):
        load_demo("stance", path=tmp_path / "missing.jsonl")


def test_every_row_fits_a_512_token_context():
    # the demo trains with short contexts on a CPU: no demo example may need truncation
    from findap.models import EMBEDDED_MODEL, load_tokenizer

    tokenizer = load_tokenizer(EMBEDDED_MODEL)
    for name in DEMO_SETS:
        for row in _raw(name):
            text = "\n".join(str(v) for k, v in row.items() if isinstance(v, (str, list)) and k != "id")
            assert len(tokenizer(text).input_ids) <= 512, (name, row["id"])


def test_export_copies_the_files_for_editing(tmp_path):
    written = export_demo(tmp_path)
    assert sorted(p.name for p in written) == sorted(s.file for s in DEMO_SETS.values())
    for name, spec in DEMO_SETS.items():
        assert load_demo(name, path=tmp_path / spec.file) == load_demo(name)
    with pytest.raises(FileExistsError, match="sentiment.jsonl"):
        export_demo(tmp_path, ["sentiment"])
    assert export_demo(tmp_path, ["sentiment"], overwrite=True) == [tmp_path / "sentiment.jsonl"]
