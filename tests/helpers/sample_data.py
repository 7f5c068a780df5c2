"""Small training sets in the curate -> train record format, built from the public data under ../shared/data.

Used by the tests and the benchmarks (bench/) to train without running the curate stage. The data is
read by path and never copied into the repository. Prompts are our own wording.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

DATA = Path(os.environ.get("FINDAP_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def fpb_conversations(n: int, data: Path = DATA, offset: int = 0) -> list[dict]:
    """Financial PhraseBank sentences as sentiment-classification conversations (finance / task)."""
    lines = (data / "fpb" / "Sentences_50Agree.train.txt").read_text(encoding="utf-8").splitlines()
    out = []
    for i, line in enumerate(lines[offset:offset + n], start=offset):
        sentence, _, label = line.rpartition("@")
        prompt = ("Classify the sentiment this financial news sentence expresses toward the company. "
                  f"Reply with one word: positive, negative or neutral.\n\nSentence: {sentence.strip()}")
        out.append({"id": f"fpb-{i}", "kind": "it", "source": "fpb", "domain": "finance", "capability": "task",
                    "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": label.strip()}]})
    return out


def gsm8k_conversations(n: int, data: Path = DATA, offset: int = 0) -> list[dict]:
    """GSM8K word problems with their worked solutions (general math / reasoning)."""
    out = []
    with open(data / "gsm8k" / "train.jsonl", encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i < offset:
                continue
            if len(out) >= n:
                break
            row = json.loads(line)
            out.append({"id": f"gsm8k-{i}", "kind": "it", "source": "gsm8k", "domain": "math",
                        "capability": "reasoning",
                        "messages": [{"role": "user", "content": "Solve step by step, then give the final number "
                                      f"after '####'.\n\n{row['question']}"},
                                     {"role": "assistant", "content": row["answer"]}]})
    return out


def ectsum_texts(n: int, data: Path = DATA, split: str = "train", offset: int = 0) -> list[dict]:
    """Earnings-call transcripts as domain CPT text (finance / concept)."""
    files = sorted((data / "ectsum" / split / "ects").glob("*.txt"))[offset:offset + n]
    return [{"id": f"ectsum-{p.stem}", "kind": "cpt", "source": "ectsum", "domain": "finance", "capability": "concept",
             "text": p.read_text(encoding="utf-8")} for p in files]


def mixed_examples(n_it: int, n_cpt: int, offset: int = 0) -> list[dict]:
    """FPB + GSM8K conversations (half each) and ECTSum transcripts: a joint CPT + IT stream."""
    half = n_it // 2
    return (fpb_conversations(half, offset=offset) + gsm8k_conversations(n_it - half, offset=offset)
            + ectsum_texts(n_cpt, offset=offset))
