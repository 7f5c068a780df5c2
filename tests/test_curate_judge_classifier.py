"""LLM-judge filter (real engine: the tiny Llama through HFEngine) and the distilled classifier."""
from __future__ import annotations

import numpy as np
import pytest

from findap.curate.classifier import Encoder, agreement, distill
from findap.curate.config import ClassifierConfig, CurateConfig, JudgeConfig, SourceConfig
from findap.curate.judge_filter import PLACEHOLDER, judge_examples, judge_prompt, judge_stats, parse_score
from findap.curate.sources import load_source
from helpers.curation_oracle import pick_sample


@pytest.fixture(scope="module")
def tiny_engine():
    from findap.engines import EngineSpec, make_engine
    from findap.models import tiny_llama

    model, tokenizer = tiny_llama(seed=0)
    return make_engine(EngineSpec(kind="hf", batch_size=8), model=model, tokenizer=tokenizer)


class CountingEngine:
    """The real engine, with a count of generate calls (to prove resume does not re-judge)."""

    def __init__(self, engine):
        self.engine, self.requests = engine, 0
        self.name = engine.name

    def generate(self, requests, progress=True):
        self.requests += len(requests)
        return self.engine.generate(requests, progress=progress)


@pytest.mark.parametrize("output, expected", [
    ('{"justification": "Explains EPS growth drivers.", "score": 4}', (4, "Explains EPS growth drivers.")),
    ('Sure!\n```json\n{"justification": "Off topic", "score": "1"}\n```', (1, "Off topic")),
    ('{"justification": "cut off because', None),
    ('The text is about earnings. Score: 3', (3, None)),
    ('{"justification": "x", "score": 9}', None),  # out of range is a failure, never clipped
    ('{"justification": "<one or two sentences>", "score": "2"}', None),  # the answer template parroted
    ("", None),
])
def test_parse_score(output, expected):
    got = parse_score(output)
    if expected is None:
        assert got is None
    else:
        assert got[0] == expected[0] and (expected[1] is None or got[1] == expected[1])


def test_judge_prompt_is_bounded_and_asks_for_json():
    prompt = judge_prompt("x" * 5000, max_chars=1000)[0]["content"]
    assert '"justification"' in prompt and '"score"' in prompt and "[...]" in prompt and len(prompt) < 2000
    assert PLACEHOLDER in prompt  # the parser rejects answers that leave it unchanged


def test_judge_with_real_engine_counts_failures_and_resumes(shared_data, tiny_engine, tmp_path):
    cfg = CurateConfig(data_root=str(shared_data))
    docs, _ = load_source(SourceConfig(name="ectsum_transcripts", limit=3), cfg)
    judge = JudgeConfig(max_new_tokens=16, retries=1, engine={"batch_size": 2}, max_chars=300)
    engine = CountingEngine(tiny_engine)
    checkpoint = tmp_path / "labels.jsonl"
    labels = judge_examples(engine, docs, judge, checkpoint, seed=0, progress=False)
    stats = judge_stats(labels)
    assert stats["judged"] == 3 and stats["parsed"] + stats["failures"] == 3
    # a random tiny model never writes a valid verdict: every item failed after exactly 1 + retries attempts
    assert stats["failures"] == 3 and stats["attempts"] == 6 and engine.requests == 6
    assert all(row["score"] is None and row["attempts"] == 2 for row in labels.values())
    again = judge_examples(engine, docs, judge, checkpoint, seed=0, progress=False)
    assert again == labels and engine.requests == 6  # resumed from the checkpoint, no new calls
    more, _ = load_source(SourceConfig(name="ectsum_transcripts", limit=4), cfg)
    judge_examples(engine, more, judge, checkpoint, seed=0, progress=False)
    assert engine.requests == 8  # only the new document was judged


def test_pick_sample_is_seeded_and_order_free(shared_data):
    cfg = CurateConfig(data_root=str(shared_data))
    docs, _ = load_source(SourceConfig(name="fpb", limit=100), cfg)
    a = [d["id"] for d in pick_sample(docs, 10, seed=1)]
    assert a == [d["id"] for d in pick_sample(list(reversed(docs)), 10, seed=1)]
    assert a != [d["id"] for d in pick_sample(docs, 10, seed=2)]


def test_encoder_batched_pooling_matches_one_by_one():
    """Padded batches must pool exactly like unpadded single texts (mask handling), as sentence-transformers does."""
    import torch

    texts = ["Net revenue rose 11% year over year.", "The cat sat.", "Guidance for fiscal 2022 was raised again."]
    encoder = Encoder()
    batched = encoder.encode(texts, batch_size=3)
    for text, row in zip(texts, batched):
        with torch.inference_mode():
            hidden = encoder.model(**encoder.tokenizer(text, return_tensors="pt")).last_hidden_state[0].numpy()
        mean = hidden.mean(axis=0)
        assert np.allclose(row, mean / np.linalg.norm(mean), atol=1e-5)
    assert batched[0] @ batched[2] > batched[0] @ batched[1]  # finance sentences closer to each other


def test_agreement_matches_hand_computed():
    report = agreement([5, 4, 1, 0, 3, 2], [4.2, 2.0, 3.5, 0.1, 3.0, 1.0], threshold=3)
    # judge keep: T T F F T F ; classifier keep: T F T F T F -> tp=2 fp=1 fn=1
    assert report["precision"] == pytest.approx(2 / 3) and report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(2 / 3) and report["accuracy"] == pytest.approx(4 / 6)


def test_distilled_classifier_learns_real_labels(shared_data):
    """Labels stand in for a judge: finance call transcripts (4-5) vs general T0 prompts (0-1)."""
    cfg = CurateConfig(data_root=str(shared_data))
    finance, _ = load_source(SourceConfig(name="ectsum_transcripts", limit=24), cfg)
    general, _ = load_source(SourceConfig(name="promptsource_text", limit=2400), cfg)
    general = general[::100]  # one row from each of 24 different T0 templates
    labeled = [(d["id"], d["text"], 4 + i % 2) for i, d in enumerate(finance[:18])] + \
              [(d["id"], d["text"], i % 2) for i, d in enumerate(general[:18])]
    unlabeled = [(d["id"], d["text"]) for d in finance[18:] + general[18:]]
    config = ClassifierConfig(min_labels=8, max_chars=600)
    scores, report = distill(labeled, unlabeled, config, threshold=3, seed=0)
    assert report["trained"] and report["heldout"]["n"] == 9 and report["heldout"]["f1"] >= 0.8
    assert all(scores[d["id"]] >= 3 for d in finance[18:]) and all(scores[d["id"]] < 3 for d in general[18:])


def test_distill_refuses_too_few_or_constant_labels():
    _, report = distill([("a", "text", 3)] * 3, [], ClassifierConfig(min_labels=4), threshold=3)
    assert report == {"trained": False, "reason": "3 parsed judge labels < min_labels=4"}


def test_recipe_token_budget_reaches_the_hf_judge(tiny_model_dir):
    from findap.curate.config import CurateConfig
    from findap.curate.curation import default_judge

    cfg = CurateConfig.model_validate({"judge": {"engine": {"kind": "hf", "max_batch_tokens": 512}}})
    engine = default_judge(cfg, tiny_model_dir, device="cpu")()
    assert engine.spec.max_batch_tokens == 512
