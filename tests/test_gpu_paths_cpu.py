"""CPU checks of the code paths only GPU users run: flash_attention_2 inputs, per-rank CUDA placement, precision
choice on CUDA, and the vLLM engine (against a stand-in `vllm` module that follows vLLM's documented API).

Nothing here needs a GPU: CUDA queries are monkeypatched, and the flash path runs transformers' own flash
dispatch (`_flash_attention_forward`) with a pure-torch varlen kernel that checks what flash_attn checks.
"""
from __future__ import annotations

import importlib.util
import inspect
import sys
import types
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from findap.models import autocast_dtype, tiny_llama
from findap.train.attention import model_inputs, resolve_backend
from findap.train.loss import token_loss_sum
from findap.train.packing import collate_flat, pack_documents
from helpers.attention import set_backend
from helpers.sample_data import ectsum_texts, fpb_conversations, gsm8k_conversations
from findap.train.tokenize import tokenize_examples

FLASH_KWARGS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
FAKE_FLASH = "findap_test_flash"


# ------------------------------------------------------------------------------------------- flash_attention_2
@pytest.fixture(scope="module")
def packed():
    model, tok = tiny_llama(seed=1)
    examples = fpb_conversations(3) + gsm8k_conversations(2) + ectsum_texts(1)
    docs = tokenize_examples(examples, tok, 100)[:7]
    rows = pack_documents(docs, 384, seed=None)
    return model, docs, rows


def test_flash_inputs_use_the_names_dtype_and_device_transformers_reads(packed):
    from transformers.modeling_flash_attention_utils import FlashAttentionKwargs, _flash_attention_forward

    _, _, rows = packed
    batch = collate_flat(rows)
    kw = model_inputs(batch, "flash_attention_2", torch.device("cpu"))
    params = inspect.signature(_flash_attention_forward).parameters
    assert set(FLASH_KWARGS) <= set(params) and set(FLASH_KWARGS) == set(FlashAttentionKwargs.__annotations__)
    assert kw["attention_mask"] is None and kw["use_cache"] is False  # else transformers unpads by the mask
    for name in ("cu_seq_lens_q", "cu_seq_lens_k"):
        assert kw[name].dtype == torch.int32 and kw[name].device == kw["input_ids"].device  # flash_attn's CHECKs
    assert isinstance(kw["max_length_q"], int) and kw["max_length_q"] == kw["max_length_k"]
    lens = [n for row in batch["doc_lens"] for n in row]
    assert kw["cu_seq_lens_q"].tolist() == [sum(lens[:i]) for i in range(len(lens) + 1)]
    assert kw["max_length_q"] == max(lens)
    assert kw["position_ids"].shape == kw["input_ids"].shape == (1, sum(lens))  # RoPE restarts per document


def _varlen_kernel(calls):
    """Pure-torch stand-in for flash_attn.flash_attn_varlen_func (same signature prefix), checking its inputs."""

    def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                               softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                               alibi_slopes=None, deterministic=False, return_attn_probs=False):
        assert cu_seqlens_q.dtype == torch.int32 and cu_seqlens_k.dtype == torch.int32
        assert cu_seqlens_q.device == q.device and q.dim() == 3  # (total tokens, heads, head_dim)
        assert isinstance(max_seqlen_q, int) and causal
        calls.append(cu_seqlens_q.tolist())
        bounds = cu_seqlens_q.tolist()
        rep = q.shape[1] // k.shape[1]  # flash handles GQA natively
        outs = []
        for s, e in zip(bounds[:-1], bounds[1:]):
            qs, ks, vs = (x[s:e].transpose(0, 1) for x in (q, k, v))
            ks, vs = ks.repeat_interleave(rep, 0), vs.repeat_interleave(rep, 0)
            outs.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=softmax_scale)
                        .transpose(0, 1))
        return torch.cat(outs)

    return flash_attn_varlen_func


