"""The evaluation items decontamination compares against, by task.

Preferred: the FinEval registry (findap.eval), every dev and unseen doc of every task whose data is on disk, i.e.
exactly what gets scored: local files under the data root, the shipped demo data, and hub-only tasks when the
Hugging Face cache already holds them (read offline: curation never downloads). Each doc becomes its probes
(`doc_probes`: the full input, then each part checked alone); tasks that could not be read are returned with a
reason. When the registry is not importable or has no tasks, fall back to the shared data files: the portion of
each dual-use dataset reserved for evaluation (holdout.py, read by the same converters with the split inverted)
plus the eval-only sets (ECTSum val, MMLU, ARC/PIQA/BoolQ, MT-bench).
"""
from __future__ import annotations

import json
from pathlib import Path

from findap.curate.config import CurateConfig
from findap.curate.sources import CONVERTERS
from findap.curate.sources.badrows import BadRows
from findap.curate.sources.context import ConvertContext
from findap.eval.availability import hub_offline

_DOC_TEXT_FIELDS = ("text", "question", "context", "query", "turns", "choices")
_ALONE_FIELDS = ("text", "question", "context", "query")  # checked on their own as well as joined
DUAL_USE = ("ectsum_transcripts", "fpb", "finer", "fomc", "credit", "tatqa", "cfa", "gsm8k")
# loaders whose hub dataset is a default argument rather than a YAML arg
_HUB_LOADER_DATASET = {"fineval_hub": "Salesforce/FinEval", "mathqa_hub": "allenai/math_qa"}


def doc_input_text(doc: dict) -> str:
    """The parts of a FinEval doc a model sees (answers excluded), joined: question + options, etc."""
    parts = []
    for name in _DOC_TEXT_FIELDS:
        value = doc.get(name)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(v for v in value if isinstance(v, str))
    return "\n".join(parts)


def doc_probes(doc: dict) -> list[str]:
    """Every way a training text could copy a doc: first the full input (question + options, question + context:
    what the model sees), then the parts checked alone: the question without its options, the context without
    its question, the classification text, every chat turn. A question that needs a context (TAT-QA's
    "What was the change in revenue?") is no evidence of a copy without it, so it is not a part then."""
    has_context = isinstance(doc.get("context"), str) and doc["context"].strip()
    parts = [doc[name] for name in _ALONE_FIELDS if isinstance(doc.get(name), str)
             and not (name in ("question", "query") and has_context)]
    turns = doc.get("turns")
    if isinstance(turns, list):
        parts += [t for t in turns if isinstance(t, str)]
    return [p for p in dict.fromkeys([doc_input_text(doc), *parts]) if p.strip()]


def hub_dataset(spec) -> str | None:
    """The Hugging Face dataset a hub-only task reads (its YAML `hub.args.dataset` or the loader's default)."""
    if spec.hub is None:
        return None
    return spec.hub.args.get("dataset") or _HUB_LOADER_DATASET.get(spec.hub.loader)


def _scored_docs(name: str, spec, data_root: Path | None) -> list[dict]:
    from findap.eval.registry import get_task

    if spec.source is not None:
        task = get_task(name, root=data_root, prefer="local")
        return task.splits["dev"] + task.splits["unseen"]
    with hub_offline():
        task = get_task(name, root=data_root, prefer="hub")
        return task.splits["dev"] + task.splits["unseen"]


def _why_unchecked(spec, err: Exception) -> str:
    """A reason a person can act on: which file or hub dataset is missing."""
    from findap.io import DataError

    if spec.source is None:
        dataset = hub_dataset(spec) or spec.hub.loader
        if isinstance(err, (ConnectionError, FileNotFoundError)):
            return f"hub-only task, {dataset} is not in the local Hugging Face cache"
        return f"hub-only task, {dataset} could not be read from the local cache: {type(err).__name__}: {err}"
    if isinstance(err, DataError) and "not found" in err.problem:
        return f"data not on disk: {err.file}"
    return f"{type(err).__name__}: {err}"


