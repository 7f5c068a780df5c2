"""evaluate(): run tasks on an engine and write per-task JSON (scores + per-sample predictions) and a summary.

    for each task (progress bar over tasks):
        docs   = task.docs(role)[:limit]                 seeded carve, never the few-shot pool
        direct multiple choice -> engine.loglikelihood  (acc, acc_norm)
        everything else        -> engine.generate -> extract -> metrics
        judge tasks            -> answers only; scored later by findap.eval.judge (needs_judge: true)
        write <out_dir>/<task>.<mode>.json atomically, then merge its scores into summary.json

Every score carries its uncertainty: `uncertainty[score] = {n, stderr, ci95: [lo, hi], method}` (Wilson for
accuracy-like scores, a seeded bootstrap over items for F1, MCC, ROUGE, ...; see findap.eval.uncertainty). The
samples keep what the metrics need per item (prediction, gold, and TAT-QA's gold type and scale), so the report
can pair two models item by item.

Resume: a task whose JSON already exists with the same settings is read back instead of re-run; its scores are
recomputed from the stored outputs (generation outputs re-extracted) so a fix to extraction or to a metric reaches
finished results without asking the model again. Inside a task the engine's request cache
(EngineSpec.cache_path) answers every request it has seen, so a killed evaluation continues where it stopped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Literal, Sequence

from findap.engines.base import GenerationRequest, LoglikelihoodRequest
from findap.eval.extract import extractor_name
from findap.eval.metrics import item_stats, score
from findap.eval.registry import get_extractor, resolve
from findap.eval.task import Task, TaskSpec, gold_text
from findap.eval.uncertainty import intervals, task_seed
from findap.io import write_json

TaskLike = str | TaskSpec | Task


def as_tasks(tasks: Iterable[TaskLike] | str, root: Path | None = None, prefer: str = "local") -> list[Task]:
    """Names, groups, YAML paths, specs or Tasks -> Tasks."""
    if isinstance(tasks, str):
        tasks = [tasks]
    out: list[Task] = []
    for t in tasks:
        if isinstance(t, Task):
            out.append(t)
        elif isinstance(t, TaskSpec):
            out.append(Task(t, root=root, prefer=prefer))  # type: ignore[arg-type]
        else:
            out += [Task(s, root=root, prefer=prefer) for s in resolve([t])]  # type: ignore[arg-type]
    return out


def evaluate(
    engine,
    tasks: Iterable[TaskLike] | str,
    *,
    mode: Literal["direct", "cot"] = "direct",
    limit: int | None = None,
    out_dir: str | Path,
    role: Literal["dev", "unseen"] | None = None,
    few_shot: int | None = None,
    model_name: str | None = None,
    root: Path | None = None,
    prefer: str = "local",
    progress: bool = True,
) -> dict:
    """Evaluate `engine` on `tasks`; returns {"model", "mode", "results": {task: scores}} (also summary.json)."""
    from rich.progress import Progress

    if mode not in ("direct", "cot"):
        raise ValueError(f"mode must be 'direct' or 'cot', not {mode!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = as_tasks(tasks, root=root, prefer=prefer)
    model_name = model_name or getattr(getattr(engine, "spec", None), "model", None) or getattr(engine, "name", "?")
    results: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    with Progress(disable=not progress, transient=True) as bar:
        job = bar.add_task(f"FinEval ({mode})", total=len(loaded))
        for task in loaded:
            bar.update(job, description=f"FinEval {task.name} ({mode})")
            if few_shot is not None:
                task = Task(task.spec.model_copy(update={"few_shot": few_shot}), root=task.root, prefer=task.prefer)
            try:
                record = evaluate_task(engine, task, mode=mode, limit=limit, role=role, out_dir=out_dir,
                                       model_name=model_name, progress=progress)
            except Exception as exc:  # a group may name hub-only tasks: skip those offline, fail on anything else
                if not _data_unavailable(exc):
                    raise
                skipped[task.name] = f"{type(exc).__name__}: {exc}"
                bar.console.print(f"[yellow]{task.name}: skipped, its data is not reachable ({exc})[/yellow]")
                bar.advance(job)
                continue
            results[task.name] = record["scores"]
            bar.advance(job)
    summary = _merge_summary(out_dir, model_name, mode, results, [t for t in loaded if t.name in results])
    return {**summary, "skipped": skipped} if skipped else summary


def _data_unavailable(exc: BaseException) -> bool:
    """The task's data cannot be had here (no local file and no hub access), as opposed to bad data."""
    if isinstance(exc, (ConnectionError, FileNotFoundError)):
        return True
    problem = getattr(exc, "problem", "") or ""
    return isinstance(exc, OSError) or "not found" in problem


