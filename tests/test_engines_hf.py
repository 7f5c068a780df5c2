"""HFEngine against independent references: a naive one-request-at-a-time forward, and transformers' generate."""
import pytest
import torch

from findap.engines import EngineSpec, GenerationRequest, LoglikelihoodRequest, make_engine
from findap.engines.text import encode_pair, truncate_at_stop
from findap.models import tiny_llama


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    # initializer_range 0.2 makes the random model's next-token choices varied (the default repeats one word).
    return tiny_llama(seed=0, initializer_range=0.2)


def engine(tiny, **spec):
    model, tokenizer = tiny
    return make_engine(EngineSpec(model="tiny-test", precision="fp32", **spec), model=model, tokenizer=tokenizer)


def naive_loglikelihood(model, tokenizer, context, continuation, max_length=2048):
    """The reference: lm-eval's tokenisation written out, one unpadded forward per request, full log-softmax."""
    stripped = context.rstrip()
    continuation = context[len(stripped):] + continuation
    context_ids = tokenizer.encode(stripped)
    cont_ids = tokenizer.encode(stripped + continuation)[len(context_ids):]
    ids = (context_ids + cont_ids)[-(max_length + 1):]
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]])).logits[0]
    logprobs = torch.log_softmax(logits.double(), dim=-1)
    n = len(cont_ids)
    rows = logprobs[-n:]
    targets = torch.tensor(ids[-n:])
    total = rows.gather(1, targets[:, None]).sum().item()
    greedy = bool((rows.argmax(-1) == targets).all())
    return total, greedy, n


MC_REQUESTS = [
    # shared context, multi-token choices (ARC-style)
    *[LoglikelihoodRequest("Question: Which gas do plants absorb?\nAnswer:", c)
      for c in [" carbon dioxide", " oxygen", " nitrogen gas from the air", " helium"]],
    # shared context, single-token letter choices
    *[LoglikelihoodRequest("Pick one. A, B, C or D?\nAnswer:", c) for c in [" A", " B", " C", " D"]],
    # trailing space on the context moves onto the continuation
    LoglikelihoodRequest("The central bank raised rates by ", "50 basis points"),
    # a duplicate of an earlier request, and an empty context
    LoglikelihoodRequest("Question: Which gas do plants absorb?\nAnswer:", " oxygen"),
    LoglikelihoodRequest("", "Hello world"),
    LoglikelihoodRequest("A much longer context about interest rates, inflation and the yield curve, " * 3, "bonds"),
]


def test_loglikelihood_matches_naive_reference(tiny):
    model, tokenizer = tiny
    eng = engine(tiny, batch_size=3)
    results = eng.loglikelihood(MC_REQUESTS, progress=False)
    assert len(results) == len(MC_REQUESTS)
    for r, got in zip(MC_REQUESTS, results):
        if not r.context:  # empty context is scored after the BOS token
            ids = [tokenizer.bos_token_id] + tokenizer.encode(r.continuation, add_special_tokens=False)
            with torch.no_grad():
                lp = torch.log_softmax(model(torch.tensor([ids[:-1]])).logits[0].double(), -1)
            want = sum(lp[j - 1, ids[j]].item() for j in range(1, len(ids)))
            assert got.logprob == pytest.approx(want, abs=1e-4)
            continue
        want, greedy, n = naive_loglikelihood(model, tokenizer, r.context, r.continuation)
        assert got.logprob == pytest.approx(want, abs=1e-4), r
        assert got.is_greedy == greedy and got.n_tokens == n


def test_packed_contexts_equal_unpacked_and_use_fewer_forwards(tiny):
    packed, unpacked = engine(tiny, batch_size=2), engine(tiny, batch_size=2, extra={"share_context": False})
    a = packed.loglikelihood(MC_REQUESTS, progress=False)
    b = unpacked.loglikelihood(MC_REQUESTS, progress=False)
    for x, y in zip(a, b):
        assert x.logprob == pytest.approx(y.logprob, abs=1e-4)
        assert (x.is_greedy, x.n_tokens) == (y.is_greedy, y.n_tokens)
    assert packed.model_calls < unpacked.model_calls


def test_single_token_choices_share_one_forward_per_context(tiny):
    model, tokenizer = tiny
    contexts = [f"Question {i}: is the outlook positive?\nAnswer:" for i in range(4)]
    requests = [LoglikelihoodRequest(c, x) for c in contexts for x in (" A", " B", " C", " D")]
    eng = engine(tiny, batch_size=16)
    results = eng.loglikelihood(requests, progress=False)
    assert eng.model_calls == 1  # 16 requests, 4 rows, one batch
    for r, got in zip(requests, results):
        assert got.n_tokens == 1
        assert got.logprob == pytest.approx(naive_loglikelihood(model, tokenizer, r.context, r.continuation)[0], abs=1e-4)


