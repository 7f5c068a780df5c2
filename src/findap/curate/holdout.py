"""Which rows of a dataset that FinEval also scores may be used for training (kept for compatibility).

The split itself lives in the neutral module `findap.splits`, shared by curate, eval and distill: a row whose
normalised input text hashes into the first `fraction` of [0, 1) is reserved for evaluation and never converted
into training data. Decontamination (decontam.py) is the safety net for anything that slips through.
"""
from __future__ import annotations

from findap.splits import holdout_bucket, reserved_for_eval, tatqa_report_text

__all__ = ["holdout_bucket", "reserved_for_eval", "tatqa_report_text"]