def from_registry(data_root: str | Path | None = None) -> tuple[dict[str, list[list[str]]], dict[str, str]] | None:
    """({task: one probe list per scored doc}, {task: why it was not checked}) from FinEval, or None if there is
    no registry. Local tasks read the data root (`data_root`, else findap.data_root's rule); hub-only tasks are
    read from the Hugging Face cache in offline mode, so curation never downloads and a task whose data is not on
    disk is listed, not silently skipped."""
    try:
        from findap.eval.registry import all_specs, broken_tasks
    except ImportError:
        return None
    specs = all_specs()
    if not specs:
        return None
    root = Path(data_root) if data_root else None
    # a task YAML that does not parse is not checked either: say so rather than leave it out
    texts, skipped = {}, {name: f"its task YAML is broken: {err}" for name, err in broken_tasks().items()}
    for name in sorted(specs):
        try:
            docs = _scored_docs(name, specs[name], root)
        except (OSError, ValueError, KeyError, ImportError) as e:  # OSError covers ConnectionError
            skipped[name] = _why_unchecked(specs[name], e)
            continue
        texts[name] = [probes for probes in map(doc_probes, docs) if probes]
    return texts, skipped


def _reserved_portion(converter: str, root: Path, eval_holdout: float) -> list[str]:
    spec = CONVERTERS[converter]
    ctx = ConvertContext(source=converter, domain=spec.domain, capability=spec.capability,
                         eval_holdout=eval_holdout, bad=BadRows("skip", 10**9), select="eval")
    for _ in spec.fn(root / spec.default_path, ctx):
        pass
    # the raw inputs (sentence, transcript, question), never our prompt wrapped around them: the instruction
    # template is longer than n words and would match every training example of the dataset
    return ctx.inputs


def _eval_only_files(root: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    val = root / "ectsum" / "val" / "ects"
    if val.is_dir():
        out["ectsum_val"] = [p.read_text(encoding="utf-8") for p in sorted(val.glob("*.txt"))]
    import csv

    # the question alone and the question with its options (choice0..choice3), like doc_probes
    mmlu = [[r["question"], "\n".join([r["question"]] + [v for k, v in r.items() if k.startswith("choice") and v])]
            for p in sorted((root / "mmlu").rglob("*.csv"))
            for r in csv.DictReader(open(p, encoding="utf-8")) if r.get("question")]
    if mmlu:
        out["mmlu"] = mmlu
    for path in sorted((root / "general").rglob("*.json")):
        rows = json.loads(path.read_text(encoding="utf-8"))
        out.setdefault(path.parent.name.lower(), []).extend(r.get("instruction", "") for r in rows)
    mtbench = root / "mtbench" / "question.jsonl"
    if mtbench.exists():
        out["mtbench"] = [t for line in open(mtbench, encoding="utf-8") if line.strip()
                          for t in json.loads(line)["turns"]]
    return out


def from_files(cfg: CurateConfig) -> dict[str, list]:
    from findap.data_root import data_root

    root = data_root(cfg.data_root).path
    texts: dict[str, list[str]] = {}
    for converter in DUAL_USE:
        if (root / CONVERTERS[converter].default_path).exists():
            texts[converter.removesuffix("_transcripts")] = _reserved_portion(converter, root, cfg.eval_holdout)
    texts.update(_eval_only_files(root))
    return texts


def gather_eval_texts(cfg: CurateConfig) -> tuple[dict[str, list[str]], str, dict[str, str]]:
    """({task: texts}, where they came from: "registry" | "files", {task: why skipped})."""
    registry = from_registry(cfg.data_root)
    if registry is not None:
        texts, skipped = registry
        return texts, "registry", skipped
    return from_files(cfg), "files", {}


__all__ = ["gather_eval_texts", "from_registry", "from_files", "doc_input_text", "doc_probes", "hub_dataset"]
