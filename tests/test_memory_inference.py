"""Inference memory you can predict: the hf engine at the real lengths of long financial prompts (TAT-QA tables,
German-credit records, a stock-movement price table), with a tiny random Llama and the real SmolLM2 tokenizer.

What is checked: batches stay within the token budget (rows x padded length, prompt + new tokens when generating);
no forward builds a batch x heads x length x length attention tensor or projects positions it does not read onto the
vocabulary; peak resident memory of a whole TAT-QA evaluation stays under a bound computed from the budget; and the
answers are those of one request at a time (greedy tokens identical, log-likelihoods within 1e-4).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from findap.engines import EngineSpec, GenerationRequest, LoglikelihoodRequest, make_engine
from findap.engines.text import encode_prompt, render_prompt
from findap.eval.runner import as_tasks
from findap.models import tiny_llama

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HEADS = 4


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=0, initializer_range=0.2, num_attention_heads=HEADS, max_position_embeddings=4096)


def longest_tatqa_prompts(root, n: int, tokenizer) -> list:
    """The `n` TAT-QA dev prompts with the longest tables, as the eval renders them (chat messages)."""
    task = as_tasks(["tatqa"], root=root)[0]
    prompts = [task.messages(doc, "direct", "dev") for doc in task.docs("dev", None)]
    return sorted(prompts, key=lambda p: -len(render_prompt(tokenizer, p)))[:n]


@pytest.fixture(scope="module")
def tatqa_prompts(shared_data, tiny):
    return longest_tatqa_prompts(shared_data, 24, tiny[1])


@pytest.fixture(scope="module")
def credit_requests(shared_data):
    """German-credit records (/work/shared/data/credit) as few-shot scoring prompts of about 1,000-1,500 tokens:
    eight solved records, then the one to classify, scored against one- and multi-token answers."""
    docs = as_tasks(["flare_german"], root=shared_data)[0].docs(None, 14)
    solved = lambda d: f"Record: {d['text']}\nCredit risk: {d['gold']}"
    requests = []
    for i, doc in enumerate(docs[8:]):
        context = "\n\n".join([solved(d) for d in docs[i : i + 8]] + [f"Record: {doc['text']}\nCredit risk:"])
        requests += [LoglikelihoodRequest(context, c) for c in (" good", " bad", " good, low risk", " bad, high risk")]
    return requests


def stock_movement_prompt(days: int = 60) -> str:
    """A stock-movement-style prompt (ACL18 layout: a price table then tweets), about 2,000 tokens long."""
    rows = "\n".join(
        f"2014-{1 + d // 28:02d}-{1 + d % 28:02d},{100 + d * 0.37:.2f},{101 + d * 0.41:.2f},{99 + d * 0.33:.2f},"
        f"{100.5 + d * 0.39:.2f},{1_200_000 + 7919 * d},{-1.5 + (d * 37 % 30) / 10:.2f}"
        for d in range(days)
    )
    tweets = "\n".join(f"$AAPL analysts expect margin pressure in quarter {q}, guidance unchanged" for q in range(20))
    return ("Predict whether the stock's closing price rises or falls tomorrow. Answer Rise or Fall.\n"
            f"date,open,high,low,close,volume,change_pct\n{rows}\n\nTweets:\n{tweets}\n\nAnswer:")


def engine(tiny, **spec):
    model, tokenizer = tiny
    return make_engine(EngineSpec(model="tiny-test", precision="fp32", max_length=4096, **spec),
                       model=model, tokenizer=tokenizer)


class ForwardRecorder:
    """Shapes of every forward's input_ids, and the row count each lm_head call projects."""

    def __init__(self, model):
        self.inputs, self.head_rows = [], []
        self._hooks = [
            model.model.register_forward_pre_hook(self._forward, with_kwargs=True),
            model.lm_head.register_forward_hook(lambda mod, args, out: self.head_rows.append(args[0][..., 0].numel())),
        ]

    def _forward(self, module, args, kwargs):
        ids = kwargs.get("input_ids")
        self.inputs.append((tuple(ids.shape), kwargs.get("attention_mask")))

    def close(self):
        for h in self._hooks:
            h.remove()


