"""FinCap: the tags every dataset, prompt and score carries, so reports break down by capability x domain."""
from __future__ import annotations

from enum import Enum


class Capability(str, Enum):
    concept = "concept"  # knows the domain's concepts without forgetting general ones (MMLU, ARC, MMLU-Finance)
    task = "task"  # does domain tasks: classification, extraction, summarization, QA (FPB, NER, TAT-QA, ...)
    reasoning = "reasoning"  # multi-step reasoning (MathQA, CFA exams, commonsense sets)
    chat = "chat"  # follows instructions and converses (MT-bench)


class Domain(str, Enum):
    finance = "finance"
    general = "general"
    math = "math"


class Novelty(str, Enum):
    similar = "similar"  # task types seen in training, datasets unseen
    novel = "novel"  # task types never trained


class SplitRole(str, Enum):
    dev = "dev"  # used for model selection during training
    unseen = "unseen"  # final report only
