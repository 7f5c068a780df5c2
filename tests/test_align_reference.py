"""The reference log-prob cache is keyed by what the numbers depend on; the dev split keeps a prompt's pairs on
one side."""
import json

import pytest

from findap.align.encode import tokenize_pair
from findap.align.reference import cached_reference_logprobs, reference_key
from findap.align.stage import split_dev
from findap.models import load_model, load_tokenizer, save_tiny_llama

QUESTIONS = [("What is 10% of 90?", "9", "90"), ("Add 17 and 25.", "42", "32"), ("Half of 64?", "32", "128")]
SETTINGS = dict(row_tokens=256, share_prompt=True, chunk=64, precision="fp32")


def rows(answer_suffix=""):
    return [{"id": f"q{i}", "prompt": [{"role": "user", "content": q}], "chosen": f"Answer: {good}{answer_suffix}",
             "rejected": f"Answer: {bad}"} for i, (q, good, bad) in enumerate(QUESTIONS)]


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    model_dir = save_tiny_llama(tmp_path_factory.mktemp("ref") / "policy", seed=0)
    return model_dir, load_model(model_dir, device="cpu"), load_tokenizer(model_dir)


def cache(path, model_dir, model, tok, pair_rows, max_length=128):
    pairs = [tokenize_pair(tok, r, max_length) for r in pair_rows]
    key = reference_key(model_dir, tok, pairs, max_length=max_length, **SETTINGS)
    return cached_reference_logprobs(path, key, model, pairs, progress=False, **SETTINGS)


def mark_stale(path):
    """Overwrite the cached numbers (keeping the key): a reuse returns these, a recomputation does not."""
    stored = json.loads(path.read_text())
    stored["logps"] = {k: [123.0, 123.0] for k in stored["logps"]}
    path.write_text(json.dumps(stored))


def test_same_inputs_reuse_the_cache(policy, tmp_path):
    model_dir, model, tok = policy
    path = tmp_path / "ref_logps.json"
    first = cache(path, model_dir, model, tok, rows())
    assert all(v[0] < 0 and v[1] < 0 for v in first.values())
    mark_stale(path)
    assert cache(path, model_dir, model, tok, rows())["q0"] == (123.0, 123.0)


@pytest.mark.parametrize("change", ["pair text", "max_length", "model weights", "share_prompt"])
def test_changed_inputs_recompute(policy, tmp_path, change):
    model_dir, model, tok = policy
    path = tmp_path / "ref_logps.json"
    cache(path, model_dir, model, tok, rows())
    mark_stale(path)
    if change == "pair text":
        got = cache(path, model_dir, model, tok, rows(answer_suffix=" exactly"))
    elif change == "max_length":
        got = cache(path, model_dir, model, tok, rows(), max_length=96)
    elif change == "model weights":  # a rerun of the train stage rewrote the model directory
        other = save_tiny_llama(tmp_path / "retrained", seed=1)
        got = cache(path, other, load_model(other, device="cpu"), tok, rows())
    else:
        pairs = [tokenize_pair(tok, r, 128) for r in rows()]
        settings = {**SETTINGS, "share_prompt": False}
        key = reference_key(model_dir, tok, pairs, max_length=128, **settings)
        got = cached_reference_logprobs(path, key, model, pairs, progress=False, **settings)
    assert got["q0"] != (123.0, 123.0)
    assert json.loads(path.read_text())["logps"]["q0"] != [123.0, 123.0]


def test_a_rewritten_model_directory_changes_the_key(policy, tmp_path):
    """Same path, new weights file (size or modification time): another key."""
    _, _, tok = policy
    model_dir = save_tiny_llama(tmp_path / "m", seed=0)
    pairs = [tokenize_pair(tok, r, 128) for r in rows()]
    before = reference_key(model_dir, tok, pairs, max_length=128, **SETTINGS)
    assert reference_key(model_dir, tok, pairs, max_length=128, **SETTINGS) == before
    save_tiny_llama(tmp_path / "m", seed=1)
    assert reference_key(model_dir, tok, pairs, max_length=128, **SETTINGS) != before


def test_a_cache_file_without_a_key_is_recomputed(policy, tmp_path):
    """ref_logps.json written before keys existed (a bare {pair id: [c, r]} mapping) is never trusted."""
    model_dir, model, tok = policy
    path = tmp_path / "ref_logps.json"
    path.write_text(json.dumps({f"q{i}": [123.0, 123.0] for i in range(3)}))
    assert cache(path, model_dir, model, tok, rows())["q0"] != (123.0, 123.0)


def test_dev_split_keeps_each_prompt_on_one_side(policy):
    _, _, tok = policy
    many = [{"id": f"p{p}-{k}", "prompt": [{"role": "user", "content": f"Question number {p}?"}],
             "chosen": f"Answer {k}", "rejected": f"Wrong {k}"} for p in range(10) for k in range(3)]
    pairs = [tokenize_pair(tok, r, 128) for r in many]
    train, dev = split_dev(pairs, 0.3, seed=0)
    prompt_of = {p.id: p.id.split("-")[0] for p in pairs}
    train_prompts, dev_prompts = {prompt_of[p.id] for p in train}, {prompt_of[p.id] for p in dev}
    assert not train_prompts & dev_prompts
    assert len(dev_prompts) == 3 and len(dev) == 9 and len(train) + len(dev) == len(pairs)
    assert split_dev(pairs, 0.3, seed=0) == (train, dev)  # seeded
    one_prompt = [p for p in pairs if prompt_of[p.id] == "p0"]
    assert split_dev(one_prompt, 0.3, seed=0) == (one_prompt, [])  # cannot split one prompt