@pytest.fixture
def fake_flash(monkeypatch):
    """transformers' real flash attention function and mask function under a test name, its kernel import
    replaced by the pure-torch varlen kernel (nothing else of the flash path is replaced)."""
    import transformers.modeling_flash_attention_utils as fau
    from transformers import AttentionInterface
    from transformers.integrations.flash_attention import flash_attention_forward
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    calls = []
    varlen = _varlen_kernel(calls)

    def lazy_import(implementation, *args, **kwargs):
        return (None, varlen, None, None, None), (fau._lazy_define_process_function(varlen), dict)

    import transformers.modeling_utils as mu

    # the name contains "flash", so transformers treats it as a flash implementation everywhere (it preloads the
    # kernel in set_attn_implementation too)
    monkeypatch.setattr(fau, "lazy_import_flash_attention", lazy_import)
    monkeypatch.setattr(mu, "lazy_import_flash_attention", lazy_import)
    AttentionInterface.register(FAKE_FLASH, flash_attention_forward)
    AttentionMaskInterface.register(FAKE_FLASH, flash_attention_mask)
    return calls


def test_flash_path_packed_equals_unpacked_with_transformers_dispatch(packed, fake_flash):
    model, docs, rows = packed
    batch = collate_flat(rows)
    with torch.no_grad():
        ref = [model.get_decoder()(input_ids=torch.tensor([d["input_ids"]]), use_cache=False).last_hidden_state[0]
               for d in docs]
    model.set_attn_implementation(FAKE_FLASH)
    try:
        inputs = model_inputs(batch, "flash_attention_2", "cpu")
        with torch.no_grad():
            hidden = model.get_decoder()(**inputs).last_hidden_state[0]
        assert fake_flash, "transformers did not take the varlen branch with our kwargs"
        t = 0
        for row in rows:
            for d in row:
                i = next(k for k, x in enumerate(docs) if x is d)
                n = len(d["input_ids"])
                torch.testing.assert_close(hidden[t:t + n], ref[i], atol=2e-5, rtol=1e-5)
                t += n
        # the training loss path (decoder hidden states, chunked LM head with its own gradient) on this backend
        model.train()
        loss, count = token_loss_sum(model, inputs, batch["labels"], chunk=64)
        loss.backward()
        assert count > 0 and torch.isfinite(loss)
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()
        set_backend(model, "sdpa")


# ------------------------------------------------------------------------------------------ precision on CUDA
@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda answers as on a GPU machine; `state['native_bf16']` is the card's native bf16 support."""
    state = {"native_bf16": True, "bf16_calls": []}

    def is_bf16_supported(including_emulation=True):
        state["bf16_calls"].append(including_emulation)
        return state["native_bf16"] or including_emulation  # pre-Ampere: emulation makes the default say True

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    return state


def test_autocast_dtype_on_cuda(fake_cuda):
    cuda = torch.device("cuda")
    assert autocast_dtype(cuda, "auto") is torch.bfloat16
    fake_cuda["native_bf16"] = False  # V100 / T4
    assert autocast_dtype(cuda, "auto") is torch.float16  # inference: fp16 where bf16 is only emulated
    assert autocast_dtype(cuda, "auto", training=True) is None  # no GradScaler: fp32, never fp16
    assert not any(fake_cuda["bf16_calls"])  # always asked without emulation
    with pytest.raises(ValueError, match="fp16"):
        autocast_dtype(cuda, "fp16", training=True)
    assert autocast_dtype(cuda, "fp16") is torch.float16
    assert autocast_dtype(cuda, "bf16", training=True) is torch.bfloat16


def test_resolve_backend_picks_flash_only_where_it_runs(fake_cuda, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "flash_attn" else real_find_spec(name, *a))
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert resolve_backend("auto", cuda) == "flash_attention_2"
    assert resolve_backend("auto", cuda, "fp32") == "varlen"  # flash_attn kernels take no fp32 input
    assert resolve_backend("auto", cpu) == "varlen"
    assert resolve_backend("sdpa", cuda, "fp32") == "sdpa"
    with pytest.raises(ValueError, match="flash_attention_2"):
        resolve_backend("flash_attention_2", cuda, "fp32")
    with pytest.raises(ValueError, match="flash_attention_2"):
        resolve_backend("flash_attention_2", cpu)
    fake_cuda["native_bf16"] = False
    assert resolve_backend("auto", cuda) == "varlen"  # trains in fp32 there


