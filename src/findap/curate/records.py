"""Training-example records (the curate -> train contract) and their stable ids.

    {"id", "kind": "cpt" | "it", "text" (cpt) | "messages" (it), "source", "domain", "capability"}

Ids hash the source name and the example's own key, so the same row always gets the same id whatever order the
files are read in: dedup, dev splits and resume all rely on that.
"""
from __future__ import annotations

import hashlib

from findap.splits import normalize  # noqa: F401  (re-exported: dedup and holdout use it from here)


def stable_id(source: str, key: str) -> str:
    digest = hashlib.sha256((source + "\x00" + key).encode()).hexdigest()[:16]
    return f"{source}-{digest}"


def cpt_example(source: str, key: str, text: str, domain: str, capability: str) -> dict:
    return {
        "id": stable_id(source, key), "kind": "cpt", "text": text.strip(),
        "source": source, "domain": domain, "capability": capability,
    }


def it_example(source: str, key: str, prompt: str, response: str, domain: str, capability: str) -> dict:
    messages = [{"role": "user", "content": prompt.strip()}, {"role": "assistant", "content": response.strip()}]
    return {
        "id": stable_id(source, key), "kind": "it", "messages": messages,
        "source": source, "domain": domain, "capability": capability,
    }


def example_text(example: dict) -> str:
    """The text a filter looks at: CPT text, or the IT conversation's turns joined by blank lines."""
    if example["kind"] == "cpt":
        return example["text"]
    return "\n\n".join(m["content"] for m in example["messages"])


def prompt_text(example: dict) -> str:
    """What decontamination compares: the CPT text, or the IT user turns (responses are often short labels)."""
    if example["kind"] == "cpt":
        return example["text"]
    return "\n\n".join(m["content"] for m in example["messages"] if m["role"] != "assistant")
