"""Alignment step throughput: findap's DPO+NLL loop vs TRL's DPOTrainer, same pairs, same model, same loss.

    PYTHONPATH=src python bench/align_vs_trl.py --pairs 32 --batch 8

Both sides train SmolLM2-135M-Instruct for one epoch over the same preference pairs (demo finance exercises:
chosen = the worked solution, rejected = the same solution with one wrong step), with the same loss
(sigmoid DPO, beta 0.1, + 1.0 x NLL on the chosen response; TRL: loss_type=["sigmoid", "sft"]), reference
log-probs precomputed by both, bf16 autocast where the CPU has it, fp32 master weights, AdamW, no gradient
checkpointing (TRL's default turns it on, which would only slow TRL down), and about the same number of
optimizer steps. Each side runs in its own subprocess so peak RSS is its own.

tokens/s counts the same useful tokens on both sides: for every pair, prompt+chosen and prompt+rejected, no
padding, divided by the wall time of the training epoch (reference pass and model loading excluded).
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time


def make_pairs(n: int) -> list[dict]:
    from findap.demo.exercises import corrupt_solution, generate_exercises
    from findap.distill.prompts import ReasoningItem
    from findap.distill.trajectories import policy_messages

    rng = random.Random(0)
    pairs = []
    for ex in generate_exercises(n, seed=11):
        wrong = corrupt_solution(ex, rng)
        item = ReasoningItem(ex["id"], ex["question"], str(ex["answer"]), "number", "exercises")
        pairs.append({"id": ex["id"], "prompt": policy_messages(item), "chosen": ex["solution"],
                      "rejected": wrong["solution"]})
    return pairs


def useful_tokens(tokenizer, pairs: list[dict]) -> int:
    from findap.align.encode import tokenize_pair

    return sum(t.n_tokens_separate for t in (tokenize_pair(tokenizer, p, 2048) for p in pairs))


def load_plain_model():
    """The embedded model with the cached conversion's stale GGUF marker cleared (else Trainer refuses it)."""
    from findap.align.stage import drop_stale_gguf_marker
    from findap.models import EMBEDDED_MODEL, load_model

    return drop_stale_gguf_marker(load_model(EMBEDDED_MODEL, device="cpu"))


def run_ours(pairs: list[dict], batch: int, steps_hint: int) -> dict:
    from findap.align.config import AlignConfig
    from findap.align.encode import tokenize_pair
    from findap.align.loop import train
    from findap.align.reference import reference_logprobs
    from findap.models import EMBEDDED_MODEL, load_tokenizer

    tok = load_tokenizer(EMBEDDED_MODEL)
    model = load_plain_model()
    encoded = [tokenize_pair(tok, p, 2048) for p in pairs]
    shared = sum(t.n_tokens_shared for t in encoded)
    per_step = -(-shared // steps_hint)  # same number of optimizer steps as TRL
    cfg = AlignConfig(beta=0.1, alpha=1.0, nll_norm="per_example", tokens_per_step=per_step, row_tokens=per_step,
                      eval_every=10**6, checkpoint_every=10**6, epochs=1.0)
    ref = reference_logprobs(model, encoded, row_tokens=cfg.row_tokens, progress=False)
    start = time.perf_counter()
    summary = train(model, encoded, [], ref, cfg, seed=0, progress=False)
    return {"train_s": time.perf_counter() - start, "steps": summary["steps"]}


def run_trl(pairs: list[dict], batch: int) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from findap.models import EMBEDDED_MODEL, cpu_has_fast_bf16, load_tokenizer

    tok = load_tokenizer(EMBEDDED_MODEL)
    model = load_plain_model()
    data = Dataset.from_list([{"prompt": p["prompt"], "chosen": [{"role": "assistant", "content": p["chosen"]}],
                               "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs])
    args = DPOConfig(output_dir="/tmp/findap-bench-trl", loss_type=["sigmoid", "sft"], loss_weights=[1.0, 1.0],
                     beta=0.1, learning_rate=5e-7, warmup_steps=0.1, per_device_train_batch_size=batch,
                     num_train_epochs=1, max_length=2048, precompute_ref_log_probs=True,
                     gradient_checkpointing=False, use_cpu=True, bf16=cpu_has_fast_bf16(), report_to=[],
                     save_strategy="no", logging_steps=10**6, disable_tqdm=True, dataloader_num_workers=0)

    class Clock(TrainerCallback):
        start = end = None

        def on_train_begin(self, *a, **k):  # after TRL's reference pass (done when building the dataloader)
            Clock.start = None

        def on_step_begin(self, *a, **k):
            Clock.start = Clock.start or time.perf_counter()

        def on_train_end(self, *a, **k):
            Clock.end = time.perf_counter()

    trainer = DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tok, callbacks=[Clock()])
    trainer.train()
    return {"train_s": Clock.end - Clock.start, "steps": trainer.state.global_step}


def child(impl: str, n: int, batch: int) -> None:
    pairs = make_pairs(n)
    steps = -(-n // batch)
    result = run_ours(pairs, batch, steps) if impl == "ours" else run_trl(pairs, batch)
    from findap.models import EMBEDDED_MODEL, load_tokenizer

    result["tokens"] = useful_tokens(load_tokenizer(EMBEDDED_MODEL), pairs)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8, help="pairs per optimizer step")
    ap.add_argument("--child", choices=["ours", "trl"])
    args = ap.parse_args()
    if args.child:
        child(args.child, args.pairs, args.batch)
        return
    results = {}
    for impl in ("trl", "ours"):
        out = subprocess.run([sys.executable, __file__, "--child", impl, "--pairs", str(args.pairs),
                              "--batch", str(args.batch)], capture_output=True, text=True)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{impl} failed:\n{out.stderr[-3000:]}")
        results[impl] = json.loads(line[7:])
        r = results[impl]
        r["tokens_per_s"] = r["tokens"] / r["train_s"]
        print(f"{impl:5s} steps={r['steps']:3d} train={r['train_s']:7.1f}s tokens/s={r['tokens_per_s']:8.1f} "
              f"peak_rss={r['peak_rss_mb']:7.0f} MB", flush=True)
    ratio = results["ours"]["tokens_per_s"] / results["trl"]["tokens_per_s"]
    mem = results["ours"]["peak_rss_mb"] / results["trl"]["peak_rss_mb"]
    print(f"speed ratio findap/TRL = {ratio:.2f}x (goal >= 1.3x); peak RSS ratio = {mem:.2f}")


if __name__ == "__main__":
    main()
