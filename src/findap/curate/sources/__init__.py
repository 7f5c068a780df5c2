"""Source converters: every real input format -> training examples (records.py).

`CONVERTERS` maps a converter name to what it reads by default (under the data root: findap.data_root), what kind
of example it makes, and its FinCap tags. `load_source` runs one recipe source and returns its examples plus a
report (bad rows with file:line, rows reserved for evaluation).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from findap.curate.config import CurateConfig, SourceConfig
from findap.curate.sources import demo, finance, general, hub
from findap.curate.sources.badrows import BadRows, SourceError
from findap.curate.sources.context import RENDER, ConvertContext, PromptTemplate


@dataclass(frozen=True)
class Converter:
    fn: Callable[[Path, ConvertContext], Iterator[dict]]
    default_path: str | None
    kind: str  # "cpt" | "it"
    domain: str
    capability: str
    # the dataset key its rows are split on with FinEval (ctx.for_training); None: nothing of it is ever scored
    holdout_key: str | None = None
    # ctx.classified sources: each example records its label (curate.balance_labels), in one of these templates
    # (curate.prompt_templates; the first is the one used when templates are off)
    templates: tuple[PromptTemplate, ...] = ()

    @property
    def labels(self) -> bool:
        return bool(self.templates)


CONVERTERS: dict[str, Converter] = {
    # finance CPT text: earnings-call transcripts stand in for the paper's finance web text and books
    "ectsum_transcripts": Converter(finance.ectsum_transcripts, "ectsum/train", "cpt", "finance", "concept",
                                    "ectsum"),
    # finance task IT
    "ectsum_summaries": Converter(finance.ectsum_summaries, "ectsum/train", "it", "finance", "task", "ectsum"),
    "fpb": Converter(finance.fpb, "fpb/Sentences_50Agree.train.txt", "it", "finance", "task", "fpb",
                     finance.FPB_TEMPLATES),
    "finer": Converter(finance.finer, "finer/FIN5.train.conll", "it", "finance", "task", "finer"),
    "fomc": Converter(finance.fomc, "fomc/lab-manual-split-combine-train-5768.xlsx", "it", "finance", "task",
                      "fomc", finance.FOMC_TEMPLATES),
    "credit": Converter(finance.credit, "credit/german.data", "it", "finance", "task", "credit",
                        finance.CREDIT_TEMPLATES),
    "tatqa": Converter(finance.tatqa, "tatqa/tatqa_dataset_dev.json", "it", "finance", "task", "tatqa"),
    # finance exercises (group 2)
    "cfa": Converter(finance.cfa, "cfa/CFA_Easy.json", "it", "finance", "reasoning", "cfa"),
    # general / math IT
    "gsm8k": Converter(general.gsm8k, "gsm8k/train.jsonl", "it", "math", "reasoning", "gsm8k"),
    "self_instruct": Converter(
        general.self_instruct, "general_it/self_instruct_seed_tasks.jsonl", "it", "general", "chat"
    ),
    "promptsource": Converter(general.promptsource, "general_it/promptsource", "it", "general", "task"),
    # general "verifiable" CPT text: instruction data rendered as plain text
    "self_instruct_text": Converter(
        general.self_instruct_text, "general_it/self_instruct_seed_tasks.jsonl", "cpt", "general", "concept"
    ),
    "promptsource_text": Converter(general.promptsource_text, "general_it/promptsource", "cpt", "general", "concept"),
    # any records file or hf:<dataset-id> (field names from the source config)
    "records_text": Converter(hub.records_text, None, "cpt", "finance", "concept"),
    "records_chat": Converter(hub.records_chat, None, "it", "general", "chat"),
    # findap's own demo dataset (train role only)
    "demo_finance_texts": Converter(demo.demo_finance_texts, "demo:finance_texts", "cpt", "finance", "concept"),
    "demo_sentiment": Converter(demo.demo_sentiment, "demo:sentiment", "it", "finance", "task"),
    "demo_stance": Converter(demo.demo_stance, "demo:stance", "it", "finance", "task"),
    "demo_concepts_mc": Converter(demo.demo_concepts_mc, "demo:concepts_mc", "it", "finance", "concept"),
    "demo_general_it": Converter(demo.demo_general_it, "demo:general_it", "it", "general", "chat"),
    "demo_exercises": Converter(demo.demo_exercises, "demo:exercises", "it", "finance", "reasoning"),
}


def register_converter(name: str, converter: Converter) -> None:
    """Plug in a converter for a new format (e.g. the demo data, a company's own files)."""
    CONVERTERS[name] = converter


@dataclass
class SourceReport:
    name: str
    kind: str
    location: str
    examples: int
    reserved_for_eval: int
    empty_rows: int
    bad_rows: list[str]
    copies: int = 0  # repetitions made for label balancing (not counted in `examples`); reported only when > 0


def resolve_location(spec: SourceConfig, converter: Converter, data_root: str | Path | None) -> str:
    """Where a source reads: hub and demo locations as given, files under the data root (findap.data_root)."""
    from findap.data_root import data_root as root_for

    location = spec.path or converter.default_path
    if location is None:
        raise SourceError(f"curate.sources[{spec.name}]: converter '{spec.converter_name}' needs a `path`")
    if location.startswith(("hf:", "demo:")):
        return location
    return str(root_for(data_root).resolve(location))


def iter_source(spec: SourceConfig, cfg: CurateConfig) -> tuple[Iterator[dict], Callable[[], SourceReport]]:
    """(examples, report()) of one source, streamed: report() is complete once the examples are exhausted.
    Bad rows are skipped and listed, or raise SourceError (cfg.on_bad_row)."""
    converter = CONVERTERS.get(spec.converter_name)
    if converter is None:
        raise SourceError(f"curate.sources[{spec.name}]: unknown converter '{spec.converter_name}'; "
                          f"known: {sorted(CONVERTERS)}")
    location = resolve_location(spec, converter, cfg.data_root)
    remote = location.startswith(("hf:", "demo:"))
    if not remote and not Path(location).exists():
        from findap.data_root import data_root as root_for

        root = root_for(cfg.data_root)
        raise SourceError(root.problem() or f"curate.sources[{spec.name}]: {location} does not exist "
                          f"(data root {root.path}, {root.origin})")
    ctx = ConvertContext(
        source=spec.name, domain=spec.domain or converter.domain, capability=spec.capability or converter.capability,
        eval_holdout=cfg.eval_holdout, bad=BadRows(cfg.on_bad_row, cfg.max_bad_rows),
        text_field=spec.text_field, prompt_field=spec.prompt_field, response_field=spec.response_field,
        templates=spec.name in cfg.templated_sources(),
    )
    source = location if remote else Path(location)
    limit = spec.limit if spec.limit is not None else cfg.limit_per_source
    # label balancing may repeat an example up to max_repeat times: its copies are made here, right after it, so
    # they pass every filter beside it and the mixture picks how many it needs (mixture.balance_labels)
    repeat = cfg.balance_labels.max_repeat if spec.name in cfg.balanced_sources() else 1
    count = copies = 0

    def examples() -> Iterator[dict]:
        nonlocal count, copies
        for example in converter.fn(source, ctx):
            render = example.pop(RENDER, None)
            count += 1
            yield example
            if example.get("label") is not None:
                for k in range(1, repeat):
                    copies += 1
                    yield repeated(example, k, render, ctx.templates)
            if limit is not None and count >= limit:
                break

    def report() -> SourceReport:
        return SourceReport(spec.name, converter.kind, location, count, ctx.reserved, ctx.empty, ctx.bad.rows,
                            copies)

    return examples(), report


def repeated(example: dict, k: int, render, vary: bool) -> dict:
    """The k-th copy of a labelled example, id `<id>~k`: in the k-th next template when the source varies them (a
    copy in another wording teaches more than the same prompt again), else the same prompt."""
    from findap.curate.records import copy_id

    copy = dict(example, id=copy_id(example["id"], k))
    if vary and render is not None:
        templates, fields, index = render
        prompt = templates[(index + k) % len(templates)].render(fields).strip()
        copy["messages"] = [{"role": "user", "content": prompt}, dict(example["messages"][1])]
    return copy


def load_source(spec: SourceConfig, cfg: CurateConfig) -> tuple[list[dict], SourceReport]:
    """Convert one source into a list (small sources, tests); the curation streams it with iter_source."""
    rows, report = iter_source(spec, cfg)
    examples = list(rows)
    return examples, report()


__all__ = ["CONVERTERS", "Converter", "SourceError", "SourceReport", "iter_source", "load_source", "register_converter"]
