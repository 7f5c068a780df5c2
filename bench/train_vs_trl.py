"""Training throughput: findap's stage-1 trainer vs TRL SFTTrainer vs a plain padded Hugging Face loop.

Same model (SmolLM2-135M-Instruct, fp32 master weights, bf16 autocast), same documents (FPB + GSM8K conversations
with assistant-only labels, ECTSum transcripts as CPT text), sequence 2048. Each trainer runs in its own process
(so peak RSS is its own), does one warm-up step, then times `--steps` optimizer steps. Reports real (non-padding)
tokens per second, packing efficiency, peak memory and the ratios.

    PYTHONPATH=src .venv/bin/python bench/train_vs_trl.py --steps 4

TRL runs with its correct CPU settings for packed data: bfd packing + padding_free (position_ids isolate
documents), bf16, batch 2 x 2048, and SFTConfig's default gradient checkpointing (on in the TRL we pin, so `trl` is
the memory-lean configuration a TRL user gets); `trl-nockpt` turns checkpointing off (TRL's fastest). Every arm runs
on the allocator the `findap` command picks on this machine (findap.allocator), TRL's too, so a ratio is about the
trainers; `<arm>@<allocator>` forces one (glibc, tcmalloc, jemalloc, jemalloc-keep), e.g. `findap@glibc`, to
compare allocators in one run. The plain loop pads batches of 4 documents cut at 512 tokens
and uses model(labels=...). `ceiling` times only the bf16 matmuls and SDPA attention of the same timed steps, each
in isolation: the most any trainer could reach on this machine with these kernels.

`findap-ckpt` is the trainer as `train.memory` fits it to a tight budget (micro-batch 2048, activation
checkpointing, loss chunk 256): the memory side of the trade. `findap-compile` runs each decoder layer's MLP and
RMSNorms through torch.compile (their elementwise work fused; kept here, not in the trainer, because it gained
nothing: docs/results.md). `attention` times the per-document SDPA the trainer
uses against an alternative for packed causal documents on CPU (blocked bf16 matmuls that skip every block above
the diagonal, flash-style backward; kept here, not in the trainer, because it is slower: see docs/training.md).
`--calibrate` measures the trainer's peak RSS at several micro-batches with and without checkpointing against
findap.training.memory's estimate.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))  # helpers.sample_data: the test suite's small training sets

MODEL = "smollm2-135m-instruct"
SEQ = 2048


def documents(seq_len: int):
    from findap.models import load_tokenizer
    from helpers.sample_data import ectsum_texts, fpb_conversations, gsm8k_conversations
    from findap.train.tokenize import tokenize_examples

    tok = load_tokenizer(MODEL)
    examples = fpb_conversations(600) + gsm8k_conversations(600) + ectsum_texts(60)
    return tok, tokenize_examples(examples, tok, seq_len)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux: the same as VmHWM


def timed(step_fn, steps: int) -> dict:
    step_fn(0)  # warm-up (allocations, first-call overheads)
    tokens, t0 = 0, time.perf_counter()
    for i in range(1, steps + 1):
        tokens += step_fn(i)
    wall = time.perf_counter() - t0
    return {"tokens": tokens, "wall_s": round(wall, 2), "tok_per_s": round(tokens / wall, 1)}


def worker_findap(steps: int, backend: str, micro_tokens: int = 2 * SEQ, checkpointing: bool = False,
                  loss_chunk: int = 2048, compile_elementwise: bool = False) -> dict:
    import torch

    from findap.models import load_model
    from findap.train.attention import hf_implementation
    from findap.train.config import TrainConfig
    from findap.train.loop import micro_batches, plan_steps, train_step
    from findap.training.memory import ModelShape, plan_memory, resident_bytes
    from findap.training.optim import build_optimizer
    from findap.train.packing import packing_efficiency
    from transformers import AutoConfig

    from findap.models import resolve_model

    tok, docs = documents(SEQ)
    cfg = TrainConfig(seq_len=SEQ, micro_batch_tokens=micro_tokens, tokens_per_step=max(micro_tokens, 2 * SEQ),
                      gradient_checkpointing=checkpointing, loss_chunk_tokens=loss_chunk, memory="off")
    plan = plan_steps(docs, cfg, seed=0)
    # the trainer's own estimate (findap.training.memory), from the same point: before the model loads
    shape = ModelShape.from_config(AutoConfig.from_pretrained(resolve_model(MODEL)))
    estimate = plan_memory(cfg, shape, backend=backend, half=True, baseline=resident_bytes())
    model = load_model(MODEL, device="cpu", attn_implementation=hf_implementation(backend)).train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if compile_elementwise:  # the elementwise parts of each layer fused by torch.compile (dynamic: T varies)
        for layer in model.model.layers:
            for part in ("mlp", "input_layernorm", "post_attention_layernorm"):
                setattr(layer, part, torch.compile(getattr(layer, part), dynamic=True))
    opt = build_optimizer(model, 5e-6)

    def step(i):
        batches = micro_batches(plan[i], cfg, backend, tok.pad_token_id)
        train_step(model, batches, backend, torch.device("cpu"), "bf16", cfg.loss_chunk_tokens)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return sum(b["n_real"] for b in batches)

    out = timed(step, steps)
    out["packing"] = round(packing_efficiency([r for s in plan for r in s], SEQ), 4)
    out["breakdown"] = step_breakdown(step, steps + 1)  # one more step, profiled: where its time goes
    out["estimate_mb"] = round(estimate.estimate_bytes / 2**20)
    out["baseline_mb"] = round(estimate.parts["baseline"] / 2**20)
    return out


# the profiler's operators, by what they do; the first pattern an operator's name contains wins
KINDS = (
    ("attention", ("scaled_dot_product", "flash_attention", "efficient_attention", "_sdpa")),
    ("optimizer", ("adamw", "_foreach")),
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")),
    ("lm head loss", ("log_softmax", "logsumexp", "nll_loss", "cross_entropy", "softmax")),
)


def step_breakdown(step_fn, index: int) -> dict:
    """Seconds of one profiled step by kind of operator (self CPU time of the operators this process called),
    the rest (Python, the dataloader, waits) as `python and other`, and the pages it faulted in (minor faults:
    fresh zero-filled pages the kernel hands out on first touch)."""
    import resource

    from torch.profiler import ProfilerActivity, profile

    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step_fn(index)
    wall = time.perf_counter() - t0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    seconds = {kind: 0.0 for kind, _ in KINDS} | {"elementwise and copies": 0.0}
    for event in prof.key_averages():
        kind = next((k for k, patterns in KINDS if any(p in event.key for p in patterns)), "elementwise and copies")
        seconds[kind] += event.self_cpu_time_total / 1e6
    seconds["python and other"] = max(wall - sum(seconds.values()), 0.0)
    return {"wall_s": round(wall, 2), "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "page_faults": faults, "faulted_mb": round(faults * resource.getpagesize() / 2**20)}


def print_breakdown(name: str, r: dict, ceiling: dict | None) -> None:
    """Where one profiled step of `name` spends its time, next to the ceiling's kernels for a step."""
    b = r["breakdown"]
    parts = ", ".join(f"{kind} {sec:.1f} s" for kind, sec in b["seconds"].items())
    print(f"\n{name}: one profiled step {b['wall_s']} s: {parts}; {b['page_faults']:,} page faults "
          f"({b['faulted_mb']:,} MB faulted in)")
    if ceiling:
        matmul, attention = (ceiling[k] / ceiling["steps"] for k in ("matmul_s", "attention_s"))
        print(f"  the ceiling's kernels for an average step: matmuls {matmul:.1f} s, attention {attention:.1f} s "
              "(the profiled step runs under the profiler, slower than an unprofiled one)")