def test_long_context_is_left_truncated_like_lm_eval(tiny):
    model, tokenizer = tiny
    request = LoglikelihoodRequest("word " * 40 + "and finally the", " answer is here")
    got = engine(tiny, max_length=16).loglikelihood([request], progress=False)[0]
    want = naive_loglikelihood(model, tokenizer, request.context, request.continuation, max_length=16)
    assert got.logprob == pytest.approx(want[0], abs=1e-4)


def test_continuation_tokens_are_those_of_the_whole_string(tiny):
    _, tokenizer = tiny
    ctx, cont = encode_pair(tokenizer, "Answer: ", "Paris")
    whole = tokenizer.encode("Answer: Paris")
    assert ctx + cont == whole and tokenizer.decode(cont) == " Paris"
    assert encode_pair(tokenizer, "Answer:", " Paris") == (ctx, cont)


PROMPTS = [
    "The bank reported",
    "Question: what is the capital of France?\nAnswer:",
    "Net income rose 12% year over year while revenue",
    "Hi",
    "In the third quarter, the company's operating margin expanded because",
]


def test_greedy_matches_transformers_generate(tiny):
    model, tokenizer = tiny
    eng = engine(tiny)
    for prompt in PROMPTS[:2]:
        ids = tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            ref = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
        want = tokenizer.decode(ref[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        assert eng.generate([GenerationRequest(prompt, max_new_tokens=12)], progress=False) == [want]


def test_batched_greedy_equals_unbatched(tiny):
    requests = [GenerationRequest(p, max_new_tokens=10 + i) for i, p in enumerate(PROMPTS)]
    batched = engine(tiny, batch_size=4).generate(requests, progress=False)
    one_by_one = engine(tiny, batch_size=1).generate(requests, progress=False)
    assert batched == one_by_one
    assert all(len(t) > 0 for t in batched)


def test_batched_prefill_is_maskless_causal_attention(tiny, monkeypatch):
    """Right padding lets the prefill of a batch of unequal prompts run SDPA's causal kernel with no mask (the
    masked kernel also computes the square's upper triangle); the decoding steps then carry the 2-D mask that hides
    the pads, and the texts equal one-at-a-time greedy decoding (test above)."""
    import torch.nn.functional as F

    calls = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        calls.append((attn_mask is None, kw.get("is_causal", False)))
        return real(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    requests = [GenerationRequest(p, max_new_tokens=4) for p in PROMPTS[:3]]
    assert len({len(engine(tiny).tokenizer(p).input_ids) for p in PROMPTS[:3]}) > 1  # unequal lengths: pads
    eng = engine(tiny, batch_size=3)
    eng.generate(requests, progress=False)
    layers = eng.model.config.num_hidden_layers  # one attention call per layer and forward; the first is the prefill
    prefill, steps = calls[:layers], calls[layers:]
    assert all(no_mask and causal for no_mask, causal in prefill)
    assert steps and not any(no_mask for no_mask, _ in steps)


def test_stop_strings_cut_output_and_end_generation(tiny):
    eng = engine(tiny)
    full = eng.generate([GenerationRequest(PROMPTS[0], max_new_tokens=20)], progress=False)[0]
    words = full.split()
    stop = words[len(words) // 2]
    cut = eng.generate([GenerationRequest(PROMPTS[0], max_new_tokens=20, stop=(stop,))], progress=False)[0]
    assert cut == truncate_at_stop(full, (stop,)) and stop not in cut and len(cut) < len(full)
    _, ids = eng.generate_with_tokens([GenerationRequest(PROMPTS[0], max_new_tokens=20, stop=(stop,))], False)[0]
    assert len(ids) < 20  # it stopped generating, not just cut the text


def test_seeded_sampling_is_reproducible_and_seed_dependent(tiny):
    eng = engine(tiny, batch_size=4)
    req = lambda seed: GenerationRequest(PROMPTS[1], max_new_tokens=16, temperature=1.0, top_p=0.9, seed=seed)
    first = eng.generate([req(7), GenerationRequest(PROMPTS[0], max_new_tokens=5)], progress=False)[0]
    again = eng.generate([GenerationRequest(PROMPTS[4], max_new_tokens=3), req(7), req(8)], progress=False)
    assert again[1] == first  # same seed, other batch-mates: same text
    assert again[2] != first
    greedy = eng.generate([GenerationRequest(PROMPTS[1], max_new_tokens=16)], progress=False)[0]
    assert first != greedy


def test_chat_prompts_go_through_the_chat_template(tiny):
    _, tokenizer = tiny
    eng = engine(tiny)
    messages = [{"role": "user", "content": "Classify: profits fell."}]
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered.endswith("assistant\n")
    a, b = eng.generate([GenerationRequest(messages, max_new_tokens=8), GenerationRequest(rendered, max_new_tokens=8)],
                        progress=False)
    assert a == b


def test_make_engine_rejects_unknown_fields_and_kinds():
    with pytest.raises(ValueError, match="unknown field"):
        make_engine({"kind": "hf", "modle": "x"})
    with pytest.raises(ValueError, match="kind\n.*'hf', 'openai' or 'vllm'"):
        make_engine({"kind": "tgi"})
