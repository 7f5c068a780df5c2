"""Accuracy parity with lm-evaluation-harness: findap's log-likelihood multiple-choice scoring vs lm-eval 0.4.13.

Same model, same items, same prompt strings, scored by both tools end to end:

- findap: `findap.eval.runner.evaluate` on the hf engine (the path `findap eval` takes: task spec -> docs ->
  `Task.mc_requests` -> packed `loglikelihood` -> findap's acc / acc_norm metrics).
- lm-eval: `lm_eval.simple_evaluate` on its HFLM with a task config written here: `dataset_path: json` over a
  JSONL of exactly the docs findap scored, `doc_to_text` = findap's `mc_context` turned into Jinja, the
  continuation delimiter taken from findap's `mc_continuation`, lm-eval's own acc / acc_norm.

Both sides render their prompts independently (str.format vs Jinja); the bench checks the (context, continuation)
strings lm-eval logged are exactly findap's, then prints per task: n, acc and acc_norm on each side with the
difference in points, the largest per-choice log-prob difference, and whether both metrics are within the
tolerance (0.5 point). It exits 1 when a task is outside it.

Tasks: ARC-Challenge, OpenBookQA, Social-IQA, Winogrande (hub-only: they need the Hugging Face cache, `--hf-home`;
without it they are listed as not on disk), MMLU finance subjects and FPB sentiment scored as label-word multiple
choice (" positive" / " neutral" / " negative"), plus the local ARC-Easy and PIQA sets. Every task scores all its
rows (no dev/unseen carve: parity needs no held-out split) in the task's seeded order, the first `--limit` of them.
fp32 by default: in bf16 the two tools' different batch layouts (findap packs the choices of a question into one
row, lm-eval pads one row per choice) round differently and near-tied items can flip.

    PYTHONPATH=src .venv/bin/python bench/eval_parity_lmeval.py                 # local tasks, <= 250 items each
    PYTHONPATH=src .venv/bin/python bench/eval_parity_lmeval.py --hf-home ~/.cache/huggingface --limit 0
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import string
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_mc_vs_lmeval import plain_model_dir  # noqa: E402  (same model directory fix-up as the speed bench)

NOT_ON_DISK = "not on disk (needs hub cache)"
FPB_CONTEXT = "{question}\nQuestion: is the sentiment of this financial news positive, neutral or negative?\nAnswer:"


# ------------------------------------------------------------------------------------------------------ tasks
@dataclass
class ParityTask:
    title: str
    build: Callable[[Path, Path], "object"]  # (data root, work dir) -> TaskSpec
    hub_only: bool = False


def _registry_spec(name: str):
    from findap.eval.registry import resolve

    [spec] = resolve([name])
    return spec


def score_every_row(spec):
    """The spec with every row scored (one seeded shuffle, no few-shot pool or dev part) and zero shots."""
    from findap.capabilities import SplitRole
    from findap.eval.task import CarveSpec

    carve = CarveSpec(train=0.0, dev=0.0, unseen=1.0, seed=spec.carve.seed)
    return spec.model_copy(update={"carve": carve, "few_shot": 0, "split_role": SplitRole.unseen})


def arc_challenge_spec(root: Path, work: Path):
    """findap's `arc` task (ARC-Easy locally) pointed at the hub's ARC-Challenge test split."""
    from findap.eval.task import SourceSpec

    arc = _registry_spec("arc")
    hub = SourceSpec(loader=arc.hub.loader, args={**arc.hub.args, "config": "ARC-Challenge"})
    return arc.model_copy(update={"name": "arc_challenge", "source": None, "hub": hub})


def fpb_label_words_spec(root: Path, work: Path):
    """FPB as label-word multiple choice: the rows findap's `fpb` task scores (its dev + unseen hash split, never
    the part curation trains on), each label word a choice, written as a generic-format JSONL."""
    from findap.eval.task import PromptSpec, SourceSpec, Task, TaskSpec

    fpb = Task(_registry_spec("fpb"), root=root)
    labels = fpb.spec.labels
    rows = [{"id": d["id"], "question": d["text"], "choices": labels, "answer": labels.index(d["gold"])}
            for role in ("dev", "unseen") for d in fpb.docs(role)]
    path = work / "fpb_label_words.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return TaskSpec(
        name="fpb_label_words", description="Financial PhraseBank scored as label-word multiple choice",
        source=SourceSpec(loader="jsonl", args={"path": str(path)}),
        capability="task", domain="finance", novelty="similar", answer_type="multiple_choice",
        prompt=PromptSpec(mc_context=FPB_CONTEXT, mc_continuation=" {choice}"), metrics=["acc", "acc_norm"],
    )


TASKS = {
    "arc_challenge": ParityTask("ARC-Challenge", arc_challenge_spec, hub_only=True),
    "openbookqa": ParityTask("OpenBookQA", lambda root, work: _registry_spec("openbookqa"), hub_only=True),
    "social_iqa": ParityTask("Social-IQA", lambda root, work: _registry_spec("social_iqa"), hub_only=True),
    "winogrande": ParityTask("Winogrande", lambda root, work: _registry_spec("winogrande"), hub_only=True),
    "mmlu_finance": ParityTask("MMLU finance", lambda root, work: _registry_spec("mmlu_finance")),
    "fpb_label_words": ParityTask("FPB (label words)", fpb_label_words_spec),
    "arc_easy": ParityTask("ARC-Easy (local)", lambda root, work: _registry_spec("arc")),
    "piqa": ParityTask("PIQA (local)", lambda root, work: _registry_spec("piqa")),
}


@dataclass
class Row:
    """One task's outcome. `status` is "ok" or why it did not run."""

    key: str
    title: str
    status: str = "ok"
    n: int = 0
    findap: dict = field(default_factory=dict)
    lmeval: dict = field(default_factory=dict)
    same_prompts: int = 0
    n_requests: int = 0
    max_logprob_diff: float = 0.0

    def gap(self, metric: str) -> float:
        return abs(self.findap[metric] - self.lmeval[metric]) * 100

    def within(self, tolerance: float) -> bool:
        return all(self.gap(m) <= tolerance for m in ("acc", "acc_norm"))


