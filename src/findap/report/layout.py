"""The leaderboard's order and scales: which split, relation, capability and domain come first, how a metric is
displayed (fractions x100, judge ratings on their 1-10 scale), and which scores tell skill from answer format.

Order (Table 6 of Ke et al. 2025): split role (unseen first), then trained, similar and novel (the task's relation
to what the run trained on, findap.report.novelty), then capability (concept, task, reasoning, IF/chat), then
domain (finance, general, math).
"""
from __future__ import annotations


SPLIT_ORDER = ("unseen", "dev")
# A task's relation to what the run trained on (findap.report.novelty): its own dataset, its task type, neither.
# Result files carry the YAML tag (similar or novel); the report replaces it with the relation it derives.
NOVELTY_ORDER = ("trained", "similar", "novel")
CAPABILITY_ORDER = ("concept", "task", "reasoning", "chat")
DOMAIN_ORDER = ("finance", "general", "math")
CAPABILITY_TITLE = {"concept": "Concept", "task": "Task", "reasoning": "Reasoning", "chat": "IF/Chat"}

# Judge ratings stay on their 1-10 scale; every other metric is a fraction shown as a percentage.
RAW_SCALE_METRICS = {"score"}


def display_scale(metric: str) -> float:
    return 1.0 if metric in RAW_SCALE_METRICS or metric.startswith("score_") else 100.0


# Scores shown beside a task's headline when its results hold them: the chance-corrected MCC, macro-F1 (every
# class counts alike, so always answering the majority class scores low) and the most frequent answer's share.
DETAIL_METRICS = ("mcc", "f1_macro", "top_pred_share")
# A model giving one answer to at least this share of a task's items is flagged as constant: its accuracy and
# weighted F1 then measure how common that answer is among the gold labels, not skill.
CONSTANT_SHARE = 0.9
# The score a task enters averages, FinCap cells and task sets by, wherever all its models have it: chance-
# corrected, so that a constant answer scores 0 and a move to one can never count as a gain.
SUMMARY_METRIC = "mcc"
