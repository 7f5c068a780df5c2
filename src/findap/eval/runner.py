"""evaluate(): run tasks on an engine and write per-task JSON (scores + per-sample predictions) and a summary.

    for each task (progress bar over tasks):
        docs   = task.docs(role)[:limit]                 seeded carve, never the few-shot pool
        direct multiple choice -> engine.loglikelihood  (acc, acc_norm)
        loglik mode            -> engine.loglikelihood on plain text, no chat template: multiple choice as in
                                  direct mode, classification ranks the labels (the classification metrics on
                                  the best label, plus acc_norm); other answer types have no such form and are
                                  listed in `skipped` (and `no_form`), which is not a failure
        everything else        -> engine.generate -> extract -> metrics
        judge tasks            -> answers only; scored later by findap.eval.judge (needs_judge: true)
        write <out_dir>/<task>.<mode>.json atomically, then merge its scores into summary.json

Every score carries its uncertainty: `uncertainty[score] = {n, stderr, ci95: [lo, hi], method}` (Wilson for
accuracy-like scores, a seeded bootstrap over items for F1, MCC, ROUGE, ...; see findap.eval.uncertainty). The
samples keep what the metrics need per item (prediction, gold, and TAT-QA's gold type and scale), so the report
can pair two models item by item.

Every result knows what produced it: its settings hold the model's content fingerprint (findap.provenance: the
weights' bytes, never the folder's name or path) and the hash of the task's data, and its `provenance` block adds
findap's version and commit and the date. Resume: a task whose JSON already exists with identical settings (same
weights, same data, same prompts and limits) is read back instead of re-run; its scores are recomputed from the
stored outputs (generation outputs re-extracted) so a fix to extraction or to a metric reaches finished results
without asking the model again. Anything else (a retrain at the same path, another model under the same label,
changed data) is scored anew. Inside a task the engine's request cache (EngineSpec.cache_path, keyed by the same
fingerprint) answers every request it has seen, so a killed evaluation continues where it stopped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Literal, Sequence

from findap.engines.base import GenerationRequest, LoglikelihoodRequest
from findap.eval.extract import extractor_name
from findap.eval.metrics import item_stats, score
from findap.eval.registry import get_extractor, get_metric, resolve
from findap.eval.task import MODES, Task, TaskSpec, gold_text, missing_form
from findap.eval.uncertainty import intervals, task_seed
from findap.io import write_json
from findap.provenance import digest_text, provenance

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
    mode: Literal["direct", "cot", "loglik"] = "direct",
    limit: int | None = None,
    out_dir: str | Path,
    role: Literal["dev", "unseen"] | None = None,
    few_shot: int | None = None,
    model_name: str | None = None,
    root: Path | None = None,
    prefer: str = "local",
    progress: bool = True,
    force: bool = False,
) -> dict:
    """Evaluate `engine` on `tasks`; returns {"model", "mode", "results": {task: scores}, "skipped": {task: why},
    "no_form": {task: why}} (also merged into summary.json). `no_form` is the part of `skipped` that has no form in
    this mode by design (NER in loglik mode), as opposed to data that cannot be had here. `force`: score every
    task anew even when a finished result matches."""
    from rich.progress import Progress

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    loaded = as_tasks(tasks, root=root, prefer=prefer)  # an unknown task fails before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_name = model_name or getattr(getattr(engine, "spec", None), "model", None) or getattr(engine, "name", "?")
    fingerprint = engine_fingerprint(engine)
    results: dict[str, dict] = {}
    records: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    no_form: dict[str, str] = {}
    with Progress(disable=not progress, transient=True) as bar:
        job = bar.add_task(f"FinEval ({mode})", total=len(loaded))
        for task in loaded:
            bar.update(job, description=f"FinEval {task.name} ({mode})")
            if few_shot is not None:
                task = Task(task.spec.model_copy(update={"few_shot": few_shot}), root=task.data_root, prefer=task.prefer)
            why = missing_form(task.spec.answer_type, mode)
            if why:
                skipped[task.name] = no_form[task.name] = why
                bar.advance(job)
                continue
            try:
                record = evaluate_task(engine, task, mode=mode, limit=limit, role=role, out_dir=out_dir,
                                       model_name=model_name, progress=progress, force=force)
            except Exception as exc:  # a group may name hub-only tasks: skip those offline, fail on anything else
                if not data_unavailable(exc):
                    raise
                skipped[task.name] = f"{type(exc).__name__}: {exc}"
                bar.console.print(f"[yellow]{task.name}: skipped, its data is not reachable ({exc})[/yellow]")
                bar.advance(job)
                continue
            results[task.name] = record["scores"]
            records[task.name] = record
            bar.advance(job)
    return _merge_summary(out_dir, model_name, fingerprint, mode, records, [t for t in loaded if t.name in results],
                          skipped, no_form)


def engine_fingerprint(engine) -> str:
    """What names the engine's model in results and caches: its content fingerprint (findap.provenance), or for an
    engine without one its identity string."""
    found = getattr(engine, "fingerprint", None) or getattr(engine, "identity", None)
    return str(found) if found else f"engine:{getattr(engine, 'name', type(engine).__name__)}"


def data_unavailable(exc: BaseException) -> bool:
    """The task's data cannot be had here (no local file and no hub access), as opposed to bad data."""
    if isinstance(exc, (ConnectionError, FileNotFoundError)):
        return True
    problem = getattr(exc, "problem", "") or ""
    return isinstance(exc, OSError) or "not found" in problem


