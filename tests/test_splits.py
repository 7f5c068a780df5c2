"""One train / eval split for every dataset that is both trained on and evaluated (findap.splits).

On the real files of the shared data directory: what curation converts for training and what FinEval scores are
disjoint, FinEval's scored share is curation's eval_holdout, decontamination against the registry then removes
(almost) nothing, and distillation never draws a prompt from a scored portion.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from findap.curate.config import CurateConfig, SourceConfig
from findap.curate.decontam import EvalIndex
from findap.curate.eval_texts import from_registry
from findap.curate.sources import CONVERTERS, load_source
from findap.curate.sources.badrows import BadRows
from findap.curate.sources.context import ConvertContext
from findap.eval.registry import get_task
from findap.splits import hash_role, holdout_bucket, normalize, reserved_for_eval, tatqa_report_text
from helpers.curation_oracle import decontaminate

# curate converter -> FinEval task; the task's carve.hash_key must be the converter's dataset key
DUAL_USE = {
    "fpb": "fpb",
    "fomc": "fomc",
    "finer": "ner",
    "credit": "flare_german",
    "tatqa": "tatqa",
    "cfa": "cfa_easy",
    "gsm8k": "gsm8k",
}
HOLDOUT = CurateConfig().eval_holdout


@dataclass
class _Recording(ConvertContext):
    """A ConvertContext that also records the raw input texts of the rows it keeps for training."""

    kept: list[str] = field(default_factory=list)

    def for_training(self, dataset: str, input_text: str) -> bool:
        ok = super().for_training(dataset, input_text)
        if ok and self.select == "train":
            self.kept.append(input_text)
        return ok


def _curation_inputs(shared_data, converter: str, select: str) -> tuple[str, list[str]]:
    """(dataset key, raw inputs of the rows curation keeps) for the training (or reserved eval) portion."""
    spec = CONVERTERS[converter]
    keys: list[str] = []
    ctx = _Recording(source=converter, domain=spec.domain, capability=spec.capability, eval_holdout=HOLDOUT,
                     bad=BadRows("skip", 10**9), select=select)
    original = ctx.for_training

    def spy(dataset, text):
        keys.append(dataset)
        return original(dataset, text)

    ctx.for_training = spy  # type: ignore[method-assign]
    for _ in spec.fn(shared_data / spec.default_path, ctx):
        pass
    assert set(keys) == {keys[0]}, f"{converter} hashes under several keys {set(keys)}"
    return keys[0], ctx.kept if select == "train" else ctx.inputs


def test_bucket_is_stable_normalised_and_in_range():
    assert holdout_bucket("fpb", "A  Sentence ") == holdout_bucket("fpb", "a sentence")
    assert holdout_bucket("fpb", "a sentence") != holdout_bucket("fomc", "a sentence")
    # a fixed value: the split must not move between versions, machines or Python hash seeds
    assert holdout_bucket("fpb", "a sentence") == pytest.approx(0.14743075483246504, abs=1e-15)
    b = holdout_bucket("gsm8k", "How many apples?")
    assert 0 <= b < 1 and reserved_for_eval("gsm8k", "How many apples?", b + 1e-9)
    assert not reserved_for_eval("gsm8k", "How many apples?", b)
    assert hash_role("gsm8k", "How many apples?", b + 1e-9, 0.2) == "dev"
    assert hash_role("gsm8k", "How many apples?", b - 1e-9, 0.2) == "unseen"
    assert hash_role("gsm8k", "How many apples?", 0.0, b) == "train"
    from findap.curate import holdout  # the old import path keeps working

    assert holdout.reserved_for_eval is reserved_for_eval and holdout.holdout_bucket is holdout_bucket


@pytest.mark.parametrize("converter", sorted(DUAL_USE))
def test_training_and_scored_texts_are_disjoint(shared_data, converter):
    task = get_task(DUAL_USE[converter], root=shared_data, prefer="local")
    carve = task.spec.carve
    key, train_inputs = _curation_inputs(shared_data, converter, "train")
    _, reserved_inputs = _curation_inputs(shared_data, converter, "eval")
    assert carve.hash_key == key, f"task {task.name} hashes under {carve.hash_key!r}, curation under {key!r}"
    # the declared key is what the eval_holdout check (curate/holdout.py) matches tasks by
    assert CONVERTERS[converter].holdout_key == key
    assert carve.dev + carve.unseen == pytest.approx(HOLDOUT)

    train = {normalize(t) for t in train_inputs}
    reserved = {normalize(t) for t in reserved_inputs}
    assert train and reserved and not train & reserved
    all_docs = {normalize(d[carve.hash_field]) for d in task.all_docs}
    # eval's hash field is the very string curation hashes (every doc's text is one of curation's inputs)
    assert all_docs <= train | reserved
    scored_docs = task.splits["dev"] + task.splits["unseen"]
    scored = {normalize(d[carve.hash_field]) for d in scored_docs}
    pool = {normalize(d[carve.hash_field]) for d in task.splits["train"]}
    assert scored and not scored & train, "FinEval scores a row that curation trains on"
    assert scored <= reserved and pool <= train and not pool & scored
    # what the model sees of a scored doc is not a training input either (FPB/FOMC/FiNER: the same string)
    if "text" in task.all_docs[0] and carve.hash_field == "text":
        assert not {normalize(d["text"]) for d in scored_docs} & train
    # scored share ~ curation's eval_holdout, within 3 binomial standard deviations of the hash's coin flips
    # (TAT-QA counts reports, the unit of its split: 68 of 278 = 0.245, 2 sd low by chance)
    share = len(scored) / len(all_docs)
    tolerance = 3 * (HOLDOUT * (1 - HOLDOUT) / len(all_docs)) ** 0.5
    assert abs(share - HOLDOUT) < tolerance, f"{task.name}: {share:.3f} of its {len(all_docs)} distinct inputs scored"


def test_tatqa_reports_never_straddle_the_split(shared_data):
    task = get_task("tatqa", root=shared_data)
    scored = {d["report"] for d in task.splits["dev"] + task.splits["unseen"]}
    pool = {d["report"] for d in task.splits["train"]}
    assert scored and pool and not scored & pool
    items = json.loads((shared_data / "tatqa" / "tatqa_dataset_dev.json").read_text(encoding="utf-8"))
    assert {d["report"] for d in task.all_docs} == {tatqa_report_text(item) for item in items}


def test_decontamination_against_the_registry_removes_almost_nothing(shared_data):
    """With one split on both sides the registry's dev+unseen docs are exactly the rows curation held out, so
    decontamination has next to nothing left to do. Exact duplicates cannot be split (same text, same hash);
    what it still removes (measured: FPB 5/2506, FOMC 14/1430, FiNER 7/802, GSM8K 4/5225, TAT-QA 0/1260) are
    near-duplicates inside the raw files: the same sentence with different punctuation or quotes, one sentence
    quoted inside a longer one (FOMC's repeated policy directive), FiNER's legal boilerplate sharing long phrases,
    and GSM8K questions differing by a word. Those land on either side independently and are caught here."""
    texts, _ = from_registry(shared_data)
    index = EvalIndex(texts)
    cfg = CurateConfig(data_root=str(shared_data))
    for name in ("fpb", "fomc", "finer", "tatqa", "gsm8k", "credit", "cfa"):
        examples, report = load_source(SourceConfig(name=name), cfg)
        kept, removed = decontaminate(examples, index)
        gone = len(examples) - len(kept)
        assert report.reserved_for_eval > 0 and examples
        assert gone < 0.02 * len(examples), f"{name}: decontamination removed {gone}/{len(examples)}: {removed}"
        assert gone <= {"fpb": 10, "fomc": 25, "finer": 15, "gsm8k": 10}.get(name, 0), (name, gone, removed)


def test_distill_prompts_never_come_from_an_eval_portion(shared_data):
    from findap.demo import demo_split, load_demo
    from findap.distill.config import PromptSource
    from findap.distill.prompts import load_cfa, load_exercises, load_gsm8k, load_source, load_tatqa

    # demo exercises: train split only; FinEval's demo_exercises scores the others
    train_ids = {str(r["id"]) for r in demo_split(load_demo("exercises"), "train")}
    exercises = load_exercises()
    demo_task = get_task("demo_exercises", root=shared_data)
    scored_ids = {d["id"] for d in demo_task.docs("dev") + demo_task.docs("unseen")}
    assert exercises and {i.id for i in exercises} == train_ids and not train_ids & scored_ids

    cfa = load_cfa(str(shared_data / "cfa" / "CFA_Easy.json"))
    cfa_task = get_task("cfa_easy", root=shared_data)
    cfa_scored = {int(d["id"].split("-")[1]) for d in cfa_task.docs("dev") + cfa_task.docs("unseen")}
    cfa_used = {int(i.id.split("-")[1]) for i in cfa}
    assert cfa_used and not cfa_used & cfa_scored and len(cfa_used) == len(cfa_task.splits["train"])

    gsm = load_gsm8k(str(shared_data / "gsm8k" / "train.jsonl"))
    gsm_task = get_task("gsm8k", root=shared_data)
    gsm_scored = {normalize(d["question"]) for d in gsm_task.docs("dev") + gsm_task.docs("unseen")}
    assert gsm and not {normalize(i.question) for i in gsm} & gsm_scored
    assert len(gsm) == len(gsm_task.splits["train"])

    tat = load_tatqa(str(shared_data / "tatqa" / "tatqa_dataset_dev.json"))
    tat_task = get_task("tatqa", root=shared_data)
    tat_scored = {d["id"] for d in tat_task.docs("dev") + tat_task.docs("unseen")}
    assert tat and not {i.id.removeprefix("tatqa-") for i in tat} & tat_scored

    # `limit` counts kept prompts; eval_holdout=0 (no FinEval portion) gives the file's first rows back
    limited = load_source(PromptSource(kind="gsm8k", path=str(shared_data / "gsm8k" / "train.jsonl"), limit=7))
    assert [i.id for i in limited] == [i.id for i in gsm[:7]]
    first = load_gsm8k(str(shared_data / "gsm8k" / "train.jsonl"), limit=3, eval_holdout=0.0)
    assert [i.id for i in first] == ["gsm8k-00000", "gsm8k-00001", "gsm8k-00002"]