class Stopwatch:
    """Prints the wall and CPU seconds of a block. The machine is shared: CPU seconds are the steadier measure."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc):
        print(f"{self.name}: scored in {time.perf_counter() - self.wall:.0f} s wall, "
              f"{time.process_time() - self.cpu:.0f} CPU-s", flush=True)


# ----------------------------------------------------------------------------------------------- findap side
def load_tasks(keys: list[str], root: Path, work: Path, limit: int | None, hub_ready: bool):
    """(findap Task, its scored docs) per runnable key; rows for those that cannot run."""
    from findap.eval.task import Task

    loaded, skipped = {}, {}
    for key in keys:
        entry = TASKS[key]
        if entry.hub_only and not hub_ready:
            skipped[key] = Row(key, entry.title, status=NOT_ON_DISK)
            continue
        spec = score_every_row(entry.build(root, work))
        task = Task(spec, root=root, prefer="hub" if entry.hub_only else "local")
        try:
            docs = task.docs(limit=limit)
        except Exception as exc:  # hub cache without this dataset, or a missing local file
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}" if str(exc) else type(exc).__name__
            skipped[key] = Row(key, entry.title, status=(NOT_ON_DISK if entry.hub_only else "not on disk") +
                               f" [{reason}]")
            continue
        loaded[key] = (task, docs)
    return loaded, skipped


def run_findap(model: str, loaded: dict, limit: int | None, args, out_dir: Path) -> dict:
    """findap's scores and per-item samples through the real runner and hf engine."""
    from findap.engines import EngineSpec, make_engine
    from findap.eval.runner import evaluate, task_path

    engine = make_engine(EngineSpec(model=model, batch_size=args.batch_size, precision=args.precision,
                                    device="cpu"))
    with Stopwatch("findap"):
        evaluate(engine, [task for task, _ in loaded.values()], limit=limit, out_dir=out_dir, role="unseen",
                 model_name=model, progress=False)
    return {key: json.loads(task_path(out_dir, task.name, "direct").read_text(encoding="utf-8"))
            for key, (task, _) in loaded.items()}


# ---------------------------------------------------------------------------------------------- lm-eval side
def jinja_of(template: str) -> str:
    """findap's str.format template as the equivalent Jinja template (lm-eval renders `doc_to_text` with Jinja).
    Literal text is wrapped in raw blocks so braces in it stay text."""
    out = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if literal:
            out.append("{% raw %}" + literal + "{% endraw %}" if "{" in literal or "}" in literal else literal)
        if name is not None:
            if spec or conversion:
                raise ValueError(f"mc_context {template!r}: field {{{name}}} has a format spec; no Jinja equivalent")
            out.append("{{ " + name + " }}")
    return "".join(out)


