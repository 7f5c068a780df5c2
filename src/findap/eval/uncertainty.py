"""How sure a score is: standard errors, 95% intervals, and paired comparisons of two models on the same items.

Every score is computed from per-item statistics (`findap.eval.metrics.ItemStats`), so resampling items is a
matrix product: a resample is a vector of how often each item was drawn, and its score is
`reduce(counts @ table)`. A thousand resamples of a few thousand items take milliseconds.

- Accuracy-like scores (means of 0/1 items) get the exact closed form: standard error sqrt(p(1-p)/n) and the
  Wilson score interval, which stays inside [0, 1] and behaves at p near 0 or 1 and at small n.
- Everything else (F1, MCC, entity F1, ROUGE and TAT-QA F1 means, judge ratings) gets a seeded percentile
  bootstrap over items: the standard error is the spread of the resampled scores, the interval their 2.5 and
  97.5 percentiles.
- Two models on the same items get a paired bootstrap: one set of resampled item indices, the score recomputed
  for both, the difference taken per resample. The difference is significant when its 95% interval excludes
  zero; the p-value is the two-sided bootstrap one (twice the smaller share of resampled differences on either
  side of zero).
- Many such tests at once (a report of many tasks and models) are adjusted with `adjust_p_values`: Holm keeps
  the chance of any false mark at 5%, Benjamini-Hochberg the expected share of false marks.

Seeds are fixed per task (`task_seed`), so a report rebuilt from the same files gives the same intervals, and two
models on the same task are resampled with the same index draws.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from findap.eval.metrics import ItemStats

N_BOOT = 1000
BASE_SEED = 20250611
Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal
_CHUNK = 200  # resamples per matrix product: bounds memory at _CHUNK x n counts


@dataclass(frozen=True)
class Interval:
    """A score with its uncertainty: `lo`/`hi` bound the 95% interval, `method` says how it was computed."""

    value: float
    n: int
    stderr: float
    lo: float
    hi: float
    method: str  # "wilson" | "bootstrap"

    def scaled(self, factor: float) -> "Interval":
        return Interval(self.value * factor, self.n, self.stderr * factor, self.lo * factor, self.hi * factor,
                        self.method)

    def to_json(self) -> dict:
        return {"n": self.n, "stderr": self.stderr, "ci95": [self.lo, self.hi], "method": self.method}


ALPHA = 0.05  # the level of every mark: 95% intervals, adjusted p-values at or below 5%
ADJUSTMENTS = ("none", "holm", "bh")


@dataclass(frozen=True)
class PairedDelta:
    """Model minus base on the items both were scored on (`n` of them), with the paired bootstrap's interval.

    `p_adjusted` is the p-value after a multiplicity adjustment over every test of a report (`adjust` names it:
    holm or bh); without one, significance is the per-test 95% interval.
    """

    delta: float
    n: int
    stderr: float
    lo: float
    hi: float
    p_value: float
    p_adjusted: float | None = None
    adjust: str = "none"

    @property
    def significant(self) -> bool:
        excludes_zero = self.lo > 0 or self.hi < 0
        if self.p_adjusted is None:
            return excludes_zero
        # adjusted marks stay a subset of the per-test ones: the bootstrap p-value and the percentile interval
        # can disagree at the 5% edge by a resample or two
        return excludes_zero and self.p_adjusted <= ALPHA

    def scaled(self, factor: float) -> "PairedDelta":
        return PairedDelta(self.delta * factor, self.n, self.stderr * factor, self.lo * factor, self.hi * factor,
                           self.p_value, self.p_adjusted, self.adjust)


def task_seed(task: str, mode: str = "direct") -> int:
    """A stable seed per task and mode (crc32, not hash(): Python salts str hashes per process)."""
    return BASE_SEED ^ zlib.crc32(f"{task}.{mode}".encode())


def resample_counts(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap resamples as counts: row b says how often each of the n items was drawn."""
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_boot:
        size = min(_CHUNK, n_boot - done)
        draws = rng.integers(0, n, size=(size, n))
        flat = (draws + (np.arange(size) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=size * n).reshape(size, n).astype(float)
        done += size


def bootstrap(stats: ItemStats, name: str, n_boot: int = N_BOOT, seed: int = BASE_SEED) -> np.ndarray:
    """The score `name` on `n_boot` resamples of the items (shape (n_boot,)); empty when there are no items."""
    if stats.n == 0:
        return np.zeros(0)
    return np.concatenate([stats.reduce(counts @ stats.table)[name]
                           for counts in resample_counts(stats.n, n_boot, seed)])


def wilson(p: float, n: int) -> tuple[float, float]:
    """The Wilson score interval of a proportion p observed on n items (95%)."""
    if n == 0:
        return 0.0, 0.0
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at p = 0 or 1 one end is exactly the observed value; rounding would leave it at 1e-17 from it
    return (0.0 if p == 0 else max(0.0, centre - half)), (1.0 if p == 1 else min(1.0, centre + half))


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    if replicates.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(replicates, [2.5, 97.5])
    return float(lo), float(hi)


def _spread(replicates: np.ndarray) -> float:
    return float(np.std(replicates, ddof=1)) if replicates.size > 1 else 0.0


def interval(stats: ItemStats, name: str, n_boot: int = N_BOOT, seed: int = BASE_SEED) -> Interval:
    """The score `name` with its standard error and 95% interval (Wilson for 0/1 means, else bootstrap)."""
    value = stats.scores()[name]
    if name in stats.bernoulli:
        lo, hi = wilson(value, stats.n)
        stderr = math.sqrt(value * (1 - value) / stats.n) if stats.n else 0.0
        return Interval(value, stats.n, stderr, lo, hi, "wilson")
    replicates = bootstrap(stats, name, n_boot, seed)
    lo, hi = percentile_interval(replicates)
    return Interval(value, stats.n, _spread(replicates), lo, hi, "bootstrap")


def intervals(stats_by_score: dict[str, ItemStats], seed: int, n_boot: int = N_BOOT) -> dict[str, dict]:
    """`{score: {"n", "stderr", "ci95", "method"}}` for every score with item statistics (the runner's record)."""
    return {name: interval(stats, name, n_boot, seed).to_json() for name, stats in stats_by_score.items()
            if math.isfinite(stats.scores()[name])}


def paired_replicates(a: ItemStats, b: ItemStats, name: str, n_boot: int = N_BOOT,
                      seed: int = BASE_SEED) -> np.ndarray:
    """Score of a minus score of b on the same resampled items (a and b aligned item by item)."""
    if a.n != b.n:
        raise ValueError(f"paired bootstrap needs the same items: {a.n} vs {b.n}")
    if a.n == 0:
        return np.zeros(0)
    out = []
    for counts in resample_counts(a.n, n_boot, seed):
        out.append(a.reduce(counts @ a.table)[name] - b.reduce(counts @ b.table)[name])
    return np.concatenate(out)


def bootstrap_p_value(replicates: np.ndarray) -> float:
    """Two-sided: twice the smaller share of resampled differences at or beyond zero on either side, with the
    (k + 1) / (B + 1) correction so that a finite number of resamples never claims p = 0."""
    if replicates.size == 0:
        return 1.0
    below = (np.count_nonzero(replicates <= 0) + 1) / (replicates.size + 1)
    above = (np.count_nonzero(replicates >= 0) + 1) / (replicates.size + 1)
    return float(min(1.0, 2 * min(below, above)))


def smallest_p_value(n_boot: int) -> float:
    """The smallest two-sided bootstrap p-value `n_boot` resamples can give: 2 / (n_boot + 1)."""
    return min(1.0, 2 / (n_boot + 1))


def adjust_p_values(p_values: Sequence[float], method: str) -> np.ndarray:
    """p-values adjusted for testing them all at once: `holm` (Holm's step-down: the chance of any false
    mark stays at most alpha) or `bh` (Benjamini-Hochberg step-up: the expected share of false marks among the
    marks stays at most alpha, for independent or positively dependent tests); `none` returns them as they are.

    Holm: the i-th smallest p times (m - i + 1), made non-decreasing in that order. BH: the i-th smallest p times
    m / i, made non-increasing from the largest down. Both capped at 1; ties keep one value.
    """
    p = np.asarray(p_values, dtype=float)
    if method not in ADJUSTMENTS:
        raise ValueError(f"adjust must be one of {list(ADJUSTMENTS)}, not {method!r}")
    if method == "none" or p.size == 0:
        return p.copy()
    m = p.size
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    if method == "holm":
        stepped = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:
        stepped = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(1.0, stepped)
    return out


def delta_from_replicates(delta: float, replicates: np.ndarray, n: int) -> PairedDelta:
    lo, hi = percentile_interval(replicates)
    return PairedDelta(delta, n, _spread(replicates), lo, hi, bootstrap_p_value(replicates))


def paired_delta(a: ItemStats, b: ItemStats, name: str, n_boot: int = N_BOOT, seed: int = BASE_SEED) -> PairedDelta:
    """Paired bootstrap of score(a) - score(b) over items that a and b share, aligned by position."""
    delta = a.scores()[name] - b.scores()[name]
    return delta_from_replicates(delta, paired_replicates(a, b, name, n_boot, seed), a.n)


def align_items(ids_a: Sequence, ids_b: Sequence) -> tuple[list[int], list[int]] | None:
    """Positions of the items both lists hold, in a's order; None when ids repeat (no unique pairing)."""
    if len(set(ids_a)) != len(ids_a) or len(set(ids_b)) != len(ids_b):
        return None
    where_b = {item: j for j, item in enumerate(ids_b)}
    pairs = [(i, where_b[item]) for i, item in enumerate(ids_a) if item in where_b]
    return [i for i, _ in pairs], [j for _, j in pairs]
