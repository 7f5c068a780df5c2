"""A FinEval task: its YAML spec (`TaskSpec`) and the loaded task (`Task`) that carves splits and renders prompts.

A task is data. Its YAML names a loader (a registered Python hook) that turns the original files into *docs*:
plain dicts with an `id`, a `gold` answer and the fields the prompt templates use. Per answer type:

    multiple_choice  question: str, choices: [str], gold: int (index into choices)
    classification   text: str, gold: str (one of spec.labels)
    ner              text: str, tokens: [str], tags: [IOB str], gold: tags
    summarization    text: str, gold: str (reference summary)
    numeric_qa       question: str, context: str, gold: [str] (answer spans or one number), scale: str, gold_type: str
    judge            turns: [str], category: str, reference: str | None

A doc may carry `split` ("train" | "dev" | "unseen") when the source itself fixes the split (MMLU's few-shot files,
the demo datasets' hash split, German credit's seeded 70/10/20 when asked for); otherwise the task carves its rows (`carve`): with a seeded shuffle, or, for
datasets curation also trains on, with the hash split of `findap.splits` (`carve.hash_key`), so eval scores
exactly the rows curation reserved for it.
"""
from __future__ import annotations

import random
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from findap.capabilities import Capability, Domain, Novelty, SplitRole
from findap.data_root import DataRoot
from findap.data_root import data_root as default_data_root
from findap.splits import hash_role

AnswerType = Literal["multiple_choice", "classification", "ner", "summarization", "numeric_qa", "judge"]
Mode = Literal["direct", "cot"]
# Every way a task can be scored: the generative chat prompts (direct, cot) and the plain log-likelihood form
# (loglik), which ranks the fixed answers as continuations of a plain-text context with no chat template, so a
# gain can be checked outside the prompt format a model was trained on.
ScoringMode = Literal["direct", "cot", "loglik"]
MODES = ("direct", "cot", "loglik")

# Why an answer type has no log-likelihood form: ranking continuations needs a small fixed set of answers.
NO_LOGLIK_FORM = {
    "ner": "no log-likelihood form: an NER answer is an open list of entities, not one of a few fixed strings",
    "numeric_qa": "no log-likelihood form: the answer is an open number or span, not one of a few fixed strings",
    "summarization": "no log-likelihood form: a summary is free text, not one of a few fixed strings",
    "judge": "no log-likelihood form: free-form answers are scored by a judge",
}


def missing_form(answer_type: str, mode: str) -> str | None:
    """Why a task of `answer_type` cannot be scored in `mode`, or None when it can."""
    if mode == "loglik":
        return NO_LOGLIK_FORM.get(answer_type)
    return None

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def data_root() -> Path:
    """Where local task files live when no recipe says: findap.data_root's rule ($FINDAP_DATA, else the default)."""
    return default_data_root(None).path


def reads_data_root(spec) -> bool:
    """Whether a task's local source reads files under the data root (the shipped demo sets do not)."""
    return spec.source is not None and spec.source.loader != "demo"


class SourceSpec(BaseModel):
    """A registered loader and its arguments (paths are relative to the data root)."""

    model_config = ConfigDict(extra="forbid")
    loader: str = Field(description="name of a registered loader, e.g. fpb, conll_ner, fineval_hub")
    args: dict = Field(default_factory=dict, description="keyword arguments passed to the loader")


class CarveSpec(BaseModel):
    """How rows without a fixed split are divided into a few-shot pool, dev and unseen (deterministic).

    Seeded shuffle by default. Hash mode (`hash_key` set) is for datasets that curate also trains on: a doc goes
    by `findap.splits.holdout_bucket(hash_key, doc[hash_field])`, the function and key curation uses, to dev
    (bucket < dev), unseen (< dev + unseen) or the few-shot pool, so the scored docs are exactly the rows curation
    reserves for evaluation when dev + unseen == curate.eval_holdout.
    """

    model_config = ConfigDict(extra="forbid")
    train: float = Field(0.0, ge=0, le=1, description="fraction kept as the few-shot pool (never scored)")
    dev: float = Field(0.0, ge=0, le=1, description="fraction used for model selection")
    unseen: float = Field(1.0, ge=0, le=1, description="fraction used for final reports")
    seed: int = 1234
    hash_key: str | None = Field(None, description="hash mode: the dataset name curation passes to "
                                 "reserved_for_eval (e.g. fpb); None: seeded shuffle")
    hash_field: str = Field("text", description="hash mode: the doc field holding the input text curation hashes")

    @model_validator(mode="after")
    def _sums_to_one(self):
        if abs(self.train + self.dev + self.unseen - 1.0) > 1e-6:
            raise ValueError(f"carve fractions must sum to 1, got {self.train}+{self.dev}+{self.unseen}")
        return self