def template_fields(template: str) -> set[str]:
    return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}


def continuation_delimiter(task) -> str:
    """lm-eval appends `target_delimiter + choice`; findap appends `mc_continuation` with {choice} filled in."""
    prefix, placeholder, suffix = task.spec.prompt.mc_continuation.partition("{choice}")
    if not placeholder or suffix or "{" in prefix:
        raise ValueError(f"task {task.name}: mc_continuation {task.spec.prompt.mc_continuation!r} is not "
                         "'<delimiter>{choice}', which lm-eval's target_delimiter cannot express")
    return prefix


def write_lmeval_task(task, docs: list[dict], folder: Path) -> str:
    """A JSONL of the docs findap scored (the fields its template reads, the choices, the gold index) and an
    lm-eval task YAML over it. Returns the lm-eval task name."""
    import yaml

    name = f"findap_parity_{task.name}"
    mc_context = task.spec.prompt.mc_context
    fields = template_fields(mc_context)
    data = folder / f"{name}.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for doc in docs:
            values = task.fields(doc)
            row = {"findap_id": doc["id"], "choices": list(doc["choices"]), "gold": int(doc["gold"])}
            row |= {k: values[k] for k in sorted(fields)}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": jinja_of(mc_context),
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "target_delimiter": continuation_delimiter(task),
        "num_fewshot": 0,
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")],
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                                         encoding="utf-8")
    return name