# Prompt fields only the loglik mode reads: left out of the other modes' settings, whose results they do not
# change (so adding or editing them never invalidates a finished generative result).
LOGLIK_PROMPT_FIELDS = {"loglik_context", "loglik_continuation"}


def _settings(task: Task, mode: str, limit, role, model_name: str, fingerprint: str) -> dict:
    """Everything that decides a task's result: a saved result is reused only when all of it is equal."""
    exclude: dict = {"description": True, "groups": True}
    if mode != "loglik":
        exclude["prompt"] = LOGLIK_PROMPT_FIELDS
    return {"task": task.name, "mode": mode, "limit": limit, "role": role or task.spec.split_role.value,
            "few_shot": task.spec.few_shot, "model": model_name, "model_fingerprint": fingerprint,
            "data_hash": task_data_hash(task),
            "spec": task.spec.model_dump(mode="json", exclude=exclude)}


def uses_loglikelihood(answer_type: str, mode: str) -> bool:
    """Scored by ranking continuations (loglik mode, and multiple choice in direct mode) rather than generating."""
    return mode == "loglik" or (answer_type == "multiple_choice" and mode == "direct")


def task_data_hash(task: Task) -> str:
    """Fingerprint of every row the task read (scored items and the few-shot pool alike)."""
    return digest_text(task.all_docs)


def task_path(out_dir: Path, task_name: str, mode: str) -> Path:
    return Path(out_dir) / f"{task_name}.{mode}.json"