class PromptSpec(BaseModel):
    """Prompt pieces. Templates use {field} of the doc plus {options} {letters} {labels} {entity_types}."""

    model_config = ConfigDict(extra="forbid")
    system: str | None = Field(None, description="optional system message")
    instruction: str = Field("", description="what the task asks, in our own words")
    input: str = Field("{text}", description="how one doc is shown")
    direct_suffix: str | None = Field(None, description="answer-format line for direct mode (default per type)")
    cot_suffix: str | None = Field(None, description="reason-then-answer line for CoT mode (default per type)")
    mc_context: str = Field("Question: {question}\nAnswer:", description="context for log-likelihood choices")
    mc_continuation: str = Field(" {choice}", description="how each choice is appended to mc_context")
    loglik_context: str | None = Field(
        None, description="loglik mode, classification: the plain-text block showing one doc, after the "
        "instruction (default: the input template, then 'Answer:')")
    loglik_continuation: str = Field(" {label}", description="loglik mode, classification: how each label is "
                                     "appended to loglik_context")


DEFAULT_DIRECT_SUFFIX = {
    "multiple_choice": "Reply with the letter of the correct option only ({letters}).",
    "classification": "Reply with one of: {labels}.",
    "ner": "List each entity on its own line as 'entity, TYPE' with TYPE one of {entity_types}. "
    "Reply 'None' if there is no entity.",
    "summarization": "Write the summary only.",
    "numeric_qa": "Reply with the answer only.",
    "judge": "",
}
DEFAULT_COT_SUFFIX = {
    "multiple_choice": "Think step by step, then end with a final line 'Answer: X' where X is one of {letters}.",
    "classification": "Think step by step, then end with a final line 'Answer: L' where L is one of: {labels}.",
    "ner": "Think step by step, then end with 'Answer:' followed by one 'entity, TYPE' line per entity "
    "(TYPE one of {entity_types}), or 'Answer: None'.",
    "summarization": "Think about the key facts first, then end with 'Answer:' followed by the summary.",
    "numeric_qa": "Think step by step, then end with a final line 'Answer: <answer>'.",
    "judge": "",
}


class TaskSpec(BaseModel):
    """One evaluation task, read from tasks/<name>.yaml with yaml.safe_load."""

    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    table1: str | None = Field(None, description="the dataset's name in the paper's Table 1, if it is one")
    hub_config: str | None = Field(None, description="config of Salesforce/FinEval holding this dataset")
    source: SourceSpec | None = Field(None, description="local files (preferred when present)")
    hub: SourceSpec | None = Field(None, description="Hugging Face source, for users online")
    capability: Capability
    domain: Domain
    novelty: Novelty
    split_role: SplitRole = Field(SplitRole.unseen, description="role this task plays when no split is requested")
    answer_type: AnswerType
    prompt: PromptSpec = Field(default_factory=PromptSpec)
    labels: list[str] = Field(default_factory=list, description="class labels in choice order (empty: from data)")
    synonyms: dict[str, list[str]] = Field(default_factory=dict, description="label -> words that mean it")
    default_label: str | None = Field(None, description="label used when nothing matches (else 'missing')")
    entity_types: list[str] = Field(default_factory=lambda: ["PER", "ORG", "LOC"])
    extraction: str | None = Field(None, description="registered extractor name (default per answer type)")
    metrics: list[str] = Field(default_factory=list, description="registered metric names")
    few_shot: int = Field(0, ge=0)
    few_shot_seed: int = 1234
    max_new_tokens: int = Field(32, ge=1, description="generation budget in direct mode")
    cot_max_new_tokens: int = Field(512, ge=1, description="generation budget in CoT mode")
    carve: CarveSpec = Field(default_factory=CarveSpec)
    groups: list[str] = Field(default_factory=list, description="extra groups besides the automatic ones")

    @model_validator(mode="after")
    def _consistent(self):
        if self.source is None and self.hub is None:
            raise ValueError("a task needs a local `source` or a `hub` source")
        unknown = set(self.synonyms) - set(self.labels)
        if self.labels and unknown:
            raise ValueError(f"synonyms for unknown labels {sorted(unknown)}; labels are {self.labels}")
        if self.default_label is not None and self.default_label not in self.labels:
            raise ValueError(f"default_label {self.default_label!r} is not one of {self.labels}")
        return self

    @property
    def all_groups(self) -> list[str]:
        """Automatic groups (fineval*, capability, domain) plus the declared ones."""
        cap, dom = self.capability.value, self.domain.value
        auto = [cap, dom, f"{cap}-{dom}"]
        if self.table1:
            auto += ["fineval", f"fineval-{self.novelty.value}"]
        if self.source is not None:
            auto.append("local")  # runs offline from the data root (or shipped data)
        return auto + [g for g in self.groups if g not in auto]


