"""How much did answer extraction alone move a run's scores? The stored replies of a finished eval stage (or any
`findap eval --out` folder) are read again with the extraction of an earlier commit (default 2d63c91, before the
answer reader of issue #11) and with today's, and both are scored with today's metrics and intervals: same items,
same replies, only the reading differs.

    PYTHONPATH=src .venv/bin/python bench/extraction_before_after.py runs/smollm2-fin/eval

The earlier extraction module is read from git (`git show REV:src/findap/eval/extract.py`) and executed in a
private namespace with its extractor registrations disabled, so it cannot replace today's.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import types
from pathlib import Path

from findap.eval.extract import extractor_name
from findap.eval.metrics import primary_metric, score
from findap.eval.registry import get_extractor, get_task
from findap.eval.runner import preds_and_docs

REPO = Path(__file__).resolve().parents[1]


def old_extractors(rev: str) -> dict[str, object]:
    source = subprocess.run(["git", "show", f"{rev}:src/findap/eval/extract.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    source = source.replace("@register_extractor(", "@(lambda *a, **k: (lambda f: f))(")
    module = types.ModuleType(f"extract_{rev}")
    exec(compile(source, f"{rev}:src/findap/eval/extract.py", "exec"), module.__dict__)
    return {name[len("extract_"):]: fn for name, fn in vars(module).items()
            if name.startswith("extract_") and callable(fn)}


def compare(result_file: Path, old: dict, data_root: Path) -> dict | None:
    record = json.loads(result_file.read_text())
    samples = record.get("samples") or []
    if not samples or "output" not in samples[0] or record.get("mode") != "direct":
        return None  # log-likelihood scoring (nothing is extracted) or a judge task
    task = get_task(record["task"], root=data_root)
    name = extractor_name(task.spec)
    if name not in old:
        return None
    by_id = {d["id"]: d for d in task.all_docs}
    docs = [by_id[s["id"]] for s in samples]
    _, gold_side = preds_and_docs(record)
    new_fn = get_extractor(name)
    before = [old[name](s["output"], d, task.spec) for s, d in zip(samples, docs)]
    after = [new_fn(s["output"], d, task.spec) for s, d in zip(samples, docs)]
    scores_before = score(before, gold_side, task.spec, "direct")
    scores_after = score(after, gold_side, task.spec, "direct")
    metric = primary_metric(scores_after, record.get("primary_metric"), task.spec.answer_type, task.spec.metrics)
    return {"task": task.name, "model": record.get("model"), "n": len(samples), "metric": metric,
            "changed": sum(a != b for a, b in zip(before, after)),
            "before": 100 * scores_before[metric], "after": 100 * scores_after[metric]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir", type=Path, help="an eval stage folder or findap eval --out folder")
    parser.add_argument("--rev", default="2d63c91", help="commit whose extraction is 'before'")
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    old = old_extractors(args.rev)
    print(f"| model | task | n | metric | {args.rev} extraction | today's extraction | replies read differently |")
    print("|---|---|---:|---|---:|---:|---:|")
    for path in sorted(args.eval_dir.rglob("*.direct.json")):
        row = compare(path, old, args.data_root)
        if row:
            print(f"| {row['model']} | {row['task']} | {row['n']} | {row['metric']} | {row['before']:.1f} | "
                  f"{row['after']:.1f} | {row['changed']} |")


if __name__ == "__main__":
    main()
