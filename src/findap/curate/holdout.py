"""Which rows of a dataset that FinEval also scores may be used for training.

FPB, FiNER, FOMC, German credit, TAT-QA, CFA-Easy and ECTSum are both training sources (FinTrain) and evaluation
tasks (FinEval). Both sides split them the same deterministic way: a row whose normalised input text hashes into
the first `fraction` of [0, 1) is reserved for evaluation and never converted into training data; the rest is
training data. The hash is independent of file order, row count and platform, so the split is stable when a file
grows. Decontamination (decontam.py) is the safety net for anything that slips through (e.g. duplicates).

    bucket = int(sha256("<dataset>\\x00<normalised input>")[:16 hex], 16) / 16**16
    reserved for eval  <=>  bucket < fraction
"""
from __future__ import annotations

import hashlib

from findap.curate.records import normalize


def holdout_bucket(dataset: str, text: str) -> float:
    digest = hashlib.sha256(f"{dataset}\x00{normalize(text)}".encode()).hexdigest()[:16]
    return int(digest, 16) / float(16**16)


def reserved_for_eval(dataset: str, text: str, fraction: float) -> bool:
    """True when this row belongs to the evaluation portion of `dataset`."""
    return holdout_bucket(dataset, text) < fraction