class LargestSquareAttention(TorchDispatchMode):
    """Records every op output shaped [batch, heads, length, length] with length > 1: an attention score tensor."""

    def __init__(self, heads: int):
        super().__init__()
        self.heads, self.found = heads, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[1] == self.heads and t.shape[2] == t.shape[3] > 1:
                self.found.append((str(func), tuple(t.shape)))
        return out


# --------------------------------------------------------------------------------------------------- batch shapes
def test_token_budget_batches_drawn_by_hand():
    from findap.engines.token_budget import length_sorted_batches

    lengths = [10, 3, 7, 5, 9]  # longest first: 10, 9, 7, 5, 3
    assert length_sorted_batches(lengths, 4, max_tokens=20) == [[0, 4], [2, 3], [1]]  # 2x10, 2x7, then 3x7 > 20
    assert length_sorted_batches(lengths, 2) == [[0, 4], [2, 3], [1]]  # rows only, as before
    assert length_sorted_batches([50, 4], 8, max_tokens=20) == [[0], [1]]  # too long alone: a batch of one


def test_generation_batches_fit_the_token_budget_at_real_lengths(tiny, tatqa_prompts):
    _, tokenizer = tiny
    lengths = [len(encode_prompt(tokenizer, render_prompt(tokenizer, p))) for p in tatqa_prompts]
    assert max(lengths) > 1000  # the long TAT-QA tables, at their real token lengths
    budget, new = 4096, 8
    eng = engine(tiny, batch_size=64, max_batch_tokens=budget)
    recorder = ForwardRecorder(eng.model)
    eng.generate([GenerationRequest(p, max_new_tokens=new) for p in tatqa_prompts], progress=False)
    recorder.close()
    prefills = [shape for shape, _ in recorder.inputs if shape[1] > 1]
    assert len(prefills) > 1 and sum(b for b, _ in prefills) == len(tatqa_prompts)
    for rows, length in prefills:
        assert rows * (length + new) <= budget or rows == 1, (rows, length)
    # generation projects one position per row onto the vocabulary, never the prompt
    assert all(n <= 64 for n in recorder.head_rows), max(recorder.head_rows)


def test_scoring_batches_fit_the_budget_and_project_only_continuations(tiny, credit_requests):
    budget = 2048
    eng = engine(tiny, batch_size=64, max_batch_tokens=budget)
    recorder = ForwardRecorder(eng.model)
    eng.loglikelihood(credit_requests, progress=False)
    recorder.close()
    assert recorder.inputs
    for (rows, length), _ in recorder.inputs:
        assert rows * length <= budget or rows == 1
    targets = len({(r.context, r.continuation) for r in credit_requests})  # each scored once, >= 1 position each
    total_positions = sum(rows * length for (rows, length), _ in recorder.inputs)
    assert sum(recorder.head_rows) < total_positions / 10  # only continuation positions meet the vocabulary
    assert sum(recorder.head_rows) >= targets


def test_no_attention_score_tensor_is_built(tiny, tatqa_prompts, credit_requests):
    eng = engine(tiny, batch_size=8)
    with LargestSquareAttention(HEADS) as watch:
        eng.generate([GenerationRequest(p, max_new_tokens=2) for p in tatqa_prompts[:4]], progress=False)
        eng.loglikelihood(credit_requests[:4], progress=False)
    assert watch.found == []
    # the check can fail: eager attention materialises [batch, heads, length, length] scores
    model, tokenizer = tiny
    model.config._attn_implementation = "eager"
    try:
        with LargestSquareAttention(HEADS) as watch:
            engine(tiny).loglikelihood(credit_requests[:2], progress=False)
    finally:
        model.config._attn_implementation = "sdpa"
    assert watch.found


def test_right_padded_scoring_passes_no_mask(tiny, credit_requests):
    eng = engine(tiny, batch_size=8, extra={"share_context": False})
    recorder = ForwardRecorder(eng.model)
    eng.loglikelihood(credit_requests[:6], progress=False)
    recorder.close()
    assert recorder.inputs and all(mask is None for _, mask in recorder.inputs)


