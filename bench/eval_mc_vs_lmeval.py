"""Multiple-choice scoring speed: findap's HFEngine vs lm-evaluation-harness, same model, same requests.

ARC-Easy (LLM-Adapters layout) from the shared data directory, the first N questions, prompt
"Question: {question}\nAnswer:" with every choice as a " {choice}" continuation. Each backend runs in its own
fresh subprocess (one after the other, never together) so load time, threads and peak RSS do not mix; only the
loglikelihood call is timed. Both accuracies (acc, and acc_norm = log-prob / characters of the choice) are printed,
with the throughput ratio. The machine is shared: rerun when numbers look odd.

    PYTHONPATH=src .venv/bin/python bench/eval_mc_vs_lmeval.py --questions 500
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FINDAP_DATA", REPO.parent / "shared" / "data"))
ARC = DATA / "general" / "ARC-Easy" / "test.json"
QUESTION = re.compile(r"question:\s*(.*?)\n\s*\nAnswer1:", re.S)
OPTION = re.compile(r"Answer(\d+):\s*(.*?)(?=\s*Answer\d+:|\s*$)", re.S)


def load_arc(path: Path, n: int) -> list[dict]:
    """Questions with their choices and the gold index, parsed from the options embedded in `instruction`."""
    rows = json.loads(path.read_text())[:n]
    questions = []
    for line, row in enumerate(rows):
        text = row["instruction"]
        q = QUESTION.search(text)
        options_block = text.split("\n\n")[1] if text.count("\n\n") >= 2 else ""
        options = OPTION.findall(options_block)
        if not q or not options:
            raise ValueError(f"{path}: item {line}: field 'instruction': cannot find the question and AnswerN options")
        gold = int(row["answer"].removeprefix("answer")) - 1
        questions.append({"question": q.group(1).strip(), "choices": [o.strip() for _, o in options], "gold": gold})
    return questions


def requests_of(questions: list[dict]) -> list[tuple[str, str]]:
    return [(f"Question: {q['question']}\nAnswer:", f" {c}") for q in questions for c in q["choices"]]


# ---------------------------------------------------------------------------------------------------- workers
class Stopwatch:
    """Wall time and this process's CPU time. On a shared machine CPU seconds are the steadier measure: wall time
    also counts the time other people's jobs held the cores."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_findap(model_dir: str, pairs, batch_size: int) -> list[float]:
    from findap.engines import EngineSpec, LoglikelihoodRequest, make_engine

    engine = make_engine(EngineSpec(model=model_dir, batch_size=batch_size, precision="bf16"))
    requests = [LoglikelihoodRequest(c, x) for c, x in pairs]
    engine.loglikelihood(requests[:8], progress=False)  # warm-up (first-call kernel setup), not timed
    with Stopwatch() as clock:
        results = engine.loglikelihood(requests, progress=False)
    return [r.logprob for r in results], clock


def run_lmeval(model_dir: str, pairs, batch_size: int) -> list[float]:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model_dir, dtype="bfloat16", batch_size=batch_size, device="cpu")
    make = lambda ps: [Instance("loglikelihood", {}, (c, x), i) for i, (c, x) in enumerate(ps)]
    lm.loglikelihood(make(pairs[:8]), disable_tqdm=True)  # same warm-up as ours
    with Stopwatch() as clock:
        results = lm.loglikelihood(make(pairs), disable_tqdm=True)
    return [lp for lp, _ in results], clock


def worker(backend: str, model_dir: str, questions: int, batch_size: int, threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)
    pairs = requests_of(load_arc(ARC, questions))
    run = run_findap if backend == "findap" else run_lmeval
    logprobs, clock = run(model_dir, pairs, batch_size)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is KiB on Linux
    print("RESULT " + json.dumps({"logprobs": logprobs, "seconds": clock.wall, "cpu_seconds": clock.cpu,
                                  "peak_rss_gb": peak_gb}))


# ------------------------------------------------------------------------------------------------------ parent
def accuracy(questions: list[dict], logprobs: list[float]) -> tuple[float, float]:
    acc = acc_norm = 0
    k = 0
    for q in questions:
        scores = logprobs[k : k + len(q["choices"])]
        k += len(q["choices"])
        norm = [s / len(c) for s, c in zip(scores, q["choices"])]
        acc += max(range(len(scores)), key=scores.__getitem__) == q["gold"]
        acc_norm += max(range(len(norm)), key=norm.__getitem__) == q["gold"]
    return acc / len(questions), acc_norm / len(questions)