class _Fields(dict):
    """format_map mapping that names the missing field instead of a bare KeyError."""

    def __init__(self, task: str, *maps: dict):
        super().__init__()
        for m in maps:
            self.update(m)
        self.task = task

    def __missing__(self, key):
        raise KeyError(f"task {self.task}: prompt template uses {{{key}}} but the doc has no field {key!r}")


class TaskDataUnavailable(FileNotFoundError):
    """The task's data cannot be had here without the network (or at all), as opposed to bad data."""


class Task:
    """A TaskSpec with its docs loaded: split carving, few-shot selection and prompt rendering."""

    def __init__(self, spec: TaskSpec, root: "DataRoot | Path | None" = None,
                 prefer: Literal["local", "hub", "auto"] = "local"):
        """`root`: the data root its files are under (a path given without its origin is named "given" in
        messages; None: findap.data_root's rule). `prefer`: local files only, the hub first, or auto (local, else
        the hub when the files are absent)."""
        self.spec = spec
        if root is None:
            root = default_data_root(None)
        self.data_root = root if isinstance(root, DataRoot) else DataRoot(Path(root), "given")
        self.root = self.data_root.path
        self.prefer = prefer

    @property
    def name(self) -> str:
        return self.spec.name

    # ---- data -------------------------------------------------------------------------------------------
    @cached_property
    def all_docs(self) -> list[dict]:
        from findap.eval.registry import get_loader

        from findap.io import DataError

        source = self._pick_source()
        try:
            docs = get_loader(source.loader)(root=self.root, spec=self.spec, **source.args)
        except DataError as err:
            if source is not self.spec.source or self.spec.hub is None or "not found" not in err.problem:
                raise
            if self.prefer != "auto":
                where = (f"Salesforce/FinEval:{self.spec.hub_config}" if self.spec.hub_config
                         else f"{self.spec.hub.loader} {self.spec.hub.args}")
                hint = f"{err.problem}; the task can also read {where} from the Hugging Face hub " \
                       "(prefer='auto' or 'hub', needs internet)"
                raise DataError(err.file, err.line, err.field, hint) from None
            # prefer='auto': local files absent, so read the same dataset from the hub
            docs = get_loader(self.spec.hub.loader)(root=self.root, spec=self.spec, **self.spec.hub.args)
        if not docs:
            raise DataError(source.args.get("path") or source.loader, None, None,
                            f"task {self.name}: its {source.loader} loader found no rows")
        if self.spec.answer_type == "classification" and not self.spec.labels:
            # hub sets whose label set we do not hard-code: take the classes the data uses, sorted for stability
            self.spec = self.spec.model_copy(update={"labels": sorted({str(d["gold"]) for d in docs})})
        return docs

    def _pick_source(self) -> SourceSpec:
        spec = self.spec
        if spec.source is not None and (self.prefer == "local" or spec.hub is None):
            return spec.source
        if self.prefer == "local":  # hub-only data: 'local' means no network at all, so say so instead of trying
            where = (f"Salesforce/FinEval:{spec.hub_config}" if spec.hub_config
                     else f"{spec.hub.loader} {spec.hub.args}" if spec.hub is not None else "nowhere")
            raise TaskDataUnavailable(f"task {self.name}: no local data; it reads {where} from the Hugging Face hub "
                                      "(prefer 'auto' or 'hub', needs internet)")
        if spec.hub is not None:
            return spec.hub
        return spec.source  # type: ignore[return-value]

    @cached_property
    def splits(self) -> dict[str, list[dict]]:
        """{"train", "dev", "unseen"} -> docs. Fixed splits from the loader win; others are carved by hash or seed."""
        parts: dict[str, list[dict]] = {"train": [], "dev": [], "unseen": []}
        loose = []
        for doc in self.all_docs:
            if doc.get("split") in parts:
                parts[doc["split"]].append(doc)
            else:
                loose.append(doc)
        carve = self.spec.carve
        if carve.hash_key is not None:  # the split curation uses (findap.splits), not a shuffle
            for doc in loose:
                if not isinstance(doc.get(carve.hash_field), str):
                    raise ValueError(f"task {self.name}: carve.hash_field {carve.hash_field!r} is not a text "
                                     f"field of doc {doc.get('id')!r}")
                parts[hash_role(carve.hash_key, doc[carve.hash_field], carve.dev, carve.unseen)].append(doc)
            return parts
        order = list(range(len(loose)))
        random.Random(self.spec.carve.seed).shuffle(order)
        n = len(order)
        n_train = round(self.spec.carve.train * n)
        n_dev = round(self.spec.carve.dev * n)
        parts["train"] += [loose[i] for i in order[:n_train]]
        parts["dev"] += [loose[i] for i in order[n_train : n_train + n_dev]]
        parts["unseen"] += [loose[i] for i in order[n_train + n_dev :]]
        return parts

    def docs(self, role: SplitRole | None = None, limit: int | None = None) -> list[dict]:
        """The scored docs of a split role (the task's own role by default), first `limit` of them."""
        role = SplitRole(role or self.spec.split_role).value
        if self.spec.few_shot:
            self.few_shot_pool(role)  # no legal pool: fail before any scoring, not halfway through
        docs = self.splits[role]
        return docs[:limit] if limit is not None else docs

    def few_shot_pool(self, role: SplitRole | None = None) -> list[dict]:
        """Where examples come from: the train part; without one, the dev part when unseen is scored. Never the
        scored part and never the unseen part (final-report items must not appear in any prompt)."""
        role = SplitRole(role or self.spec.split_role).value
        if self.splits["train"]:
            return self.splits["train"]
        if role == "unseen" and self.splits["dev"]:
            return self.splits["dev"]
        reason = ("it has no train part, and the unseen part is never a few-shot pool" if role == "dev"
                  else "it has neither a train nor a dev part")
        raise ValueError(f"task {self.name}: few_shot={self.spec.few_shot} but scoring role {role!r} has no legal "
                         f"few-shot pool ({reason}); set few_shot: 0 for this task or give it a train part "
                         "(carve.train > 0)")

    def shots(self, doc: dict, role: SplitRole | None = None) -> list[dict]:
        """Seeded few-shot examples for one doc (same doc id -> same shots, whatever the batch or limit)."""
        k = self.spec.few_shot
        if k == 0:
            return []
        pool = [d for d in self.few_shot_pool(role) if d["id"] != doc["id"]]
        rng = random.Random(f"{self.spec.few_shot_seed}:{doc['id']}")
        return rng.sample(pool, min(k, len(pool)))

    # ---- prompts ----------------------------------------------------------------------------------------
    def fields(self, doc: dict) -> _Fields:
        extra = {
            "labels": ", ".join(self.spec.labels),
            "entity_types": ", ".join(self.spec.entity_types),
        }
        if "choices" in doc:
            extra["letters"] = ", ".join(LETTERS[: len(doc["choices"])])
            extra["options"] = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(doc["choices"]))
        return _Fields(self.name, extra, doc)

    def user_message(self, doc: dict, mode: Mode) -> str:
        p = self.spec.prompt
        suffix = p.direct_suffix if mode == "direct" else p.cot_suffix
        if suffix is None:
            suffix = (DEFAULT_DIRECT_SUFFIX if mode == "direct" else DEFAULT_COT_SUFFIX)[self.spec.answer_type]
        parts = [p.instruction, p.input, suffix]
        f = self.fields(doc)
        return "\n\n".join(part.format_map(f) for part in parts if part)

    def target(self, doc: dict, mode: Mode) -> str:
        """The reply a perfect model gives (used for few-shot examples)."""
        answer = gold_text(self.spec.answer_type, doc)
        return answer if mode == "direct" else f"Answer: {answer}"

    def messages(self, doc: dict, mode: Mode, role: SplitRole | None = None) -> list[dict]:
        """Chat messages for generation: system, few-shot turns, then the doc (the engine applies the template)."""
        out = [{"role": "system", "content": self.spec.prompt.system}] if self.spec.prompt.system else []
        for shot in self.shots(doc, role):
            out.append({"role": "user", "content": self.user_message(shot, mode)})
            out.append({"role": "assistant", "content": self.target(shot, mode)})
        out.append({"role": "user", "content": self.user_message(doc, mode)})
        return out

    def mc_requests(self, doc: dict, role: SplitRole | None = None) -> tuple[str, list[str]]:
        """(context, continuations) for log-likelihood scoring; shots are prepended as solved examples."""
        p = self.spec.prompt
        blocks = []
        for shot in self.shots(doc, role):
            cont = p.mc_continuation.format_map(_Fields(self.name, {"choice": shot["choices"][shot["gold"]]}))
            blocks.append(p.mc_context.format_map(self.fields(shot)) + cont)
        blocks.append(p.mc_context.format_map(self.fields(doc)))
        context = "\n\n".join(blocks)
        conts = [p.mc_continuation.format_map(_Fields(self.name, {"choice": c})) for c in doc["choices"]]
        return context, conts

    def loglik_requests(self, doc: dict, role: SplitRole | None = None) -> tuple[str, list[str]]:
        """(context, continuations) of the plain log-likelihood form: a completion-style text with no chat
        template and no system message, one continuation per answer. Multiple choice is `mc_requests` (direct
        mode already scores it this way). Classification shows the instruction and the label set once, then
        the solved few-shot examples and the doc, each as `loglik_context`; the continuations are the labels
        in `spec.labels` order, so the best one's index is the predicted label."""
        kind = self.spec.answer_type
        if kind == "multiple_choice":
            return self.mc_requests(doc, role)
        if kind != "classification":
            raise ValueError(f"task {self.name}: {missing_form(kind, 'loglik')}")
        p = self.spec.prompt
        block = p.loglik_context if p.loglik_context is not None else f"{p.input}\nAnswer:"
        f = self.fields(doc)
        # naming the labels matters here: without it a label such as "yes" is a guess at the answer's wording
        header = "\n".join(part for part in (p.instruction.format_map(f), f"Possible answers: {f['labels']}.")
                            if part)
        shots = [block.format_map(self.fields(s)) + self._label_continuation(str(s["gold"]))
                 for s in self.shots(doc, role)]
        context = "\n\n".join([header, *shots, block.format_map(f)])
        return context, [self._label_continuation(label) for label in self.spec.labels]

    def _label_continuation(self, label: str) -> str:
        return self.spec.prompt.loglik_continuation.format_map(_Fields(self.name, {"label": label}))


def gold_text(answer_type: str, doc: dict) -> str:
    """The gold answer written the way a model should write it."""
    gold = doc["gold"]
    if answer_type == "multiple_choice":
        return LETTERS[gold]
    if answer_type == "ner":
        return "\n".join(f"{text}, {etype}" for text, etype in doc.get("entities", [])) or "None"
    if answer_type == "numeric_qa":
        return "; ".join(str(g) for g in gold) + (f" {doc['scale']}" if doc.get("scale") else "")
    return str(gold)