def worker_trl(steps: int, checkpointing: bool = True) -> dict:
    import tempfile

    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from findap.models import load_model

    tok, docs = documents(SEQ)
    data = Dataset.from_list([{"input_ids": d["input_ids"], "labels": d["labels"]} for d in docs])
    times, seen = [], []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter())
            seen.append(state.num_input_tokens_seen)

    args = SFTConfig(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=2, gradient_accumulation_steps=1,
                     max_length=SEQ, packing=True, packing_strategy="bfd", padding_free=True, bf16=True,
                     use_cpu=True, max_steps=steps + 1, learning_rate=5e-6, save_strategy="no", report_to=[],
                     logging_steps=1000, dataloader_num_workers=0, include_num_input_tokens_seen="non_padding",
                     disable_tqdm=True, gradient_checkpointing=checkpointing)
    model = load_model(MODEL, device="cpu", attn_implementation="sdpa")
    trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[Clock()])
    trainer.train()
    lengths = [len(x) for x in trainer.train_dataset["input_ids"]]
    tokens = seen[-1] - seen[0]
    wall = times[-1] - times[0]
    return {"tokens": tokens, "wall_s": round(wall, 2), "tok_per_s": round(tokens / wall, 1),
            "packing": round(sum(lengths) / (len(lengths) * SEQ), 4)}


