"""Dedup (exact + MinHash) and decontamination on real rows."""
from __future__ import annotations

from pathlib import Path

import pytest

from findap.curate.config import CurateConfig, DedupConfig, SourceConfig
from findap.curate.decontam import EvalIndex, words
from findap.curate.dedup import shingles
from findap.curate.records import cpt_example, it_example
from findap.curate.sources import load_source
from helpers.curation_oracle import decontaminate, dedup, minhash


def transcripts(shared_data: Path, n: int) -> list[str]:
    return [p.read_text(encoding="utf-8") for p in sorted((shared_data / "ectsum/train/ects").glob("*.txt"))[:n]]


def perturb(text: str, every: int) -> str:
    """Change one word in `every`: a near duplicate (Jaccard of 5-gram shingles well above 0.8 for every=100)."""
    tokens = text.split()
    return " ".join("CHANGED" if i % every == 0 else t for i, t in enumerate(tokens))


def test_near_and_exact_duplicates_removed_with_counts(shared_data):
    texts = transcripts(shared_data, 6)
    docs = [cpt_example("ects", str(i), t, "finance", "concept") for i, t in enumerate(texts)]
    near = cpt_example("copy", "near", perturb(texts[0], 100), "finance", "concept")
    exact = cpt_example("copy", "exact", "  " + texts[1].upper() + "\n", "finance", "concept")
    far = cpt_example("copy", "far", perturb(texts[2], 3), "finance", "concept")  # too different: kept
    kept, report = dedup(docs + [near, exact, far], DedupConfig())
    assert [ex["id"] for ex in kept] == [ex["id"] for ex in docs] + [far["id"]]
    assert report.to_dict()["exact"] == {"copy": 1} and report.to_dict()["near"] == {"copy": 1}


def test_minhash_estimate_tracks_exact_jaccard(shared_data):
    text = transcripts(shared_data, 1)[0]
    cfg = DedupConfig(num_perm=256)
    for every in (50, 10, 4):
        other = perturb(text, every)
        a, b = shingles(text, cfg.ngram), shingles(other, cfg.ngram)
        exact = len(a & b) / len(a | b)
        assert abs(minhash(text, cfg).jaccard(minhash(other, cfg)) - exact) < 0.1


def test_it_exact_dedup_by_prompt_keeps_first(shared_data):
    a = it_example("fpb", "1", "Sentence: Sales rose.", "positive", "finance", "task")
    b = it_example("fpb", "2", "Sentence:  sales rose.", "neutral", "finance", "task")  # same prompt, other label
    c = it_example("fpb", "3", "Sentence: Sales fell.", "negative", "finance", "task")
    kept, report = dedup([a, b, c], DedupConfig())
    assert [ex["id"] for ex in kept] == [a["id"], c["id"]] and report.exact["fpb"] == 1


def _reserved_fpb_sentence(shared_data, min_words, max_words):
    from findap.curate.holdout import reserved_for_eval

    for line in (shared_data / "fpb" / "Sentences_50Agree.train.txt").read_text(encoding="utf-8").splitlines():
        sentence = line.rpartition("@")[0]
        if reserved_for_eval("fpb", sentence, 0.3) and min_words <= len(words(sentence)) <= max_words:
            return sentence
    raise AssertionError("no reserved sentence")


def test_planted_eval_items_are_removed(shared_data):
    cfg = CurateConfig(data_root=str(shared_data), eval_holdout=0.3)
    fpb, _ = load_source(SourceConfig(name="fpb", limit=300), cfg)
    gsm, _ = load_source(SourceConfig(name="gsm8k", limit=200), cfg)
    short = _reserved_fpb_sentence(shared_data, 8, 12)  # whole-sequence path
    long = _reserved_fpb_sentence(shared_data, 25, 60)  # 13-gram path
    val = sorted((shared_data / "ectsum/val/ects").glob("*.txt"))[0].read_text(encoding="utf-8")
    eval_texts = {"fpb_eval": [short, long], "ectsum_val": [val], "gsm8k_eval": [gsm[5]["messages"][0]["content"]]}
    planted = [
        it_example("planted", "short", f"Tone of: {short}", "positive", "finance", "task"),
        it_example("planted", "long", f"Tone of: {long}", "positive", "finance", "task"),
        cpt_example("planted", "call", "Intro.\n" + val[:20000], "finance", "concept"),
    ]
    training = fpb + gsm + planted
    kept, removed = decontaminate(training, eval_texts)
    kept_ids = {ex["id"] for ex in kept}
    assert not kept_ids & {ex["id"] for ex in planted} and gsm[5]["id"] not in kept_ids
    assert removed == {"fpb_eval": {"planted": 2}, "ectsum_val": {"planted": 1}, "gsm8k_eval": {"gsm8k": 1}}
    assert len(kept) == len(training) - 4  # the reserved sentences are not in the training portion of FPB