def _settings(task: Task, mode: str, limit, role, model_name: str) -> dict:
    return {"task": task.name, "mode": mode, "limit": limit, "role": role or task.spec.split_role.value,
            "few_shot": task.spec.few_shot, "model": model_name,
            "spec": task.spec.model_dump(mode="json", exclude={"description", "groups"})}


def task_path(out_dir: Path, task_name: str, mode: str) -> Path:
    return Path(out_dir) / f"{task_name}.{mode}.json"


def evaluate_task(engine, task: Task, *, mode: str, limit=None, role=None, out_dir: Path, model_name: str,
                  progress: bool = True) -> dict:
    """One task: reuse a finished result with identical settings, else run it and write it atomically."""
    path = task_path(out_dir, task.name, mode)
    docs = task.docs(role, limit)  # loads the data first: some specs are completed by it (labels from data)
    settings = _settings(task, mode, limit, role, model_name)
    if path.exists():
        done = json.loads(path.read_text(encoding="utf-8"))
        if done.get("settings") == settings:
            return _rescored(done, task, docs, mode, path)
    if task.spec.answer_type == "multiple_choice" and mode == "direct":
        samples, preds = _run_loglikelihood(engine, task, docs, role, progress)
    elif task.spec.answer_type == "judge":
        samples, preds = _run_judge_answers(engine, task, docs, mode, progress)
    else:
        samples, preds = _run_generation(engine, task, docs, mode, role, progress)
    spec = task.spec
    record = {
        "task": task.name,
        "mode": mode,
        "model": model_name,
        "n": len(docs),
        "tags": {"capability": spec.capability.value, "domain": spec.domain.value, "novelty": spec.novelty.value,
                 "answer_type": spec.answer_type, "table1": spec.table1, "role": settings["role"]},
        **_scored(preds, docs, task, mode),
        "needs_judge": spec.answer_type == "judge",
        "settings": settings,
        "samples": samples,
    }
    write_json(path, record)
    return record


def _scored(preds: list, docs: Sequence[dict], task: Task, mode: str) -> dict:
    """`scores` and their `uncertainty` (judge tasks get both from the judge, later)."""
    if task.spec.answer_type == "judge":
        return {"scores": {}, "uncertainty": {}}
    stats = item_stats(preds, list(docs), task.spec, mode)
    return {"scores": score(preds, list(docs), task.spec, mode),
            "uncertainty": intervals(stats, seed=task_seed(task.name, mode))}


def _rescored(record: dict, task: Task, docs: Sequence[dict], mode: str, path: Path) -> dict:
    """A finished result scored again from its stored outputs with today's extraction and metrics; rewritten only
    when something changed. Judge results and files whose samples do not line up with the docs are kept as read."""
    samples = record.get("samples") or []
    if task.spec.answer_type == "judge" or [s.get("id") for s in samples] != [d["id"] for d in docs]:
        return record
    if task.spec.answer_type == "multiple_choice" and mode == "direct":
        preds = [{"pred": s["prediction"], "pred_norm": s["prediction_norm"]} for s in samples]
    else:
        extract = get_extractor(extractor_name(task.spec))
        preds = [extract(s["output"], doc, task.spec) for s, doc in zip(samples, docs)]
    updated = {**record, **_scored(preds, docs, task, mode)}
    updated["samples"] = [s if "output" not in s else {**s, "prediction": p, **_scoring_fields(doc)}
                          for s, p, doc in zip(samples, preds, docs)]
    if updated != record:
        write_json(path, updated)
    return updated


# Doc fields a metric reads besides `gold`, kept in each sample so a result file can be scored again on its own.
SCORING_FIELDS = ("gold_raw", "gold_type", "scale")


def _scoring_fields(doc: dict) -> dict:
    return {k: doc[k] for k in SCORING_FIELDS if k in doc}


def preds_and_docs(record: dict) -> tuple[list, list[dict]]:
    """The predictions and the gold side of the docs, read back from a result file's samples (what the metrics
    need: `gold`, NER `tags`, TAT-QA's gold type and scale)."""
    preds, docs = [], []
    for s in record.get("samples") or []:
        log_likelihood = "prediction_norm" in s  # direct multiple choice: both picks are stored
        preds.append({"pred": s["prediction"], "pred_norm": s["prediction_norm"]} if log_likelihood
                     else s.get("prediction"))
        doc = {"gold": s.get("gold"), **_scoring_fields(s)}
        if (record.get("tags") or {}).get("answer_type") == "ner":
            doc["tags"] = s.get("gold")
        docs.append(doc)
    return preds, docs


