"""Converters on real rows of the shared data, checked against the raw files and independent parsers."""
from __future__ import annotations

import json

import pytest

from findap.curate.config import CurateConfig, SourceConfig
from findap.curate.holdout import holdout_bucket, reserved_for_eval
from findap.curate.sources import CONVERTERS, SourceError, load_source
from findap.datasets.finer import entity_spans

CONTRACT = {"id", "kind", "source", "domain", "capability"}


def convert(shared_data, name, limit=50, **overrides):
    cfg = CurateConfig(data_root=str(shared_data), **overrides)
    return load_source(SourceConfig(name=name, limit=limit), cfg)


@pytest.mark.parametrize("name", [n for n in CONVERTERS if not n.startswith("records_")])
def test_every_converter_yields_contract_records(shared_data, name):
    examples, report = convert(shared_data, name, limit=20)
    assert report.examples == len(examples) > 0
    kind = CONVERTERS[name].kind
    for ex in examples:
        assert CONTRACT <= set(ex) and ex["kind"] == kind and ex["source"] == name
        if kind == "cpt":
            assert ex["text"].strip()
        else:
            roles = [m["role"] for m in ex["messages"]]
            assert roles == ["user", "assistant"] and all(m["content"].strip() for m in ex["messages"])
    assert len({ex["id"] for ex in examples}) == len(examples)


def test_fpb_labels_match_raw_lines(shared_data):
    examples, _ = convert(shared_data, "fpb", limit=200)
    raw: dict[str, set] = {}  # a few sentences occur twice with different labels in the real file
    for line in (shared_data / "fpb" / "Sentences_50Agree.train.txt").read_text(encoding="utf-8").splitlines():
        sentence, _, label = line.rpartition("@")
        raw.setdefault(sentence.strip(), set()).add(label)
    for ex in examples:
        sentence = ex["messages"][0]["content"].split("Sentence: ", 1)[1]
        assert ex["messages"][1]["content"] in raw[sentence]


def test_finer_entities_match_seqeval(shared_data):
    from seqeval.metrics.sequence_labeling import get_entities

    from findap.curate.sources.badrows import BadRows
    from findap.curate.sources.context import ConvertContext
    from findap.curate.sources.finance import conll_sentences

    ctx = ConvertContext("finer", "finance", "task", 0.0, BadRows())
    checked = 0
    for _, tokens, tags in conll_sentences(shared_data / "finer" / "FIN5.train.conll", ctx):
        expected = [(" ".join(tokens[s : e + 1]), t) for t, s, e in get_entities(tags)]
        assert entity_spans(tokens, tags) == expected
        checked += bool(expected)
    assert checked > 100


def test_fomc_labels_match_pandas(shared_data):
    import pandas as pd

    frame = pd.read_excel(shared_data / "fomc" / "lab-manual-split-combine-train-5768.xlsx")
    truth = dict(zip(frame["sentence"].str.strip(), frame["label"].map({0: "dovish", 1: "hawkish", 2: "neutral"})))
    examples, _ = convert(shared_data, "fomc", limit=100)
    for ex in examples:
        assert ex["messages"][1]["content"] == truth[ex["messages"][0]["content"].split("Sentence: ", 1)[1]]


def test_credit_decodes_uci_codes(shared_data):
    examples, _ = convert(shared_data, "credit", limit=None, eval_holdout=0.0)
    first = examples[0]["messages"]  # raw row 1: A11 6 A34 A43 1169 ... A201 1
    assert "- checking account: below 0 DM" in first[0]["content"]
    assert "- duration in months: 6" in first[0]["content"]
    assert "- purpose: radio/television" in first[0]["content"]
    assert first[1]["content"] == "good"
    raw = (shared_data / "credit" / "german.data").read_text().split("\n")
    bad = sum(line.split()[-1] == "2" for line in raw if line.strip())
    assert sum(ex["messages"][1]["content"] == "bad" for ex in examples) == bad == 300


def test_gsm8k_solution_keeps_final_answer(shared_data):
    examples, _ = convert(shared_data, "gsm8k", limit=30, eval_holdout=0.0)  # all rows, to zip with the file
    rows = [json.loads(l) for l in open(shared_data / "gsm8k" / "train.jsonl")][:30]
    for ex, row in zip(examples, rows):
        final = row["answer"].rsplit("####", 1)[1].strip()
        assert ex["messages"][1]["content"].endswith(f"The answer is {final}.")
        assert "<<" not in ex["messages"][1]["content"]


