"""Which precision trains faster on this CPU: bf16 autocast or plain fp32, at SmolLM2-135M's matmul shapes.

findap's `precision: auto` picks bf16 autocast on a CPU with AVX512-BF16 or AMX and fp32 elsewhere
(findap.models.autocast_dtype). This bench checks that choice on the machine at hand: it times the forward and
backward matmuls of one decoder layer's projections (q, k, v, o, gate, up, down) and of one LM-head loss chunk, for
a 2,048-token micro-batch, in fp32 and in bf16, and prints GFLOP/s for each and the ratio bf16 / fp32.

    PYTHONPATH=src .venv/bin/python bench/cpu_precision.py --threads 2
"""
from __future__ import annotations

import argparse
import time

import torch

HIDDEN, INTERMEDIATE, KV, VOCAB = 576, 1536, 192, 49152  # SmolLM2-135M's config.json
LOSS_CHUNK = 256  # the real-data recipe's loss chunk (recipes/smollm2-fin.yaml's plan)


def shapes(tokens: int) -> list[tuple[int, int, int]]:
    """(rows, in, out) of every linear layer of one decoder layer, and one loss chunk of the LM head."""
    layer = [(tokens, HIDDEN, HIDDEN), (tokens, HIDDEN, KV), (tokens, HIDDEN, KV), (tokens, HIDDEN, HIDDEN),
             (tokens, HIDDEN, INTERMEDIATE), (tokens, HIDDEN, INTERMEDIATE), (tokens, INTERMEDIATE, HIDDEN)]
    return layer + [(LOSS_CHUNK, HIDDEN, VOCAB)]


def time_linears(dtype: torch.dtype, tokens: int, repeats: int) -> tuple[float, float]:
    """(seconds, flops) of forward + backward (y = x W^T, dx = dy W, dW = dy^T x) over every shape, best of repeats
    (fewer once 30 s are spent: a pass of emulated bf16 alone can take longer than that)."""
    work = []
    for m, k, n in shapes(tokens):
        x, w, dy = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype), torch.randn(m, n, dtype=dtype)
        work.append((x, w, dy, 3 * 2 * m * k * n))
    best, began = float("inf"), time.perf_counter()
    for _ in range(repeats + 1):  # the first pass warms oneDNN's kernel cache
        start = time.perf_counter()
        for x, w, dy, _ in work:
            x @ w.T, dy @ w, dy.T @ x
        best = min(best, time.perf_counter() - start)
        if time.perf_counter() - began > 30:
            break
    return best, sum(f for *_, f in work)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all)")
    ap.add_argument("--tokens", type=int, default=2048, help="tokens per micro-batch")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per precision (the best is kept)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from findap.models import cpu_has_fast_bf16, describe_precision

    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        seconds, flops = time_linears(dtype, args.tokens, args.repeats)
        rates[name] = flops / seconds / 1e9
        print(f"{name}: {rates[name]:8.1f} GFLOP/s  ({seconds * 1e3:.0f} ms for one layer + one loss chunk, "
              f"fwd + bwd, {args.tokens} tokens, {args.threads} threads)")
    ratio = rates["bf16"] / rates["fp32"]
    faster = "bf16" if ratio > 1 else "fp32"
    print(f"bf16 / fp32 = {ratio:.2f}x: {faster} is faster on this CPU (torch {torch.__version__}, "
          f"{torch.backends.cpu.get_cpu_capability()}, AVX512-BF16 or AMX: {cpu_has_fast_bf16()})")
    picked = describe_precision(torch.device("cpu"), "auto", training=True)
    agrees = picked.startswith("bf16") == (faster == "bf16")
    print(f"findap's precision auto: {picked}; {'agrees with' if agrees else 'DIFFERS from'} this measurement")


if __name__ == "__main__":
    main()