# ------------------------------------------------------------------------------------- same answers as one by one
def test_budgeted_generation_equals_one_request_at_a_time(tiny, tatqa_prompts):
    requests = [GenerationRequest(p, max_new_tokens=12) for p in tatqa_prompts[:10]]
    requests.append(GenerationRequest(stock_movement_prompt(), max_new_tokens=12))
    _, tokenizer = tiny
    assert len(encode_prompt(tokenizer, requests[-1].prompt)) > 1800
    alone = engine(tiny, batch_size=1, max_batch_tokens=None).generate_with_tokens(requests, progress=False)
    batched = engine(tiny, batch_size=16, max_batch_tokens=6000).generate_with_tokens(requests, progress=False)
    assert [ids for _, ids in batched] == [ids for _, ids in alone]


def test_budgeted_loglikelihood_equals_one_request_at_a_time(tiny, credit_requests, tatqa_prompts):
    _, tokenizer = tiny
    long_context = render_prompt(tokenizer, tatqa_prompts[0])
    requests = credit_requests + [LoglikelihoodRequest(long_context, " 12.6 million"),
                                  LoglikelihoodRequest(stock_movement_prompt(), " Rise")]
    alone = engine(tiny, batch_size=1, max_batch_tokens=None, extra={"share_context": False})
    batched = engine(tiny, batch_size=32, max_batch_tokens=3000)
    for a, b in zip(alone.loglikelihood(requests, progress=False), batched.loglikelihood(requests, progress=False)):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-4)
        assert (b.is_greedy, b.n_tokens) == (a.is_greedy, a.n_tokens)


def test_token_logprobs_in_slices_equal_one_full_forward(tiny):
    model, tokenizer = tiny
    ids = tokenizer.encode(stock_movement_prompt(30))
    assert len(ids) > 600  # more than two slices of positions
    chosen, tops = engine(tiny).token_logprobs(ids, top_k=3)
    with torch.no_grad():
        full = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].double(), -1)
    want = full.gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    assert chosen[0] is None and len(chosen) == len(ids)
    assert torch.allclose(torch.tensor(chosen[1:], dtype=torch.float64), want, atol=1e-4)
    assert [t for t, _ in tops[5]] == full[4].topk(3).indices.tolist()


# ------------------------------------------------------------------------------------------------ peak memory
PEAK_PROBE = r"""
import json, sys, torch
from findap.engines import EngineSpec, GenerationRequest, make_engine
from findap.host_memory import peak_memory, reset_peak_memory
from findap.models import tiny_llama
sys.path.insert(0, sys.argv[4])
from test_memory_inference import longest_tatqa_prompts

torch.set_num_threads(1)
budget, root = int(sys.argv[1]), sys.argv[2]
model, tokenizer = tiny_llama(0, **json.loads(sys.argv[3]))
engine = make_engine(EngineSpec(model="tiny", precision="fp32", batch_size=64, max_batch_tokens=budget,
                                max_length=4096), model=model, tokenizer=tokenizer)
prompts = longest_tatqa_prompts(root, 24, tokenizer)
engine.generate([GenerationRequest("warm up", max_new_tokens=2)], progress=False)
assert reset_peak_memory()
base = peak_memory()["peak_rss_gb"]  # right after a reset the high-water mark is the resident size now
engine.generate([GenerationRequest(p, max_new_tokens=8) for p in prompts], progress=False)
print(json.dumps({"base_gb": base, "peak_gb": peak_memory()["peak_rss_gb"]}))
"""

SIZED = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=4096)


def per_token_bytes(cfg: dict) -> int:
    """fp32 bytes one batch token costs at the peak of a prefill: its KV cache in every layer, plus one layer's
    activations alive at once (hidden-sized residual, norm, q/k/v, GQA-expanded k/v, attention output; MLP gate, up
    and their product)."""
    head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    kv = cfg["num_hidden_layers"] * 2 * cfg["num_key_value_heads"] * head_dim
    layer = 8 * cfg["hidden_size"] + 3 * cfg["intermediate_size"]
    return 4 * (kv + layer)


def test_peak_memory_of_a_tatqa_evaluation_follows_the_token_budget(shared_data):
    budget = 4096
    out = subprocess.run([sys.executable, "-c", PEAK_PROBE, str(budget), str(shared_data), json.dumps(SIZED),
                          str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    grew_gb = got["peak_gb"] - got["base_gb"]
    # 2x for allocator slack and temporaries the estimate leaves out, plus 64 MB for tokenised prompts and caches
    bound_gb = (2 * budget * per_token_bytes(SIZED) + 64 * 2**20) / 2**30
    assert grew_gb < bound_gb, (got, bound_gb)
