"""The evaluation inputs decontamination compares against, by task.

Preferred: the FinEval registry (findap.eval), every dev and unseen doc of every task, i.e. exactly what gets
scored. When the registry is not importable or has no tasks, fall back to the shared data files: the portion of
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

_DOC_TEXT_FIELDS = ("text", "question", "context", "query", "turns", "choices")
DUAL_USE = ("ectsum_transcripts", "fpb", "finer", "fomc", "credit", "tatqa", "cfa", "gsm8k")


def doc_input_text(doc: dict) -> str:
    """The parts of a FinEval doc a model sees (answers excluded)."""
    parts = []
    for name in _DOC_TEXT_FIELDS:
        value = doc.get(name)
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts.extend(v for v in value if isinstance(v, str))
    return "\n".join(parts)


def from_registry(data_root: str | Path | None = None) -> tuple[dict[str, list[str]], dict[str, str]] | None:
    """({task: input texts}, {task: why it was skipped}) from FinEval, or None if there is no registry yet."""
    try:
        from findap.eval.registry import all_specs, get_task
    except ImportError:
        return None
    specs = all_specs()
    if not specs:
        return None
    texts, skipped = {}, {}
    for name in sorted(specs):
        if specs[name].source is None:  # hub-only: would reach for the network; users online can add its texts
            skipped[name] = "hub-only task (no local source): not checked"
            continue
        try:
            task = get_task(name, root=Path(data_root) if data_root else None, prefer="local")
            docs = task.splits["dev"] + task.splits["unseen"]
        except (OSError, ValueError, KeyError, ImportError) as e:  # e.g. a hub-only task offline
            skipped[name] = f"{type(e).__name__}: {e}"
            continue
        texts[name] = [t for t in map(doc_input_text, docs) if t]
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


def _eval_only_files(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    val = root / "ectsum" / "val" / "ects"
    if val.is_dir():
        out["ectsum_val"] = [p.read_text(encoding="utf-8") for p in sorted(val.glob("*.txt"))]
    import csv

    mmlu = [r["question"] for p in sorted((root / "mmlu").rglob("*.csv"))
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


def from_files(cfg: CurateConfig) -> dict[str, list[str]]:
    root = Path(cfg.data_root)
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


__all__ = ["gather_eval_texts", "from_registry", "from_files", "doc_input_text"]