def test_shared_boilerplate_is_not_contamination(shared_data):
    """Another quarter's call that shares a sentence with an eval transcript stays (min_overlap)."""
    val = (sorted((shared_data / "ectsum/val/ects").glob("*.txt"))[0]).read_text(encoding="utf-8")
    one_sentence = max(val.split("\n"), key=len)
    assert len(words(one_sentence)) >= 13
    train = transcripts(shared_data, 1)[0] + "\n" + one_sentence
    index = EvalIndex({"ectsum": [val]})
    assert index.match(train) is None
    assert index.match(val) == "ectsum"
    strict = EvalIndex({"ectsum": [val]}, min_overlap=1e-9)  # any shared 13-gram
    assert strict.match(train) == "ectsum"


def test_short_eval_inputs_match_whole_only(shared_data):
    index = EvalIndex(["The Committee decided to keep the target range unchanged ."], n=13, short_words=8)
    assert index.match("Yesterday the committee decided to keep the target range unchanged, as expected.") == "eval"
    assert index.match("The Committee decided to keep the target range for now.") is None


def test_gather_eval_texts_from_files_is_the_reserved_portion(shared_data):
    from findap.curate.eval_texts import from_files
    from findap.curate.holdout import reserved_for_eval

    cfg = CurateConfig(data_root=str(shared_data), eval_holdout=0.3)
    texts = from_files(cfg)
    assert {"fpb", "finer", "fomc", "credit", "tatqa", "cfa", "ectsum", "ectsum_val", "mmlu", "mtbench"} <= set(texts)
    assert texts["fpb"] and all(reserved_for_eval("fpb", s, 0.3) for s in texts["fpb"])
    assert len(texts["ectsum_val"]) == 249 and len(texts["mtbench"]) == 160


# ---- every probe of every scored doc: question alone, question + options, input text ---------------------------
@pytest.fixture(scope="module")
def registry(shared_data):
    from findap.curate.eval_texts import from_registry

    texts, skipped = from_registry(shared_data)
    return texts, skipped, EvalIndex(texts)


def _mmlu_docs(shared_data):
    from findap.eval.registry import get_task

    task = get_task("mmlu", root=shared_data)
    return task.splits["dev"] + task.splits["unseen"]


def _background(shared_data) -> str:
    return transcripts(shared_data, 1)[0][:3000]


def test_copied_mmlu_question_without_its_options_is_removed(shared_data, registry):
    """The old index joined question + options into one input: a question copied without its (long) options
    held too few of the joined 13-grams and the CPT text survived."""
    _, _, index = registry
    doc = next(d for d in _mmlu_docs(shared_data) if len(words(d["question"])) >= 20
               and sum(len(words(c)) for c in d["choices"]) > 2 * len(words(d["question"])))
    copied = cpt_example("planted", "q", f"{_background(shared_data)}\n\nQuiz time. {doc['question']} Think "
                         "about it before you read the answer below.", "finance", "concept")
    clean = cpt_example("clean", "c", _background(shared_data), "finance", "concept")
    kept, removed = decontaminate([copied, clean], index)
    assert [ex["id"] for ex in kept] == [clean["id"]] and removed == {"mmlu": {"planted": 1}}