def evaluate_task(engine, task: Task, *, mode: str, limit=None, role=None, out_dir: Path, model_name: str,
                  progress: bool = True, force: bool = False) -> dict:
    """One task: reuse a finished result with identical settings (unless `force`), else run it and write it
    atomically."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 (or None for every item), not {limit}")
    if missing_form(task.spec.answer_type, mode):
        raise ValueError(f"task {task.name}: {missing_form(task.spec.answer_type, mode)}")
    path = task_path(out_dir, task.name, mode)
    docs = task.docs(role, limit)  # loads the data first: some specs are completed by it (labels from data)
    if not docs:
        raise ValueError(f"task {task.name}: its {role or task.spec.split_role.value} split has no items to score")
    fingerprint = engine_fingerprint(engine)
    settings = _settings(task, mode, limit, role, model_name, fingerprint)
    if path.exists() and not force:
        done = json.loads(path.read_text(encoding="utf-8"))
        if done.get("settings") == settings:
            return _rescored(done, task, docs, mode, path)
    norm = None
    if task.spec.answer_type == "classification" and mode == "loglik":
        samples, preds, norm = _run_label_loglikelihood(engine, task, docs, role, progress)
    elif uses_loglikelihood(task.spec.answer_type, mode):
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
        **_scored(preds, docs, task, mode, norm),
        "needs_judge": spec.answer_type == "judge",
        "settings": settings,
        "provenance": provenance(model=model_name, model_fingerprint=fingerprint, data_hash=settings["data_hash"],
                                 engine=getattr(engine, "name", None), n=len(docs)),
        "samples": samples,
    }
    write_json(path, record)
    return record


def _scored(preds: list, docs: Sequence[dict], task: Task, mode: str, norm: list | None = None) -> dict:
    """`scores` and their `uncertainty` (judge tasks get both from the judge, later). `norm`: classification in
    loglik mode, the labels picked by log-likelihood per character, scored as `acc_norm` beside the task's own
    metrics (which score `preds`, the labels picked by plain log-likelihood, exactly as generated answers)."""
    if task.spec.answer_type == "judge":
        return {"scores": {}, "uncertainty": {}}
    stats = item_stats(preds, list(docs), task.spec, mode)
    scores = score(preds, list(docs), task.spec, mode)
    if norm is not None:
        extra = get_metric("acc_norm").stats(norm, list(docs), task.spec)
        stats["acc_norm"] = extra
        scores.update(extra.scores())
    return {"scores": scores, "uncertainty": intervals(stats, seed=task_seed(task.name, mode))}


def _rescored(record: dict, task: Task, docs: Sequence[dict], mode: str, path: Path) -> dict:
    """A finished result scored again from its stored outputs with today's extraction and metrics; rewritten only
    when something changed. Judge results and files whose samples do not line up with the docs are kept as read."""
    samples = record.get("samples") or []
    if task.spec.answer_type == "judge" or [s.get("id") for s in samples] != [d["id"] for d in docs]:
        return record
    norm = None
    if task.spec.answer_type == "classification" and mode == "loglik":
        preds = [s["prediction"] for s in samples]
        norm = [s["prediction_norm"] for s in samples]
    elif uses_loglikelihood(task.spec.answer_type, mode):
        preds = [{"pred": s["prediction"], "pred_norm": s["prediction_norm"]} for s in samples]
    else:
        extract = get_extractor(extractor_name(task.spec))
        preds = [extract(s["output"], doc, task.spec) for s, doc in zip(samples, docs)]
    updated = {**record, **_scored(preds, docs, task, mode, norm)}
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
    answer_type = (record.get("tags") or {}).get("answer_type")
    for s in record.get("samples") or []:
        # multiple choice by log-likelihood stores both picks as option indices; classification in loglik mode
        # stores labels, and its `prediction` is what the classification metrics score
        log_likelihood = "prediction_norm" in s and answer_type != "classification"
        preds.append({"pred": s["prediction"], "pred_norm": s["prediction_norm"]} if log_likelihood
                     else s.get("prediction"))
        doc = {"gold": s.get("gold"), **_scoring_fields(s)}
        if answer_type == "ner":
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


def _run_label_loglikelihood(engine, task: Task, docs: Sequence[dict], role, progress: bool):
    """Classification in loglik mode: each label's log-likelihood as a continuation of the plain context. The
    prediction is the label with the highest one (acc_norm's: the highest per character of the label), so the
    classification metrics score it as they score an extracted answer, against the same gold field."""
    labels = list(task.spec.labels)
    requests, contexts, conts_by_doc = [], [], []
    for doc in docs:
        context, conts = task.loglik_requests(doc, role)
        contexts.append(context)
        conts_by_doc.append(conts)
        requests += [LoglikelihoodRequest(context=context, continuation=c) for c in conts]
    results = engine.loglikelihood(requests, progress=progress) if requests else []
    logprobs = [r.logprob for r in results]
    samples, preds, norm = [], [], []
    for i, (doc, context, conts) in enumerate(zip(docs, contexts, conts_by_doc)):
        lls = logprobs[i * len(labels):(i + 1) * len(labels)]
        best = max(range(len(labels)), key=lls.__getitem__)
        best_norm = max(range(len(labels)), key=lambda k: lls[k] / max(1, len(labels[k])))
        preds.append(labels[best])
        norm.append(labels[best_norm])
        samples.append({"id": doc["id"], "prompt": context, "labels": labels, "continuations": conts,
                        "logprobs": lls, "prediction": labels[best], "prediction_norm": labels[best_norm],
                        "gold": doc["gold"], "gold_text": gold_text(task.spec.answer_type, doc),
                        **_scoring_fields(doc)})
    return samples, preds, norm


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
                        "gold": doc["gold"], "gold_text": gold_text(spec.answer_type, doc), **_scoring_fields(doc),
                        # the options, so the report can tell a fixed label set (MCC) from per-item options
                        **({"choices": doc["choices"]} if "choices" in doc else {})})
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


def _merge_summary(out_dir: Path, model_name: str, fingerprint: str, mode: str, records: dict[str, dict],
                   tasks: list[Task], skipped: dict[str, str], no_form: dict[str, str] | None = None) -> dict:
    """Merge this call's results into summary.json: scores with their n and intervals, the tasks skipped and why,
    and the provenance. A summary written for other weights (another model, or a retrain at the same path) is
    started over rather than mixed with this one. `skipped` (task -> why) holds tasks whose data could not be
    had; tasks without a form in a mode go to `no_form` (task -> {mode: why}), since the same task may well
    have results in the other modes."""
    no_form = no_form or {}
    path = Path(out_dir) / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if summary.get("model") not in (None, model_name) or summary.get("model_fingerprint") not in (None, fingerprint):
        summary = {}
    summary["model"] = model_name
    summary["model_fingerprint"] = fingerprint
    for key in ("results", "tags", "n", "uncertainty", "data_hash", "skipped", "no_form"):
        summary.setdefault(key, {})
    for task in tasks:
        record = records[task.name]
        summary["results"].setdefault(task.name, {})[mode] = record["scores"]
        summary["n"].setdefault(task.name, {})[mode] = record.get("n")
        summary["uncertainty"].setdefault(task.name, {})[mode] = record.get("uncertainty", {})
        summary["data_hash"][task.name] = record.get("settings", {}).get("data_hash")
        summary["skipped"].pop(task.name, None)
        s = task.spec
        summary["tags"][task.name] = {"capability": s.capability.value, "domain": s.domain.value,
                                      "novelty": s.novelty.value, "answer_type": s.answer_type, "table1": s.table1}
    summary["skipped"].update({name: why for name, why in skipped.items() if name not in no_form})
    for name, why in no_form.items():
        summary["no_form"].setdefault(name, {})[mode] = why
    summary["provenance"] = provenance(model=model_name, model_fingerprint=fingerprint)
    write_json(path, summary)
    results = {name: record["scores"] for name, record in records.items()}
    return {"model": model_name, "model_fingerprint": fingerprint, "mode": mode, "results": results,
            "n": {name: record.get("n") for name, record in records.items()},
            "uncertainty": {name: record.get("uncertainty", {}) for name, record in records.items()},
            "skipped": dict(skipped), "no_form": dict(no_form), "summary_path": str(path)}
