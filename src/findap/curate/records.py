"""Training-example records (the curate -> train contract) and their stable ids.

    {"id", "kind": "cpt" | "it", "text" (cpt) | "messages" (it), "source", "domain", "capability"}

Ids hash the source name and the example's own key, so the same row always gets the same id whatever order the
files are read in: dedup, dev splits and resume all rely on that.
"""
from __future__ import annotations

import hashlib
import re

from findap.splits import normalize  # noqa: F401  (re-exported: dedup and holdout use it from here)

# a repeated example (label balancing) is `<id>~<k>`, k >= 1; stable_id never makes a `~`
_COPY = re.compile(r"~(\d+)$")


def stable_id(source: str, key: str) -> str:
    digest = hashlib.sha256((source + "\x00" + key).encode()).hexdigest()[:16]
    return f"{source}-{digest}"


def copy_id(example_id: str, k: int) -> str:
    return f"{example_id}~{k}"


def copy_number(example_id: str) -> int:
    """0 for an original example, k for its k-th repetition."""
    match = _COPY.search(example_id)
    return int(match.group(1)) if match else 0


def base_id(example_id: str) -> str:
    """The original's id: copies share it, so they land on the same side of a dev split as their original."""
    return _COPY.sub("", example_id)


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
