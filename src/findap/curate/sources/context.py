"""What a converter needs besides its input path."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import NamedTuple

from findap.curate.holdout import reserved_for_eval
from findap.curate.records import cpt_example, it_example, normalize
from findap.curate.sources.badrows import BadRows

RENDER = "_render"  # an example's (templates, fields, index): iter_source re-renders copies from it, then drops it


class PromptTemplate(NamedTuple):
    """One way to ask a classification task; `text` has {field} slots for the example's input."""

    name: str  # "plain" is the bare completion form: the input and a field cue, no instruction
    text: str

    def render(self, fields: dict[str, str]) -> str:
        return self.text.format(**fields)


def pick_template(templates: tuple[PromptTemplate, ...], fields: dict[str, str]) -> int:
    """A template index from a hash of the normalised input. By input, not by id: a sentence that occurs twice in
    a file (FPB has some, with different labels) renders the same way both times, so exact dedup still sees the
    repeat; salted so the choice is independent of the train/eval hash split."""
    key = normalize("\x00".join(fields[name] for name in sorted(fields)))
    digest = hashlib.sha256(f"template\x00{key}".encode()).hexdigest()[:16]
    return int(digest, 16) % len(templates)


@dataclass
class ConvertContext:
    source: str  # label written into every example
    domain: str
    capability: str
    eval_holdout: float  # share of eval-scored datasets reserved for FinEval (see holdout.py)
    bad: BadRows
    text_field: str = "text"
    prompt_field: str = "prompt"
    response_field: str = "response"
    reserved: int = 0  # rows skipped because FinEval scores them
    empty: int = 0  # well-formed rows with nothing to learn from (e.g. an empty completion)
    select: str = "train"  # "eval" inverts the split: decontamination reads FinEval's portion this way
    inputs: list[str] = field(default_factory=list)  # select="eval": the raw inputs of the selected rows
    templates: bool = False  # classified(): vary the prompt template (curate.prompt_templates)

    def for_training(self, dataset: str, input_text: str) -> bool:
        """False (and counted) when the row is in the other portion of `dataset` than `select`."""
        in_eval = reserved_for_eval(dataset, input_text, self.eval_holdout)
        if in_eval != (self.select == "eval"):
            self.reserved += 1
            return False
        if self.select == "eval":
            self.inputs.append(input_text)
        return True

    def cpt(self, key: str, text: str) -> dict:
        return cpt_example(self.source, key, text, self.domain, self.capability)

    def it(self, key: str, prompt: str, response: str) -> dict:
        return it_example(self.source, key, prompt, response, self.domain, self.capability)

    def classified(self, key: str, templates: tuple[PromptTemplate, ...], fields: dict[str, str], label: str) -> dict:
        """An IT example whose answer is the bare `label`, which is also recorded as the example's `label` (what
        label balancing counts). Rendered in the first template (the converter's instruction) unless this source
        varies them; then in the one pick_template chooses. Every template holds the input fields verbatim, so
        decontamination sees the same text whichever is chosen."""
        index = pick_template(templates, fields) if self.templates else 0
        example = self.it(key, templates[index].render(fields), label)
        example["label"] = label
        example[RENDER] = (templates, fields, index)
        return example