def worker_plain(steps: int) -> dict:
    import random

    import torch

    from findap.models import autocast, load_model

    tok, docs = documents(512)
    random.Random(0).shuffle(docs)
    model = load_model(MODEL, device="cpu", attn_implementation="sdpa").train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-6)
    padded = []

    def step(i):
        batch = docs[4 * i:4 * i + 4]
        n = max(len(d["input_ids"]) for d in batch)
        ids = torch.full((4, n), tok.pad_token_id)
        labels = torch.full((4, n), -100)
        mask = torch.zeros((4, n), dtype=torch.long)
        for r, d in enumerate(batch):
            k = len(d["input_ids"])
            ids[r, :k], labels[r, :k], mask[r, :k] = torch.tensor(d["input_ids"]), torch.tensor(d["labels"]), 1
        with autocast("cpu", "bf16"):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        padded.append(int(mask.sum()) / mask.numel())
        return int(mask.sum())

    out = timed(step, steps)
    out["packing"] = round(sum(padded) / len(padded), 4)
    return out


def worker_ceiling(steps: int) -> dict:
    """This machine's ceiling for the timed steps: bf16 matmuls + SDPA attention only, each timed in isolation.

    Times the forward and both backward matmuls of one decoder layer's projections at the micro-batch's token
    count (x 30 layers), the LM head at its trained-token count, and causal SDPA forward + backward for every
    document of the timed steps (x 30 layers). Elementwise work, casts, the optimizer and Python are left out, so
    no trainer can beat this number on this machine with these kernels.
    """
    import torch
    import torch.nn.functional as F

    from transformers import AutoConfig

    from findap.models import resolve_model
    from findap.train.config import TrainConfig
    from findap.train.loop import micro_batches, plan_steps

    def clock(fn, reps=2):
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps

    def linear_time(m, k, n):  # y = x W^T, dx = dy W, dW = dy^T x, bf16
        x, w, dy = (torch.randn(a, b, dtype=torch.bfloat16) for a, b in ((m, k), (n, k), (m, n)))
        return clock(lambda: (x @ w.t(), dy @ w, dy.t() @ x))

    tok, docs = documents(SEQ)
    cfg = TrainConfig(seq_len=SEQ, micro_batch_tokens=2 * SEQ, tokens_per_step=2 * SEQ)
    plan = plan_steps(docs, cfg, seed=0)
    c = AutoConfig.from_pretrained(resolve_model(MODEL))  # the shapes only: no weights needed
    d, f, hd, heads = c.hidden_size, c.intermediate_size, c.hidden_size // c.num_attention_heads, c.num_attention_heads
    kv = c.num_key_value_heads * hd
    attention_cache: dict[int, float] = {}

    def attention_time(n):
        if n not in attention_cache:
            q, k, v = (torch.randn(1, heads, n, hd, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
            attention_cache[n] = clock(
                lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward(), reps=1)
        return attention_cache[n]

    tokens, mm_s, attn_s = 0, 0.0, 0.0
    for i in range(1, steps + 1):
        for b in micro_batches(plan[i], cfg, "varlen", tok.pad_token_id):
            m = int(b["n_real"])
            trained = int((b["labels"][:, 1:] != -100).sum())
            layer = sum(linear_time(m, k, n) for k, n in ((d, d), (d, kv), (d, kv), (d, d), (d, f), (d, f), (f, d)))
            mm_s += c.num_hidden_layers * layer + linear_time(trained, d, c.vocab_size)
            attn_s += c.num_hidden_layers * sum(attention_time(n) for lens in b["doc_lens"] for n in lens)
            tokens += m
    return {"tokens": tokens, "wall_s": round(mm_s + attn_s, 2), "tok_per_s": round(tokens / (mm_s + attn_s), 1),
            "matmul_s": round(mm_s, 2), "attention_s": round(attn_s, 2), "packing": float("nan"), "steps": steps}


def calibrate(steps: int) -> None:
    """Measured peak RSS (VmHWM of a fresh process) vs findap.training.memory's estimate."""
    print(f"{'micro-batch':>11s} {'checkpointing':>13s} {'baseline MB':>11s} {'estimate MB':>11s} {'peak MB':>8s} "
          f"{'est/peak':>8s} {'tok/s':>7s}")
    for mode, sizes in (("full", (2048, 4096)), ("ckpt", (2048, 4096, 8192))):  # 8192 without: more than 2 cores' RAM
        for tokens in sizes:
            r = run_worker(f"calibrate-{tokens}-{mode}", steps)
            print(f"{tokens:11d} {mode == 'ckpt'!s:>13s} {r['baseline_mb']:11d} {r['estimate_mb']:11d} "
                  f"{r['peak_mb']:8.0f} {r['estimate_mb'] / r['peak_mb']:8.2f} {r['tok_per_s']:7.1f}", flush=True)


def blocked_causal_attention(q, k, v, block: int = 256):
    """The alternative to SDPA measured by `worker_attention`: causal attention of one document from bf16 batched
    matmuls over query blocks, each block against only the keys at or before it (no masked block beyond the
    diagonal is computed), grouped-query heads folded into the query rows (no repeated key/value heads), softmax in
    fp32, and a flash-style backward that recomputes each block's probabilities from the saved log-sum-exp (memory
    O(length), like SDPA). q (1, heads, n, hd), k/v (1, kv_heads, n, hd)."""
    import torch

    class Blocked(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v):
            g, rep, n, hd = q.shape
            scale = hd ** -0.5
            out, lse = torch.empty_like(q), torch.empty(g, rep, n)
            for s in range(0, n, block):
                e = min(s + block, n)
                p, l = Blocked.probs(q[:, :, s:e], k[:, :e], None, s, scale)
                lse[:, :, s:e] = l
                out[:, :, s:e] = torch.bmm(p.to(v.dtype).flatten(1, 2), v[:, :e]).view(g, rep, e - s, hd)
            ctx.save_for_backward(q, k, v, out, lse)
            return out

        @staticmethod
        def probs(qb, k, lse, s, scale):
            g, rep, m, hd = qb.shape
            scores = torch.bmm(qb.reshape(g, rep * m, hd), k.transpose(1, 2)).float().mul_(scale)
            scores = scores.view(g, rep, m, k.shape[1])
            scores[..., s:].masked_fill_(torch.ones(m, m, dtype=torch.bool).triu_(1), float("-inf"))
            lse = torch.logsumexp(scores, -1) if lse is None else lse
            return scores.sub_(lse[..., None]).exp_(), lse

        @staticmethod
        def backward(ctx, dout):
            q, k, v, out, lse = ctx.saved_tensors
            g, rep, n, hd = q.shape
            scale = hd ** -0.5
            dq, dk, dv = torch.empty_like(q), torch.zeros(k.shape), torch.zeros(v.shape)
            delta = (dout.float() * out.float()).sum(-1)
            for s in range(0, n, block):
                e = min(s + block, n)
                p, _ = Blocked.probs(q[:, :, s:e], k[:, :e], lse[:, :, s:e], s, scale)
                do = dout[:, :, s:e].reshape(g, rep * (e - s), hd)
                dv[:, :e] += torch.bmm(p.to(q.dtype).flatten(1, 2).transpose(1, 2), do).float()
                dp = torch.bmm(do, v[:, :e].transpose(1, 2)).float().view(p.shape)
                ds = p.mul_(dp.sub_(delta[:, :, s:e, None])).mul_(scale).to(q.dtype).flatten(1, 2)
                dq[:, :, s:e] = torch.bmm(ds, k[:, :e]).view(g, rep, e - s, hd)
                dk[:, :e] += torch.bmm(ds.transpose(1, 2), q[:, :, s:e].reshape(g, rep * (e - s), hd)).float()
            return dq, dk.to(k.dtype), dv.to(v.dtype)

    heads, kv_heads = q.shape[1], k.shape[1]
    grouped = q.view(kv_heads, heads // kv_heads, q.shape[2], q.shape[3])
    return Blocked.apply(grouped, k[0], v[0]).view(q.shape)


def worker_attention(steps: int) -> dict:
    """Causal attention of every document of the timed steps, forward + backward, x 30 layers, bf16: the trainer's
    per-document SDPA (key/value heads repeated, as findap.train.attention does) against the blocked-matmul
    alternative above; plus the largest difference of outputs and input gradients in fp32 on a 1,024-token
    document (the equality a replacement would need)."""
    import torch
    import torch.nn.functional as F

    from transformers import AutoConfig

    from findap.models import resolve_model
    from findap.train.config import TrainConfig
    from findap.train.loop import micro_batches, plan_steps

    c = AutoConfig.from_pretrained(resolve_model(MODEL))
    heads, kv_heads, hd = c.num_attention_heads, c.num_key_value_heads, c.hidden_size // c.num_attention_heads

    def sdpa(q, k, v):
        rep = heads // kv_heads
        return F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1),
                                              is_causal=True)

    def inputs(n, dtype):
        torch.manual_seed(n)
        return [torch.randn(1, h, n, hd, dtype=dtype, requires_grad=True) for h in (heads, kv_heads, kv_heads)]

    def fwd_bwd(fn, n, cache={}):
        if (fn, n) not in cache:
            x = inputs(n, torch.bfloat16)
            run = lambda: fn(*x).sum().backward()  # noqa: E731
            run()
            t0 = time.perf_counter()
            run()
            cache[fn, n] = time.perf_counter() - t0
        return cache[fn, n]

    x = inputs(1024, torch.float32)
    ref, mine = sdpa(*x), blocked_causal_attention(*x)
    grads = [torch.autograd.grad(o.sum(), x) for o in (ref, mine)]
    diff = max([float((ref - mine).detach().abs().max())] + [float((a - b).abs().max()) for a, b in zip(*grads)])
    tok, docs = documents(SEQ)
    cfg = TrainConfig(seq_len=SEQ, micro_batch_tokens=2 * SEQ, tokens_per_step=2 * SEQ)
    plan = plan_steps(docs, cfg, seed=0)
    lengths = [n for i in range(1, min(steps, 1) + 1)  # the first timed step: the kernels, not the data, differ
               for b in micro_batches(plan[i], cfg, "varlen", tok.pad_token_id) for n in b["doc_lens"][0]]
    sdpa_s = c.num_hidden_layers * sum(fwd_bwd(sdpa, n) for n in lengths)
    blocked_s = c.num_hidden_layers * sum(fwd_bwd(blocked_causal_attention, n) for n in lengths)
    tokens = sum(lengths)
    return {"tokens": tokens, "wall_s": round(sdpa_s, 2), "tok_per_s": round(tokens / sdpa_s, 1),
            "sdpa_s": round(sdpa_s, 2), "blocked_s": round(blocked_s, 2), "fp32_max_diff": diff,
            "packing": float("nan")}


# the host allocator an arm runs under: `<trainer>@<allocator>` (e.g. findap@jemalloc). "findap" alone is the
# trainer with what findap picks by itself (findap.allocator); the others force one choice, so one run of the bench
# compares them on this machine's CPU.
ALLOCATOR_ENV = {
    "glibc": {"FINDAP_ALLOCATOR": "glibc"},
    "jemalloc": {"FINDAP_ALLOCATOR": "jemalloc"},
    "tcmalloc": {"FINDAP_ALLOCATOR": "tcmalloc"},
    # jemalloc keeping dirty pages instead of purging them after its default dirty_decay_ms (a CPU step can outlast it)
    "jemalloc-keep": {"FINDAP_ALLOCATOR": "jemalloc", "MALLOC_CONF": "background_thread:true,dirty_decay_ms:-1,"
                      "muzzy_decay_ms:-1"},
}


def worker_env(allocator: str | None) -> dict:
    import os

    from findap.allocator import preload_env

    env = dict(os.environ)
    if allocator is None:
        return preload_env(env)  # what the findap entry point does
    env.update(ALLOCATOR_ENV[allocator])
    return preload_env(env)


def cpu_kind() -> str:
    """The CPU's model name and the flags that decide CPU training speed, for the table's heading."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    marks = [f"{name} {'yes' if flag in flags else 'no'}" for name, flag in
             (("AVX2", "avx2"), ("AVX512-BF16", "avx512_bf16"), ("AMX-BF16", "amx_bf16"))]
    import os

    return f"{model}, {os.cpu_count()} cores; {', '.join(marks)}"


def run_worker(name: str, steps: int) -> dict:
    trainer, _, allocator = name.partition("@")
    cmd = [sys.executable, __file__, "--worker", trainer, "--steps", str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=worker_env(allocator or None))
    if proc.returncode:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="timed optimizer steps per trainer (after one warm-up)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="*",
                    default=["findap", "findap@glibc", "findap-ckpt", "trl", "plain", "ceiling", "attention"],
                    help="trainers to run: findap (varlen, micro-batch 4096, no checkpointing), findap-ckpt (micro-"
                         "batch 2048, activation checkpointing, loss chunk 256: what train.memory picks under a "
                         "tight budget), findap-compile (each layer's MLP and RMSNorms through torch.compile), "
                         "findap-sdpa (4-D mask), trl (SFTConfig's defaults: gradient checkpointing "
                         "on), trl-nockpt (TRL without "
                         "checkpointing: its fastest), plain, ceiling (this machine's matmul + attention bound), "
                         "attention (per-document SDPA vs the blocked-matmul alternative, first timed step)")
    ap.add_argument("--calibrate", action="store_true",
                    help="instead: peak RSS of findap's trainer at micro-batches of 2048 and 4096 tokens without and "
                         "2048, 4096 and 8192 tokens with activation checkpointing, each in a fresh process, against its estimate")
    ap.add_argument("--allow-emulated-bf16", action="store_true",
                    help="run even on a CPU without AVX512-BF16 or AMX, where every trainer's bf16 matmuls are emulated")
    args = ap.parse_args()
    from findap.models import cpu_has_fast_bf16

    if not args.worker and not args.allow_emulated_bf16 and not cpu_has_fast_bf16():
        # Every trainer here runs bf16 autocast, as findap does where bf16 is fast. On an AVX2-only CPU torch emulates
        # bf16 (docs/results.md, "Precision on the CPU"), so the ratios would compare emulation overheads.
        ap.exit(2, "bench/train_vs_trl.py: this CPU has no AVX512-BF16 or AMX, so bf16 matmuls are emulated (far "
                   "slower than fp32: docs/results.md, Precision on the CPU) and the bench would time emulation, not "
                   "the trainers; findap itself trains in fp32 here (precision: auto). Pass --allow-emulated-bf16 to "
                   "run it anyway.\n")
    if args.calibrate:
        calibrate(args.steps)
        return
    if args.worker:
        fn = {"findap": lambda s: worker_findap(s, "varlen"), "findap-sdpa": lambda s: worker_findap(s, "sdpa"),
              "findap-ckpt": lambda s: worker_findap(s, "varlen", 1 * SEQ, True, 256),
              "findap-compile": lambda s: worker_findap(s, "varlen", compile_elementwise=True),
              "trl": worker_trl, "trl-nockpt": lambda s: worker_trl(s, False),
              "plain": worker_plain,
              "ceiling": worker_ceiling, "attention": worker_attention}.get(args.worker)
        if fn is None and args.worker.startswith("calibrate-"):  # calibrate-<micro tokens>-<ckpt|full>
            _, tokens, mode = args.worker.split("-")
            fn = lambda s: worker_findap(s, "varlen", int(tokens), mode == "ckpt")  # noqa: E731
        result = fn(args.steps)
        from findap.allocator import active

        result["allocator"] = active()
        result["peak_mb"] = round(peak_mb())
        print(json.dumps(result))
        return
    print(f"CPU: {cpu_kind()}", flush=True)
    results = {}
    for name in args.only:
        results[name] = run_worker(name, args.steps)
        print(f"{name:12s} {json.dumps(results[name])}", flush=True)
    attention = results.pop("attention", None)
    trl = results.get("trl")
    print(f"\n{'trainer':12s} {'tok/s':>8s} {'packing':>8s} {'peak MB':>8s} {'vs trl':>7s} {'peak/trl':>8s} "
          f"{'vs plain':>8s}")
    for name, r in results.items():
        vs_trl = r["tok_per_s"] / trl["tok_per_s"] if trl else float("nan")
        peak_vs_trl = r["peak_mb"] / trl["peak_mb"] if trl else float("nan")
        vs_plain = r["tok_per_s"] / results["plain"]["tok_per_s"] if "plain" in results else float("nan")
        print(f"{name:12s} {r['tok_per_s']:8.1f} {r['packing']:8.2%} {r['peak_mb']:8.0f} {vs_trl:7.2f} "
              f"{peak_vs_trl:8.2f} {vs_plain:8.2f}")
    if attention:
        print(f"\nattention of the first timed step's documents, forward + backward x 30 layers, bf16: per-document "
              f"SDPA {attention['sdpa_s']} s, blocked matmuls {attention['blocked_s']} s "
              f"({attention['blocked_s'] / attention['sdpa_s']:.2f}x); fp32 max difference "
              f"{attention['fp32_max_diff']:.1e}")
    for name, r in results.items():
        if "breakdown" in r:
            print_breakdown(name, r, results.get("ceiling"))
    if "ceiling" in results and "findap" in results:
        c = results["ceiling"]
        print(f"\nceiling: {c['matmul_s']} s of bf16 matmuls + {c['attention_s']} s of SDPA attention for the timed "
              f"tokens; findap reaches {results['findap']['tok_per_s'] / c['tok_per_s']:.0%} of it")


if __name__ == "__main__":
    main()