def test_tatqa_and_cfa_answers(shared_data):
    tat, _ = convert(shared_data, "tatqa", limit=40, eval_holdout=0.0)
    items = json.loads((shared_data / "tatqa" / "tatqa_dataset_dev.json").read_text())
    q0 = items[0]["questions"][0]
    assert tat[0]["messages"][1]["content"].endswith(", ".join(map(str, q0["answer"])) if isinstance(
        q0["answer"], list) else str(q0["answer"]))
    assert "Fixed Price | $  1,452.4" in tat[0]["messages"][0]["content"]
    cfa, _ = convert(shared_data, "cfa", limit=None, eval_holdout=0.0)
    raw = json.loads((shared_data / "cfa" / "CFA_Easy.json").read_text())
    assert len(cfa) == len(raw)
    assert all(ex["messages"][1]["content"] == f"Answer: {r['answer'].upper()}" for ex, r in zip(cfa, raw))


def test_promptsource_empty_completions_counted_not_bad(shared_data):
    examples, report = convert(shared_data, "promptsource", limit=None)
    assert report.empty_rows == 1000 and report.bad_rows == []  # the five TREC templates have no completions
    assert not any("<|endoftext|>" in ex["messages"][1]["content"] for ex in examples)


def test_holdout_split_is_deterministic_disjoint_and_sized(shared_data):
    lines = (shared_data / "fpb" / "Sentences_50Agree.train.txt").read_text(encoding="utf-8").splitlines()
    sentences = [l.rpartition("@")[0] for l in lines]
    reserved = [s for s in sentences if reserved_for_eval("fpb", s, 0.3)]
    assert abs(len(reserved) / len(sentences) - 0.3) < 0.03
    assert holdout_bucket("fpb", "A  Sentence") == holdout_bucket("fpb", "a sentence")
    train, report = convert(shared_data, "fpb", limit=None, eval_holdout=0.3)
    assert report.reserved_for_eval == len(reserved) and len(train) + len(reserved) == len(sentences)
    train_sentences = {ex["messages"][0]["content"].split("Sentence: ", 1)[1] for ex in train}
    assert not train_sentences & {s.strip() for s in reserved}


def _corrupt_copy(shared_data, tmp_path):
    lines = (shared_data / "fpb" / "Sentences_50Agree.train.txt").read_text(encoding="utf-8").splitlines()[:10]
    lines[3] = lines[3].rpartition("@")[0] + "@bullish"  # unknown label on line 4
    lines[6] = lines[6].replace("@", " ")  # no separator on line 7
    path = tmp_path / "fpb.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_bad_rows_reported_with_file_line_field(shared_data, tmp_path):
    path = _corrupt_copy(shared_data, tmp_path)
    cfg = CurateConfig(data_root=str(shared_data), eval_holdout=0.0)
    examples, report = load_source(SourceConfig(name="fpb", path=str(path)), cfg)
    assert len(examples) == 8
    assert report.bad_rows == [f"{path}:4: field 'label': 'bullish' not in ('positive', 'negative', 'neutral')",
                               f"{path}:7: field 'label': expected 'sentence@label'"]
    with pytest.raises(SourceError, match=rf"{path.name}:4: field 'label'"):
        load_source(SourceConfig(name="fpb", path=str(path)), cfg.model_copy(update={"on_bad_row": "fail"}))


def test_records_converter_reads_user_files(tmp_path, shared_data):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"q": "What is a bond?", "a": "A loan to an issuer."}\n{"q": "", "a": "x"}\n')
    cfg = CurateConfig(data_root=str(shared_data))
    examples, report = load_source(SourceConfig(name="mine", converter="records_chat", path=str(path),
                                                prompt_field="q", response_field="a"), cfg)
    assert [m["content"] for m in examples[0]["messages"]] == ["What is a bond?", "A loan to an issuer."]
    assert len(report.bad_rows) == 1 and "field 'q'" in report.bad_rows[0]


def test_credit_training_and_eval_use_one_code_book(shared_data):
    """The same german.data row reads the same words in a training prompt and in a FinEval item."""
    from findap.eval.registry import get_task

    examples, _ = convert(shared_data, "credit", limit=None, eval_holdout=0.0)
    train_text = examples[0]["messages"][0]["content"]
    doc = next(d for d in get_task("flare_german", root=shared_data).all_docs if d["id"] == "german-1")
    for part in doc["text"].split("; "):
        assert f"- {part}" in train_text, part


def test_credit_bad_code_names_file_line_and_attribute(tmp_path):
    from findap.eval.loaders import load_german
    from findap.eval.registry import get_task
    from findap.io import DataError

    bad = tmp_path / "credit" / "german.data"
    bad.parent.mkdir()
    bad.write_text("A11 6 A34 A43 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1\n"
                   "A11 6 A34 A99 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1\n")
    spec = get_task("flare_german", root=tmp_path).spec
    with pytest.raises(DataError, match=r"german.data:2.*purpose.*A99"):
        load_german(tmp_path, spec, "credit/german.data")
