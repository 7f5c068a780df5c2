"""A fast deterministic judge for benchmarks and tests: no language model, same engine interface.

`KeywordJudge.generate` answers each judge prompt with the JSON the rubric asks for, its score counting distinct
finance terms in the judged text (0-5). It measures the pipeline around the judge (sampling, label checkpoints,
the classifier, the keep/drop decisions), not judging quality; bench/curate_scaling.py says so when it uses it.
"""
from __future__ import annotations

import json
import re

FINANCE_TERMS = frozenset(
    "revenue earnings margin dividend equity debt interest inflation guidance quarter profit loss cash bond "
    "stock shares market capital asset liability portfolio risk yield growth fiscal ebitda valuation".split())
_WORD = re.compile(r"[a-z]+")
_JUDGED = re.compile(r"<<<\n(.*)\n>>>", re.S)


def keyword_score(text: str) -> int:
    return min(5, len(FINANCE_TERMS.intersection(_WORD.findall(text.lower()))) // 2)


class KeywordJudge:
    """An Engine whose answers are keyword scores, as {"justification": ..., "score": n}."""

    name = "keyword-judge"

    def generate(self, requests, progress: bool = False) -> list[str]:
        out = []
        for request in requests:
            prompt = request.prompt if isinstance(request.prompt, str) else request.prompt[-1]["content"]
            found = _JUDGED.search(prompt)
            score = keyword_score(found.group(1) if found else prompt)
            out.append(json.dumps({"justification": f"{score * 2}+ distinct finance terms", "score": score}))
        return out