def test_short_question_counts_as_a_whole_line_only(shared_data, registry):
    """Questions under 13 words (rule: the whole question, normalised, is a line of the training text, after an
    optional 'Question:' label); the same words inside a longer line are not evidence of a copy."""
    _, _, index = registry
    doc = next(d for d in _mmlu_docs(shared_data) if 8 <= len(words(d["question"])) < 13)
    question = doc["question"]
    as_line = cpt_example("planted", "line", f"{_background(shared_data)}\nQuestion: {question.upper()}\n",
                          "finance", "concept")
    inside = cpt_example("clean", "inside", f"My friend once asked, in passing, {question} and we laughed.",
                         "finance", "concept")
    kept, removed = decontaminate([as_line, inside], index)
    assert [ex["id"] for ex in kept] == [inside["id"]] and removed == {"mmlu": {"planted": 1}}


def test_templated_credit_rows_copied_caught_others_kept(shared_data, registry):
    """German credit rows share their field names and most values ("checking account: ...; duration in months:
    ..."): every real training row stays, while a scored row copied into training (curation's own format) goes."""
    from findap.eval.registry import get_task

    texts, _, index = registry
    cfg = CurateConfig(data_root=str(shared_data))
    training, _ = load_source(SourceConfig(name="credit"), cfg)
    scored = get_task("flare_german", root=shared_data).splits["unseen"][0]
    copy = it_example("planted", "row", "Assess this applicant.\n\n" + scored["text"].replace("; ", "\n- "),
                      "bad", "finance", "task")
    kept, removed = decontaminate(training + [copy], index)
    assert len(kept) == len(training) == 703 and removed == {"flare_german": {"planted": 1}}
    assert index.templated_probes >= 250  # the credit rows are matched whole, not by their few distinctive grams
    # why: counting each row's non-template 13-grams alone, training rows of the same form reach half of them
    untemplated = EvalIndex({"flare_german": texts["flare_german"]}, template_share=1.0)
    assert len(decontaminate(training, untemplated)[0]) < len(training)


def test_every_task_is_checked_or_listed_with_a_reason(shared_data, registry):
    from findap.curate.curation import decontam_coverage
    from findap.curate.stage import summarize
    from findap.eval.registry import all_specs

    texts, skipped, _ = registry
    specs = all_specs()
    assert set(texts) | set(skipped) == set(specs) and not set(texts) & set(skipped)
    for name, spec in specs.items():
        if spec.source is None:  # no hub cache on this machine: listed, never downloaded
            assert name in texts or "local Hugging Face cache" in skipped[name], (name, skipped.get(name))
    local = {"fpb", "fomc", "ner", "flare_german", "tatqa", "cfa_easy", "gsm8k", "ectsum", "mmlu", "mmlu_finance",
             "arc", "boolq", "piqa", "mt_bench", "demo_sentiment", "demo_stance", "demo_concepts", "demo_exercises"}
    assert local <= set(texts)
    mmlu_item = texts["mmlu"][0]
    assert len(mmlu_item) == 2 and mmlu_item[0].startswith(mmlu_item[1])  # question + options, question alone
    record = {"removed": {"fpb": {"fpb": 5}, "ner": {"finer": 7}}, "eval_source": "registry",
              "eval_tasks": {t: len(v) for t, v in texts.items()}, "skipped_tasks": skipped}
    manifest = {"input_docs": 1, "docs_per_s": 1.0, "wall_s": 1.0, "sources": {}, "groups": {},
                "filters": {"dedup": {"exact_total": 0, "near_total": 0}, "quality": {},
                            "decontam": record | decontam_coverage(record)}}
    summary = summarize(manifest)["decontamination"]
    assert summary["removed"] == 12 and summary["checked"] == sorted(texts) and summary["unchecked"] == skipped
    assert summary["note"].startswith(f"Decontaminated against {len(texts)} of {len(specs)} FinEval tasks")
    assert all(name in summary["note"] for name in skipped)


def test_a_broken_task_yaml_is_listed_as_unchecked_not_left_out(tmp_path, monkeypatch):
    import yaml

    from findap.curate.eval_texts import from_registry

    (tmp_path / "half_written.yaml").write_text(yaml.safe_dump({"name": "half_written", "capability": "task"}))
    monkeypatch.setenv("FINDAP_TASKS", str(tmp_path))
    texts, skipped = from_registry()
    assert "half_written" not in texts
    assert "half_written" in skipped and "half_written.yaml" in skipped["half_written"]
