"""What a converter needs besides its input path."""
from __future__ import annotations

from dataclasses import dataclass, field

from findap.curate.holdout import reserved_for_eval
from findap.curate.records import cpt_example, it_example
from findap.curate.sources.badrows import BadRows


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
