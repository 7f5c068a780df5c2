"""Generation speed: findap's HFEngine vs transformers' own `generate`, same model, prompts and batches, fp32 greedy.

The prompts are a FinEval task's (default FPB, its dev split) rendered exactly as `findap eval` renders them
(chat template, the task's instructions). Both sides decode the same length-sorted batches greedily in fp32:
findap right-pads and masks only the decoding steps (findap.engines.decoding), transformers left-pads as its docs
say to. Outputs are compared token for token (fp32: they should agree; a difference in the last places of a logit
can flip a near-tie, so the count of identical outputs is printed rather than asserted), and throughput is
generated tokens per second of wall and of CPU time, both arms alternating in one process after a warm-up.

    PYTHONPATH=src .venv/bin/python bench/generate_vs_transformers.py --items 64 --max-new-tokens 32
    PYTHONPATH=src .venv/bin/python bench/generate_vs_transformers.py --mode cot --items 32 --max-new-tokens 128
"""
from __future__ import annotations

import argparse
import os

import torch

from eval_mc_vs_lmeval import Stopwatch  # this folder is on sys.path when a bench script runs


def task_prompts(task_name: str, n: int, mode: str = "direct") -> list[list[dict]]:
    from findap.eval.registry import get_task

    task = get_task(task_name)
    return [task.messages(doc, mode, "dev") for doc in task.docs("dev", limit=n)]


def findap_outputs(engine, prompts, max_new_tokens: int) -> list[list[int]]:
    from findap.engines import GenerationRequest

    requests = [GenerationRequest(p, max_new_tokens=max_new_tokens) for p in prompts]
    return [ids for _, ids in engine.generate_with_tokens(requests, progress=False)]


def transformers_outputs(engine, prompts, max_new_tokens: int) -> list[list[int]]:
    """`model.generate` over the same batches findap forms (length-sorted, same batch size), left-padded."""
    from findap.engines.text import render_prompt
    from findap.engines.token_budget import length_sorted_batches

    tok, model = engine.tokenizer, engine.model
    ids = [engine._prompt_ids(render_prompt(tok, p), max_new_tokens) for p in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    final = [len(i) + max_new_tokens for i in ids]
    for batch in length_sorted_batches(final, engine.spec.batch_size, engine.spec.max_batch_tokens):
        width = max(len(ids[j]) for j in batch)
        input_ids = torch.tensor([[engine.pad_id] * (width - len(ids[j])) + ids[j] for j in batch])
        mask = torch.tensor([[0] * (width - len(ids[j])) + [1] * len(ids[j]) for j in batch])
        with torch.no_grad():
            gen = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=engine.pad_id, eos_token_id=sorted(engine.eos_ids))
        for row, j in enumerate(batch):
            new = gen[row, width:].tolist()
            out[j] = cut_at_eos(new, engine.eos_ids)
    return out


def cut_at_eos(ids: list[int], eos: set[int]) -> list[int]:
    for k, t in enumerate(ids):
        if t in eos:
            return ids[:k]
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="fpb")
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--mode", choices=["direct", "cot"], default="direct",
                        help="the task's prompt form: direct (short answers: prefill-bound) or cot (long replies)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per arm, alternating")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice). On a shared machine use 1: with 2 threads "
                             "and a busy core every small matmul waits a scheduler slice for its second thread")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from findap.engines import EngineSpec
    from findap.engines.hf import HFEngine

    engine = HFEngine(EngineSpec(model=args.model, batch_size=args.batch_size, precision="fp32"))
    prompts = task_prompts(args.task, args.items, args.mode)
    arms = {"findap": findap_outputs, "transformers": transformers_outputs}
    print(f"{args.task} dev ({args.mode}): {len(prompts)} prompts, greedy, max_new_tokens {args.max_new_tokens}, batch "
          f"{args.batch_size}, fp32, model {args.model}; {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}")
    for arm in arms.values():  # warm-up: first-call kernel selection, not timed
        arm(engine, prompts[:4], 4)
    timings = {name: [] for name in arms}
    outputs = {}
    for _ in range(args.rounds):
        for name, arm in arms.items():
            with Stopwatch() as clock:
                outputs[name] = arm(engine, prompts, args.max_new_tokens)
            timings[name].append(clock)
    tokens = {name: sum(len(o) for o in out) for name, out in outputs.items()}
    for name in arms:
        wall = min(c.wall for c in timings[name])
        cpu = min(c.cpu for c in timings[name])
        print(f"{name:>12}: {tokens[name]} tokens, best of {args.rounds}: {wall:.1f} s wall = "
              f"{tokens[name] / wall:.1f} tok/s, {cpu:.1f} CPU-s = {tokens[name] / cpu:.1f} tok/CPU-s")
    same = sum(a == b for a, b in zip(outputs["findap"], outputs["transformers"]))
    best = {name: min(c.wall for c in timings[name]) for name in arms}
    best_cpu = {name: min(c.cpu for c in timings[name]) for name in arms}
    print(f"identical outputs: {same} of {len(prompts)}")
    print(f"throughput ratio findap / transformers generate: "
          f"{(tokens['findap'] / best['findap']) / (tokens['transformers'] / best['transformers']):.2f}x wall, "
          f"{(tokens['findap'] / best_cpu['findap']) / (tokens['transformers'] / best_cpu['transformers']):.2f}x CPU")


if __name__ == "__main__":
    main()