def _run_loglikelihood(engine, task: Task, docs: Sequence[dict], role, progress: bool):
    requests, owners = [], []
    contexts = []
    for i, doc in enumerate(docs):
        context, conts = task.mc_requests(doc, role)
        contexts.append(context)
        for cont in conts:
            requests.append(LoglikelihoodRequest(context=context, continuation=cont))
            owners.append(i)
    results = engine.loglikelihood(requests, progress=progress) if requests else []
    per_doc: list[list[float]] = [[] for _ in docs]
    for owner, res in zip(owners, results):
        per_doc[owner].append(res.logprob)
    samples, preds = [], []
    for doc, context, lls in zip(docs, contexts, per_doc):
        # acc_norm divides by the option's length in characters, as lm-evaluation-harness does
        normed = [ll / max(1, len(c)) for ll, c in zip(lls, doc["choices"])]
        pred = {"pred": max(range(len(lls)), key=lls.__getitem__),
                "pred_norm": max(range(len(normed)), key=normed.__getitem__)}
        preds.append(pred)
        samples.append({"id": doc["id"], "prompt": context, "choices": doc["choices"], "logprobs": lls,
                        "prediction": pred["pred"], "prediction_norm": pred["pred_norm"], "gold": doc["gold"]})
    return samples, preds


def _run_generation(engine, task: Task, docs: Sequence[dict], mode: str, role, progress: bool):
    spec = task.spec
    max_new = spec.max_new_tokens if mode == "direct" else spec.cot_max_new_tokens
    prompts = [task.messages(doc, mode, role) for doc in docs]
    outputs = engine.generate([GenerationRequest(prompt=p, max_new_tokens=max_new) for p in prompts],
                              progress=progress) if prompts else []
    extract = get_extractor(extractor_name(spec))
    samples, preds = [], []
    for doc, prompt, output in zip(docs, prompts, outputs):
        pred = extract(output, doc, spec)
        preds.append(pred)
        samples.append({"id": doc["id"], "prompt": prompt, "output": output, "prediction": pred,
                        "gold": doc["gold"], "gold_text": gold_text(spec.answer_type, doc), **_scoring_fields(doc)})
    return samples, preds


def _run_judge_answers(engine, task: Task, docs: Sequence[dict], mode: str, progress: bool):
    """Multi-turn answers (MT-bench has two turns): turn k is asked with the model's own earlier answers."""
    system = [{"role": "system", "content": task.spec.prompt.system}] if task.spec.prompt.system else []
    convs = [list(system) for _ in docs]
    answers: list[list[str]] = [[] for _ in docs]
    max_new = task.spec.max_new_tokens if mode == "direct" else task.spec.cot_max_new_tokens
    for turn in range(max((len(d["turns"]) for d in docs), default=0)):
        active = [i for i, d in enumerate(docs) if turn < len(d["turns"])]
        for i in active:
            convs[i].append({"role": "user", "content": docs[i]["turns"][turn]})
        outs = engine.generate([GenerationRequest(prompt=list(convs[i]), max_new_tokens=max_new) for i in active],
                               progress=progress)
        for i, out in zip(active, outs):
            convs[i].append({"role": "assistant", "content": out})
            answers[i].append(out)
    samples = [{"id": d["id"], "turns": d["turns"], "answers": a, "category": d.get("category"),
                "reference": d.get("reference"), "prompt": c[:-1] if c else c, "output": a[-1] if a else "",
                "prediction": a, "gold": d.get("reference")}
               for d, a, c in zip(docs, answers, convs)]
    return samples, answers


def _merge_summary(out_dir: Path, model_name: str, mode: str, results: dict, tasks: list[Task]) -> dict:
    path = Path(out_dir) / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if summary.get("model") not in (None, model_name):
        summary = {}  # a different model wrote here before: start over rather than mix models
    summary["model"] = model_name
    summary.setdefault("results", {})
    summary.setdefault("tags", {})
    for task in tasks:
        summary["results"].setdefault(task.name, {})[mode] = results[task.name]
        s = task.spec
        summary["tags"][task.name] = {"capability": s.capability.value, "domain": s.domain.value,
                                      "novelty": s.novelty.value, "answer_type": s.answer_type, "table1": s.table1}
    write_json(path, summary)
    return {"model": model_name, "mode": mode, "results": results, "summary_path": str(path)}