# --------------------------------------------------------------------------------------- processes and GPUs
def test_rank_device_is_local_rank(monkeypatch):
    from findap.training.parallel import Replicated, SingleProcess

    assert SingleProcess().device(torch.device("cuda")) == torch.device("cuda")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    rank_device = Replicated(3, 4).device
    assert rank_device(torch.device("cuda")) == torch.device("cuda", 3)
    assert rank_device(torch.device("cuda", 3)) == torch.device("cuda", 3)
    assert rank_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="LOCAL_RANK=3"):
        rank_device(torch.device("cuda", 0))


def test_from_env_on_cuda_takes_gpu_local_rank_and_a_cpu_backend(monkeypatch):
    import torch.distributed as td

    from findap.training.parallel import Replicated, start

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: seen.setdefault("device", d))
    monkeypatch.setattr(td, "is_initialized", lambda: False)
    monkeypatch.setattr(td, "init_process_group", lambda backend, **kw: seen.setdefault("backend", backend))
    monkeypatch.setattr(td, "get_rank", lambda *a: 1)
    monkeypatch.setattr(td, "get_world_size", lambda *a: 2)
    dist = start("none", "full")
    assert seen["device"] == 1 and (dist.rank, dist.world) == (1, 2) and isinstance(dist, Replicated)
    # CUDA tensors over NCCL, and gloo for the loop's CPU loss sums and the CPU barrier
    pairs = dict(p.split(":") for p in seen["backend"].split(","))
    assert pairs == {"cuda": "nccl", "cpu": "gloo"}


# ------------------------------------------------------------------------------------------------------ vLLM
@dataclass
class Logprob:  # vllm/logprobs.py
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class SamplingParams:
    """The SamplingParams fields findap uses, by their vLLM names (keyword-only, unknown names rejected)."""

    def __init__(self, *, n=1, temperature=1.0, top_p=1.0, max_tokens=16, stop=None, seed=None, logprobs=None,
                 prompt_logprobs=None):
        self.__dict__.update(temperature=temperature, top_p=top_p, max_tokens=max_tokens, stop=stop, seed=seed,
                             prompt_logprobs=prompt_logprobs)