def print_position_counts(model_dir: str, questions: list[dict], batch_size: int, measured: float) -> None:
    """The gap explained: how many token positions each backend runs through the decoder.

    lm-eval runs every (context, continuation) pair as its own row, padded to the longest of its length-sorted
    batch, and projects every position onto the vocabulary; findap runs each context once with all its choices
    after it and projects only the positions it reads. The same model runs a position at about the same speed
    in both, so the ratio of positions is about the speed-up a backend can reach on these requests without
    dropping work that changes the scores."""
    from findap.engines.scoring import plan_groups
    from findap.engines.text import encode_pair
    from findap.models import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    pairs = [encode_pair(tokenizer, c, x) for c, x in requests_of(questions)]
    rows = sorted((len(c) + len(x) - 1 for c, x in pairs), reverse=True)
    lmeval_positions = sum(max(rows[i:i + batch_size]) * len(rows[i:i + batch_size])
                           for i in range(0, len(rows), batch_size))
    findap_positions = sum(g.length for g in plan_groups(pairs, max_length=2048))
    read = sum(len(x) for _, x in pairs)
    print(f"decoder positions: lm-eval {lmeval_positions:,} (one padded row per request, all projected onto the "
          f"vocabulary), findap {findap_positions:,} (one row per question, {read:,} projected): "
          f"{lmeval_positions / findap_positions:.2f}x fewer; measured {measured:.2f}x")


def plain_model_dir(model_dir: str) -> str:
    """The model directory without a leftover GGUF `quantization_config` in config.json.

    The embedded model's converted config still names the GGUF it came from; findap's loader ignores that, but
    lm-eval passes `gguf_file=None` and transformers then refuses the directory. A sibling directory of links
    with a cleaned config serves both backends the very same weights.
    """
    config = json.loads((Path(model_dir) / "config.json").read_text())
    if "quantization_config" not in config:
        return model_dir
    config.pop("quantization_config")
    clean = Path(tempfile.mkdtemp(prefix="findap-bench-model-"))
    for f in Path(model_dir).iterdir():
        if f.name != "config.json":
            (clean / f.name).symlink_to(f.resolve())
    (clean / "config.json").write_text(json.dumps(config, indent=2))
    return str(clean)


def run_worker(backend: str, model_dir: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", backend, "--model-dir", model_dir,
           "--questions", str(args.questions), "--batch-size", str(args.batch_size)]
    cmd += ["--threads", str(args.threads)] if args.threads else []
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"{backend} worker failed:\n{out.stderr[-4000:]}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=500, help="first N ARC-Easy questions")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for both backends (default: torch's choice). On a busy shared machine "
                             "--threads 1 avoids OpenMP workers waiting on each other and gives steadier numbers")
    parser.add_argument("--worker", choices=["findap", "lmeval"], help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.model_dir, args.questions, args.batch_size, args.threads)

    from findap.models import resolve_model

    model_dir = plain_model_dir(resolve_model(args.model))
    questions = load_arc(ARC, args.questions)
    n_requests = sum(len(q["choices"]) for q in questions)
    print(f"ARC-Easy: {len(questions)} questions, {n_requests} requests; model {model_dir}; batch {args.batch_size}; "
          f"bf16; {os.cpu_count()} CPUs, torch threads {args.threads or 'default'} (shared machine: timings are noisy)")
    try:
        results = {name: run_worker(name, model_dir, args) for name in ("lmeval", "findap")}
    finally:
        if Path(model_dir).name.startswith("findap-bench-model-"):
            shutil.rmtree(model_dir, ignore_errors=True)  # only links and a config: the weights stay
    for name, r in results.items():
        acc, acc_norm = accuracy(questions, r["logprobs"])
        r |= {"acc": acc, "acc_norm": acc_norm, "rps": n_requests / r["seconds"],
              "rpcs": n_requests / r["cpu_seconds"]}
        print(f"{name:>7}: acc {acc:.3f}  acc_norm {acc_norm:.3f}  {r['seconds']:.1f} s wall = {r['rps']:.1f} req/s  "
              f"{r['cpu_seconds']:.1f} CPU-s = {r['rpcs']:.1f} req/CPU-s  peak RSS {r['peak_rss_gb']:.2f} GB")
    ours, peer = results["findap"], results["lmeval"]
    print_position_counts(model_dir, questions, args.batch_size, ours["rps"] / peer["rps"])
    max_diff = max(abs(a - b) for a, b in zip(ours["logprobs"], peer["logprobs"]))
    print(f"throughput ratio findap / lm-eval: {ours['rps'] / peer['rps']:.2f}x wall, "
          f"{ours['rpcs'] / peer['rpcs']:.2f}x CPU time   max |logprob difference|: {max_diff:.3f} (bf16 noise)")
    for metric in ("acc", "acc_norm"):
        gap = abs(ours[metric] - peer[metric]) * 100
        print(f"{metric} gap: {gap:.2f} points ({'OK' if gap <= 0.5 else 'ABOVE 0.5 POINT'})")


if __name__ == "__main__":
    main()
