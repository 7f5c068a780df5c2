"""Training throughput: findap's stage-1 trainer vs TRL SFTTrainer vs a plain padded Hugging Face loop.

Same model (SmolLM2-135M-Instruct, fp32 master weights, bf16 autocast), same documents (FPB + GSM8K conversations
with assistant-only labels, ECTSum transcripts as CPT text), sequence 2048. Each trainer runs in its own process
(so peak RSS is its own), does one warm-up step, then times `--steps` optimizer steps. Reports real (non-padding)
tokens per second, packing efficiency, peak memory and the ratios.

    PYTHONPATH=src .venv/bin/python bench/train_vs_trl.py --steps 4

TRL runs with its fastest correct CPU settings: bfd packing + padding_free (position_ids isolate documents),
bf16, batch 2 x 2048; `trl-malloc` is the same run with findap's allocator setting (findap.host_memory), so the
ratio shows what is the trainer and what is malloc. The plain loop pads batches of 4 documents cut at 512 tokens
and uses model(labels=...). `ceiling` times only the bf16 matmuls and SDPA attention of the same timed steps, each
in isolation: the most any trainer could reach on this machine with these kernels.
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

MODEL = "smollm2-135m-instruct"
SEQ = 2048


def documents(seq_len: int):
    from findap.models import load_tokenizer
    from findap.train.sample_data import ectsum_texts, fpb_conversations, gsm8k_conversations
    from findap.train.tokenize import tokenize_examples

    tok = load_tokenizer(MODEL)
    examples = fpb_conversations(600) + gsm8k_conversations(600) + ectsum_texts(60)
    return tok, tokenize_examples(examples, tok, seq_len)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(step_fn, steps: int) -> dict:
    step_fn(0)  # warm-up (allocations, first-call overheads)
    tokens, t0 = 0, time.perf_counter()
    for i in range(1, steps + 1):
        tokens += step_fn(i)
    wall = time.perf_counter() - t0
    return {"tokens": tokens, "wall_s": round(wall, 2), "tok_per_s": round(tokens / wall, 1)}


def worker_findap(steps: int, backend: str) -> dict:
    import torch

    from findap.models import load_model
    from findap.train.attention import hf_implementation
    from findap.train.config import TrainConfig
    from findap.train.loop import micro_batches, plan_steps, train_step
    from findap.train.optim import build_optimizer
    from findap.train.packing import packing_efficiency

    tok, docs = documents(SEQ)
    cfg = TrainConfig(seq_len=SEQ, micro_batch_tokens=2 * SEQ, tokens_per_step=2 * SEQ)
    plan = plan_steps(docs, cfg, seed=0)
    model = load_model(MODEL, device="cpu", attn_implementation=hf_implementation(backend)).train()
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
    return out


def worker_trl(steps: int) -> dict:
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
                     disable_tqdm=True)
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
            "matmul_s": round(mm_s, 2), "attention_s": round(attn_s, 2), "packing": float("nan")}


def run_worker(name: str, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--steps", str(steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="timed optimizer steps per trainer (after one warm-up)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--only", nargs="*", default=["findap", "trl", "trl-malloc", "plain", "ceiling"],
                    help="trainers to run: findap (varlen), findap-sdpa (4-D mask), trl, trl-malloc (TRL with "
                         "findap's allocator setting), plain, ceiling (this machine's matmul + attention bound)")
    args = ap.parse_args()
    if args.worker:
        from findap.host_memory import keep_freed_memory

        fn = {"findap": lambda s: worker_findap(s, "varlen"), "findap-sdpa": lambda s: worker_findap(s, "sdpa"),
              "trl": worker_trl, "trl-malloc": worker_trl, "plain": worker_plain,
              "ceiling": worker_ceiling}[args.worker]
        # findap's allocator setting, as findap.train.stage.train_model applies it on CPU; trl-malloc gives TRL the
        # same, so the ratio is not about malloc
        with keep_freed_memory(enabled=args.worker in ("findap", "findap-sdpa", "trl-malloc")):
            result = fn(args.steps)
        result["peak_mb"] = round(peak_mb())
        print(json.dumps(result))
        return
    results = {}
    for name in args.only:
        results[name] = run_worker(name, args.steps)
        print(f"{name:12s} {json.dumps(results[name])}", flush=True)
    print(f"\n{'trainer':12s} {'tok/s':>8s} {'packing':>8s} {'peak MB':>8s} {'vs trl':>7s} {'vs plain':>8s}")
    for name, r in results.items():
        vs_trl = r["tok_per_s"] / results["trl"]["tok_per_s"] if "trl" in results else float("nan")
        vs_plain = r["tok_per_s"] / results["plain"]["tok_per_s"] if "plain" in results else float("nan")
        print(f"{name:12s} {r['tok_per_s']:8.1f} {r['packing']:8.2%} {r['peak_mb']:8.0f} {vs_trl:7.2f} {vs_plain:8.2f}")
    if "ceiling" in results and "findap" in results:
        c = results["ceiling"]
        print(f"\nceiling: {c['matmul_s']} s of bf16 matmuls + {c['attention_s']} s of SDPA attention for the timed "
              f"tokens; findap reaches {results['findap']['tok_per_s'] / c['tok_per_s']:.0%} of it")


if __name__ == "__main__":
    main()