class LLM:
    """Offline vLLM stand-in: real prompt log-probs of the tiny model, in vLLM's output layout."""

    instances = []

    def __init__(self, model, *, dtype="auto", max_model_len=None, trust_remote_code=False, seed=0, **kwargs):
        from findap.models import load_model, load_tokenizer

        self.model = load_model(model, device="cpu").eval()
        self.tokenizer = load_tokenizer(model)
        self.max_model_len = max_model_len
        self.prompts = []
        LLM.instances.append(self)

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None):
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        outs = []
        for prompt, p in zip(prompts, params):
            ids = prompt["prompt_token_ids"]  # a TokensPrompt: findap always sends token ids
            assert len(ids) + 1 <= self.max_model_len  # vLLM rejects prompts with no room for one output token
            self.prompts.append(list(ids))
            prompt_logprobs = None
            if p.prompt_logprobs is not None:
                with torch.no_grad():
                    logp = self.model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
                prompt_logprobs = [None]
                for pos in range(1, len(ids)):
                    row = logp[pos - 1]
                    top = int(row.argmax())
                    rank = int((row > row[ids[pos]]).sum()) + 1
                    prompt_logprobs.append({ids[pos]: Logprob(float(row[ids[pos]]), rank),
                                            top: Logprob(float(row[top]), 1)})
            outs.append(types.SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=prompt_logprobs,
                                              outputs=[types.SimpleNamespace(text=" ok STOP more")]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    LLM.instances.clear()
    return module


def test_vllm_engine_scores_like_the_hf_engine(fake_vllm, tiny_model_dir):
    from findap.engines.base import EngineSpec, GenerationRequest, LoglikelihoodRequest
    from findap.engines.hf import HFEngine
    from findap.engines.vllm import VLLMEngine

    spec = EngineSpec(kind="vllm", model=tiny_model_dir, device="cpu", precision="fp32", max_length=64,
                      cache_path=None)
    engine = VLLMEngine(spec)
    hf = HFEngine(EngineSpec(model=tiny_model_dir, device="cpu", precision="fp32", max_length=64, cache_path=None))
    reqs = [LoglikelihoodRequest("Revenue rose. Sentiment:", " positive"),
            LoglikelihoodRequest("Revenue rose. Sentiment:", " negative"),
            LoglikelihoodRequest("", "Net income"),
            LoglikelihoodRequest("word " * 100, " end")]  # longer than max_length: the context keeps its end
    got, want = engine.loglikelihood(reqs, progress=False), hf.loglikelihood(reqs, progress=False)
    for g, w in zip(got[:3], want[:3]):
        assert g.logprob == pytest.approx(w.logprob, abs=1e-4)
        assert (g.is_greedy, g.n_tokens) == (w.is_greedy, w.n_tokens)
    assert got[3].n_tokens == want[3].n_tokens and max(len(p) for p in LLM.instances[0].prompts) <= 63

    llm = LLM.instances[0]
    llm.prompts.clear()
    chat = [{"role": "user", "content": "Classify: revenue rose."}]
    out = engine.generate([GenerationRequest(chat, max_new_tokens=8, stop=("STOP",), seed=3),
                           GenerationRequest("x " * 200, max_new_tokens=16)], progress=False)
    assert out[0] == " ok "
    tok = engine.tokenizer
    text = tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert llm.prompts[0] == hf._prompt_ids(text, 8)  # the hf engine's tokens: no second BOS, same truncation
    assert len(llm.prompts[1]) == 64 - 16


# ------------------------------------------------------------------------------------------- fused AdamW resume
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_foreach_checkpoint_resumes_into_fused_adamw(device, tmp_path):
    """An FSDP run's optimizer file (foreach) resumed by one process (fused): `step` must end up where the fused
    kernel keeps it (float32 on the parameter's device), and the update must run."""
    from findap.training.optim import build_optimizer, param_groups
    from findap.training.parallel import SingleProcess

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)).to(device)
    saved = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, foreach=True)
    model(torch.randn(4, 8, device=device)).square().sum().backward()
    saved.step()
    torch.save(saved.state_dict(), tmp_path / "optimizer.pt")
    opt = build_optimizer(model, 1e-3)
    assert all(g.get("fused") for g in opt.param_groups)  # plain CPU/CUDA tensors: fused (optim.adamw_kernel)
    SingleProcess().restore_optimizer(model, opt, tmp_path / "optimizer.pt")
    assert all(g.get("fused") and not g.get("foreach") for g in opt.param_groups)
    for p, state in opt.state.items():
        assert state["step"].device == p.device and state["step"].dtype == torch.float32
        assert state["exp_avg"].device == p.device
    model(torch.randn(4, 8, device=device)).square().sum().backward()
    opt.step()
    assert all(float(s["step"]) == 2.0 for s in opt.state.values())


# ---------------------------------------------------------------------------------- GPU smoke (skipped on CPU)
@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("flash_attn") is None,
                    reason="needs a CUDA GPU and flash_attn")
def test_flash_attention_2_on_cuda_isolates_documents(packed):
    import copy

    model, docs, rows = packed
    model = copy.deepcopy(model).cuda()
    model.set_attn_implementation("flash_attention_2")
    batch = collate_flat(rows)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        hidden = model.get_decoder()(**model_inputs(batch, "flash_attention_2", "cuda")).last_hidden_state[0]
        t = 0
        for row in rows:
            for d in row:
                n = len(d["input_ids"])
                ref = model.get_decoder()(input_ids=torch.tensor([d["input_ids"]], device="cuda"),
                                          use_cache=False).last_hidden_state[0]
                torch.testing.assert_close(hidden[t:t + n].float(), ref.float(), atol=3e-2, rtol=3e-2)
                t += n
