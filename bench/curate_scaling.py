"""Curation scaling: synthetic corpora of 10K, 100K and 1M documents, docs/s and peak RSS for each.

    .venv/bin/python bench/curate_scaling.py                      # 10K, 100K, 1M
    .venv/bin/python bench/curate_scaling.py --sizes 10000 100000 # smaller

Each size runs in a fresh subprocess (its VmHWM is the curation's peak resident memory, not an earlier run's).
The corpus is generated on the fly by a converter registered for the run (nothing held or written up front):
four sources (finance / general CPT text of 40-900 words, log-normal, and finance / general instruction pairs),
with planted exact duplicates (~3%, re-cased and re-spaced copies of earlier documents), near duplicates (~3%,
a few words changed) and contaminated documents (~0.5%, containing an evaluation item).
The whole pipeline runs: conversion to shards, min-length, exact + MinHash dedup, decontamination against 500
evaluation items, the judge, token counts with the real SmolLM2 tokenizer, the mixtures and the parquet outputs.
The judge is NOT a language model here: a deterministic keyword scorer (findap.curate.scorers.KeywordJudge)
labels a 512-document sample, and the classifier is off (MiniLM embeddings of a million texts on 2 CPU cores
take hours); everything else is what a recipe runs.
Pass criteria (issue 14): peak RSS within 1.5x from the smallest to the largest size, docs/s not falling.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FINANCE = ("revenue earnings margin dividend equity debt interest inflation guidance quarter profit loss cash bond "
           "stock shares market capital asset liability portfolio risk yield growth fiscal ebitda valuation").split()
COMMON = ("the of and to in a is that for it as was with be by on not he this are or his from at which but have an "
          "they you were her she there been one all we their has would when if so no will more can about said some "
          "people what could them into only new other time then now like two over just its also after first well "
          "year work because way even any these most us day give many through those very where much before right "
          "long great old state high small large under never city world place each point house between own life "
          "water report company team plan result system program question during government number part").split()
EVAL_ITEMS = 500


def word_pool(domain: str) -> list[str]:
    syllables = ["ka", "lo", "mi", "ten", "sor", "va", "qui", "del", "ran", "pex", "tor", "ul"]
    invented = [a + b + c for a in syllables for b in syllables for c in syllables[:6]]
    return COMMON * 3 + invented + (FINANCE * 6 if domain == "finance" else [])


def document(seed: int, index: int, words: list[str]) -> str:
    rng = random.Random(seed * 1_000_003 + index)
    n = min(900, max(40, int(rng.lognormvariate(5.0, 0.6))))
    out = rng.choices(words, k=n)
    for cut in range(12, n, rng.randint(10, 25)):
        out[cut] += "."
    return " ".join(out)


def eval_item(index: int) -> str:
    rng = random.Random(-1 - index)
    return " ".join(rng.choices(COMMON + FINANCE, k=30)) + "?"


def synthetic(path: Path, ctx):
    """Converter: the spec file names the source's kind, domain, size and seed; documents are made per index."""
    spec = json.loads(Path(path).read_text())
    words = word_pool(spec["domain"])
    seed, n = spec["seed"], spec["n"]
    for i in range(n):
        rng = random.Random(seed * 7 + i)
        draw = rng.random()
        if draw < 0.03 and i > 10:  # exact duplicate of an earlier document: re-cased, re-spaced
            text = "  " + document(seed, rng.randrange(i), words).upper().replace(" ", "  ")
        elif draw < 0.06 and i > 10:  # near duplicate: a few words changed
            tokens = document(seed, rng.randrange(i), words).split()
            for _ in range(max(1, len(tokens) // 60)):
                tokens[rng.randrange(len(tokens))] = rng.choice(words)
            text = " ".join(tokens)
        elif draw < 0.065:  # contaminated: an evaluation item inside
            text = document(seed, i, words) + " " + eval_item(rng.randrange(EVAL_ITEMS)) + " " + document(seed, -i, words)
        else:
            text = document(seed, i, words)
        if spec["kind"] == "cpt":
            yield ctx.cpt(str(i), text)
        else:
            question, _, answer = text.partition(". ")
            yield ctx.it(str(i), "Explain the following: " + question, answer or "It depends.")


def run_one(n: int, work: Path, tokenizer_dir: str, workers: int, tasks: int) -> dict:
    """Runs in the child process: curate an n-document corpus, report wall time and VmHWM."""
    from findap.curate.config import CurateConfig
    from findap.curate.curation import curate
    from findap.curate.scorers import KeywordJudge
    from findap.curate.sources import Converter, register_converter

    register_converter("synthetic_text", Converter(synthetic, None, "cpt", "finance", "concept"))
    register_converter("synthetic_chat", Converter(synthetic, None, "it", "finance", "task"))
    shares = {"fin_text": ("cpt", "finance", 0.35), "gen_text": ("cpt", "general", 0.35),
              "fin_chat": ("it", "finance", 0.1), "gen_chat": ("it", "general", 0.2)}
    sources = []
    for seed, (name, (kind, domain, share)) in enumerate(shares.items(), start=1):
        spec = work / f"{name}.json"
        spec.write_text(json.dumps({"kind": kind, "domain": domain, "n": int(n * share), "seed": seed}))
        sources.append({"name": name, "converter": f"synthetic_{'text' if kind == 'cpt' else 'chat'}",
                        "path": str(spec), "domain": domain})
    cfg = CurateConfig.model_validate({
        "sources": sources, "groups": [{"name": "group1", "sources": list(shares)}],
        "judge": {"sample_size": 512, "threshold": 1}, "classifier": {"enabled": False},
        "workers": workers, "tasks": tasks, "plot": False})
    eval_texts = {"synthetic_eval": [eval_item(i) for i in range(EVAL_ITEMS)]}
    start = time.time()
    manifest = curate(cfg, work / "out", model=tokenizer_dir, seed=0, make_judge=KeywordJudge,
                      eval_texts=eval_texts, progress=False)
    wall = time.time() - start
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
    import resource

    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    filters = manifest["filters"]
    return {"docs": manifest["input_docs"], "wall_s": round(wall, 1), "docs_per_s": round(manifest["input_docs"] / wall),
            "peak_rss_gb": round(hwm_kb / 1e6, 3), "worker_peak_rss_gb": round(child_kb / 1e6, 3),
            "exact_dupes": filters["dedup"]["exact_total"], "near_dupes": filters["dedup"]["near_total"],
            "contaminated": sum(sum(v.values()) for v in filters["decontam"]["removed"].values()),
            "chosen": manifest["groups"]["group1"]["all"]["docs"], "block_s": manifest["block_s"],
            "block_memory_gb": manifest["block_memory_gb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workers", type=int, default=1, help="curate.workers (1: one process, all in VmHWM)")
    parser.add_argument("--tasks", type=int, default=1, help="curate.tasks")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer", help="model dir whose tokenizer counts tokens (default: a tiny Llama with "
                        "the real SmolLM2 tokenizer, saved to a temp dir)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, Path(args.work), args.tokenizer, args.workers, args.tasks)))
        return
    with tempfile.TemporaryDirectory(prefix="curate_scaling_") as tmp:
        tokenizer = args.tokenizer
        if tokenizer is None:
            from findap.models import save_tiny_llama

            tokenizer = str(save_tiny_llama(Path(tmp) / "tiny", seed=0))
        rows = []
        for n in args.sizes:
            work = Path(tmp) / f"n{n}"
            work.mkdir()
            cmd = [sys.executable, __file__, "--child", str(n), "--work", str(work), "--tokenizer", tokenizer,
                   "--workers", str(args.workers), "--tasks", str(args.tasks)]
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            if done.returncode != 0:
                sys.exit(f"size {n} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{'docs':>9} {'wall s':>8} {'docs/s':>7} {'peak RSS GB':>11} {'exact':>6} {'near':>6} {'contam':>6} "
          f"{'chosen':>7}")
    for r in rows:
        print(f"{r['docs']:>9} {r['wall_s']:>8} {r['docs_per_s']:>7} {r['peak_rss_gb']:>11} {r['exact_dupes']:>6} "
              f"{r['near_dupes']:>6} {r['contaminated']:>6} {r['chosen']:>7}")
    ratio = rows[-1]["peak_rss_gb"] / rows[0]["peak_rss_gb"]
    speed = rows[-1]["docs_per_s"] / rows[0]["docs_per_s"]
    print(f"\npeak RSS {rows[-1]['docs']} / {rows[0]['docs']} docs: {ratio:.2f}x (must be <= 1.5x); "
          f"docs/s ratio {speed:.2f} (must not fall)")


if __name__ == "__main__":
    main()