def run_lmeval(model_dir: str, loaded: dict, args, folder: Path) -> dict:
    """lm-eval's scores and logged samples for every loaded task, one simple_evaluate call."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    names = {key: write_lmeval_task(task, docs, folder) for key, (task, docs) in loaded.items()}
    dtype = "float32" if args.precision == "fp32" else "bfloat16"
    lm = HFLM(pretrained=model_dir, dtype=dtype, batch_size=args.batch_size, device="cpu")
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    with Stopwatch("lm-eval"):
        out = lm_eval.simple_evaluate(model=lm, tasks=list(names.values()), task_manager=manager,
                                      log_samples=True, bootstrap_iters=0, verbosity="ERROR")
    return {key: {"scores": out["results"][name], "samples": sorted(out["samples"][name], key=lambda s: s["doc_id"])}
            for key, name in names.items()}


def lmeval_metric(scores: dict, metric: str) -> float:
    """lm-eval keys its results `metric,filter` (`acc,none`)."""
    return float(scores.get(f"{metric},none", scores.get(metric)))


# ------------------------------------------------------------------------------------------------ comparison
def compare(key: str, title: str, ours: dict, theirs: dict) -> Row:
    """Scores side by side, the prompt strings each side scored, and the largest per-choice log-prob gap."""
    row = Row(key, title, n=ours["n"])
    row.findap = {m: float(ours["scores"][m]) for m in ("acc", "acc_norm")}
    row.lmeval = {m: lmeval_metric(theirs["scores"], m) for m in ("acc", "acc_norm")}
    if len(theirs["samples"]) != len(ours["samples"]):
        raise RuntimeError(f"{title}: findap scored {len(ours['samples'])} items, lm-eval {len(theirs['samples'])}")
    delimiter = None
    for mine, peer in zip(ours["samples"], theirs["samples"]):
        if peer["doc"]["findap_id"] != mine["id"]:
            raise RuntimeError(f"{title}: item order differs ({mine['id']} vs {peer['doc']['findap_id']})")
        pairs = [tuple(args) for args in peer["arguments"]]
        delimiter = pairs[0][1][: len(pairs[0][1]) - len(mine["choices"][0])] if delimiter is None else delimiter
        row.same_prompts += all(ctx == mine["prompt"] and cont == delimiter + choice
                                for (ctx, cont), choice in zip(pairs, mine["choices"]))
        for lp, resp in zip(mine["logprobs"], peer["filtered_resps"]):
            row.max_logprob_diff = max(row.max_logprob_diff, abs(lp - float(resp[0])))
        row.n_requests += len(pairs)
    return row


def print_table(rows: list[Row], tolerance: float) -> bool:
    """The side-by-side table; True when every task that ran is within `tolerance` points on acc and acc_norm."""
    head = (f"{'task':<19} {'n':>5} | {'acc findap':>10} {'lm-eval':>7} {'diff':>5} | {'acc_norm findap':>15} "
            f"{'lm-eval':>7} {'diff':>5} | {'same prompts':>12} {'max|dlp|':>8} | within {tolerance:g} pt")
    print(head)
    print("-" * len(head))
    ok = True
    for r in rows:
        if r.status != "ok":
            print(f"{r.title:<19} {'-':>5} | {r.status}")
            continue
        within = r.within(tolerance)
        ok &= within
        f, l = r.findap, r.lmeval
        print(f"{r.title:<19} {r.n:>5} | {f['acc'] * 100:>10.1f} {l['acc'] * 100:>7.1f} {r.gap('acc'):>5.2f} | "
              f"{f['acc_norm'] * 100:>15.1f} {l['acc_norm'] * 100:>7.1f} {r.gap('acc_norm'):>5.2f} | "
              f"{r.same_prompts:>5}/{r.n:<6} {r.max_logprob_diff:>8.1e} | {'yes' if within else 'NO'}")
    return ok


# ------------------------------------------------------------------------------------------------------- main
def hub_cache(args) -> Path | None:
    """The Hugging Face cache to read hub-only tasks from (offline), if one exists."""
    candidate = args.hf_home or os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    candidate = Path(candidate).expanduser()
    if (candidate / "hub").is_dir() or (candidate / "datasets").is_dir():
        return candidate
    return candidate if candidate.is_dir() and any(candidate.glob("datasets--*")) else None  # a bare hub cache


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from: {', '.join(TASKS)}")
    parser.add_argument("--limit", type=int, default=250,
                        help="first N items of each task in its seeded order (0: all; default 250: about "
                             "1,400 CPU-s, under ~20 minutes on 2 idle CPU cores)")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--tolerance", type=float, default=0.5, help="allowed |acc difference| in points")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="findap's data root for the local tasks (default $FINDAP_DATA or ../shared/data)")
    parser.add_argument("--hf-home", type=Path, default=None,
                        help="a Hugging Face cache (HF_HOME layout) holding the hub-only datasets; read offline")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--keep", type=Path, default=None, help="keep findap's task JSONs and lm-eval's configs here")
    args = parser.parse_args()
    keys = [k for k in args.tasks.split(",") if k]
    unknown = [k for k in keys if k not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {unknown}; known: {', '.join(TASKS)}")
    limit = args.limit or None

    # Offline by contract: hub datasets come from the cache or not at all (no network waits).
    hub = hub_cache(args)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's and datasets' progress bars would bury the table
    work = Path(tempfile.mkdtemp(prefix="findap-parity-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    if hub is not None:
        os.environ["HF_HUB_CACHE" if any(hub.glob("datasets--*")) else "HF_HOME"] = str(hub)
    else:  # lm-eval's json dataset builder caches its arrow copy; keep it out of the user's home
        os.environ.setdefault("HF_DATASETS_CACHE", str(work / "hf-datasets-cache"))

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from findap.eval.task import data_root
    from findap.models import resolve_model

    root = args.data_dir or data_root()
    model_dir = plain_model_dir(resolve_model(args.model))
    try:
        loaded, skipped = load_tasks(keys, root, work, limit, hub is not None)
        print(f"model {args.model} ({args.precision}, batch {args.batch_size}); data {root}; hub cache "
              f"{hub or 'none'}; {len(loaded)} tasks to score, limit {limit or 'none'}", flush=True)
        ours = run_findap(args.model, loaded, limit, args, work / "findap") if loaded else {}
        (work / "lmeval").mkdir(exist_ok=True)
        theirs = run_lmeval(model_dir, loaded, args, work / "lmeval") if loaded else {}
    finally:
        if Path(model_dir).name.startswith("findap-bench-model-"):
            shutil.rmtree(model_dir, ignore_errors=True)  # only links and a config: the weights stay
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    rows = [compare(k, TASKS[k].title, ours[k], theirs[k]) if k in loaded else skipped[k] for k in keys]
    print()
    ok = print_table(rows, args.tolerance)
    ran = [r for r in rows if r.status == "ok"]
    if not ran:
        print("\nno task scored: nothing was compared")
        return 2
    print(f"\n{len(ran)} of {len(rows)} tasks scored; "
          + ("every acc and acc_norm within tolerance" if ok else "SOME TASK IS OUTSIDE THE TOLERANCE"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
