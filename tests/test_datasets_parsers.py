"""findap.datasets: each raw format parsed once, on real rows of the shared data and on malformed ones."""
from __future__ import annotations

import json

import pytest

from findap.datasets import RowError, cfa, finer, fomc, fpb, gsm8k, tatqa
from findap.datasets.german_credit import decode_row


def field_of(parse, *args) -> str:
    with pytest.raises(RowError) as err:
        parse(*args)
    return err.value.field


def test_fpb_lines(shared_data):
    lines = (shared_data / "fpb" / "Sentences_50Agree.train.txt").read_text(encoding="utf-8").splitlines()
    rows = [fpb.parse_line(line) for line in lines if line.strip()]
    assert len(rows) == 3625 and {r.label for r in rows} == set(fpb.LABELS)
    assert rows[0].sentence == lines[0].rpartition("@")[0].strip()
    assert fpb.parse_line(" Profit rose . @Positive ") == ("Profit rose .", "positive")
    assert field_of(fpb.parse_line, "no separator here") == "label"
    assert field_of(fpb.parse_line, "  @neutral") == "sentence"
    assert field_of(fpb.parse_line, "Profit rose .@bullish") == "label"


def test_finer_sentences_read_the_conll_file_and_spans_match_either_iob_scheme(shared_data):
    def fail(number, err):
        raise AssertionError(f"line {number}: {err}")

    lines = enumerate((shared_data / "finer" / "FIN5.train.conll").read_text(encoding="utf-8").splitlines(), 1)
    sentences = list(finer.sentences(lines, fail, types=finer.TYPES))
    assert len(sentences) > 1000
    with_entities = [s for s in sentences if s.tags.count("O") < len(s.tags)]
    assert with_entities and all(finer.entity_spans(s.tokens, s.tags) == finer.entity_spans(s.tokens, finer.iob2(s.tags))
                                 for s in with_entities)
    assert finer.iob2(["I-ORG", "I-ORG", "O", "I-PER", "I-ORG"]) == ["B-ORG", "I-ORG", "O", "B-PER", "B-ORG"]
    assert finer.entity_spans(["Acme", "Corp", "and", "Bob"], ["I-ORG", "I-ORG", "O", "I-PER"]) == [
        ("Acme Corp", "ORG"), ("Bob", "PER")]


def test_finer_bad_token_lines_go_to_the_callback():
    lines = [(1, "-DOCSTART- -X- -X- O"), (2, ""), (3, "Acme NNP - I-ORG"), (4, "oops"), (5, "Inc NNP - I-ORG"),
             (6, "2019 CD - B-DATE"), (7, "Jan NNP - X-PER"), (8, ""), (9, "Bob NNP - I-PER")]
    bad: list[tuple[int, str]] = []
    got = list(finer.sentences(lines, lambda n, err: bad.append((n, err.field)), types=finer.TYPES))
    assert got == [(3, ["Acme", "Inc"], ["I-ORG", "I-ORG"]), (9, ["Bob"], ["I-PER"])]
    assert bad == [(4, "tag"), (6, "tag"), (7, "tag")]
    # without a type list any IOB type is a token (FinEval maps the types it does not score to O)
    assert list(finer.sentences(lines[5:6], lambda n, err: bad.append(n)))[0].tags == ["B-DATE"]


def test_fomc_cells():
    assert fomc.parse_row("  Rates will rise. ", 1) == ("Rates will rise.", 1)
    assert fomc.parse_row("x", 0).label == "dovish" and fomc.parse_row("x", 2.0).label == "neutral"
    assert fomc.parse_row("x", "1").label == "hawkish"
    for label in (3, -1, None, True, "hawkish", 1.5):
        assert field_of(fomc.parse_row, "x", label) == "label"
    assert field_of(fomc.parse_row, "  ", 0) == "sentence"
    assert field_of(fomc.parse_row, None, 0) == "sentence"


def test_tatqa_reports(shared_data):
    items = json.loads((shared_data / "tatqa" / "tatqa_dataset_dev.json").read_text(encoding="utf-8"))
    report = tatqa.read_report(items[0])
    assert report.table.splitlines()[2].startswith("Fixed Price | $  1,452.4 | ")
    assert report.key_text == f"{report.table}\n{report.text}" == tatqa.report_text(items[0])
    assert report.context == f"Table:\n{report.table}\n\nText:\n{report.text}"
    assert report.text.splitlines()[0] == min(items[0]["paragraphs"], key=lambda p: p["order"])["text"]
    question = tatqa.read_question(report.questions[0])
    assert question.uid == items[0]["questions"][0]["uid"] and question.answer == items[0]["questions"][0]["answer"]
    assert sum(len(tatqa.read_report(item).questions) for item in items) == 1668
    broken = dict(items[0], paragraphs=[{"order": 1}])
    assert field_of(tatqa.read_report, {k: v for k, v in items[0].items() if k != "table"}) == "table"
    assert field_of(tatqa.read_report, broken) == "paragraphs"
    assert field_of(tatqa.read_question, {"question": "How much?"}) == "questions.answer"
    assert tatqa.read_question({"question": "How much?", "answer": 3}).uid == "How much?"


def test_cfa_items(shared_data):
    rows = json.loads((shared_data / "cfa" / "CFA_Easy.json").read_text(encoding="utf-8"))
    parsed = [cfa.parse_text(row["text"]) for row in rows]
    assert all(len(p.choices) == len(row["choices"]) for p, row in zip(parsed, rows))
    assert parsed[0] == ("The nominal risk-free rate is best described as the sum of the real risk-free rate and a "
                         "premium for:", ["maturity.", "liquidity.", "expected inflation."])
    assert {cfa.answer_letter(row["answer"]) for row in rows} == {"A", "B", "C"}
    assert cfa.answer_letter(" a ") == "A"
    assert field_of(cfa.answer_letter, "E") == "answer"
    assert field_of(cfa.parse_text, "Q: What? A: yes, B: no") == "text"


def test_gsm8k_answers(shared_data):
    rows = [json.loads(line) for line in (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()]
    for row in rows:
        solution = gsm8k.split_answer(row["answer"])
        assert solution.final == row["answer"].rsplit("####", 1)[1].strip()
        assert "<<" not in solution.steps and "####" not in solution.steps
    assert gsm8k.split_answer("2 + 2 = <<2+2=4>>4\n#### 1,004").number == "1004"
    assert field_of(gsm8k.split_answer, "It is 4.") == "answer"


def test_german_credit_rows(shared_data):
    first = (shared_data / "credit" / "german.data").read_text().splitlines()[0].split()
    decoded, label = decode_row(first)
    assert decoded[0] == ("checking account", "below 0 DM") and label == "good"
    assert field_of(decode_row, [*first[:3], "A99", *first[4:]]) == "purpose"
    assert field_of(decode_row, first[:5]) == "row"
