"""`findap sweep`: several recipes (an ablation suite) run on ONE curation, with one side-by-side report.

    sweep dir (runs/<sweep>/)
      sweep.json          what ran: recipes, the curation used, budgets, labels
      <recipe A>/curate   the shared curation (the first recipe's curate stage, or --curation RUN_DIR)
      <recipe A>/train, eval, ...          <recipe B>/train, eval, ...   (B's train reads A's curate files)
      report/             one report over every recipe's models, labelled <recipe>/<model>, deltas vs `base`

Every recipe runs through the pipeline (`findap.pipeline.run_recipe`: a stage with DONE is skipped), so a killed
sweep resumes where it stopped. The shared curation is referenced by path (each train group's files), never
copied. The base model (the same for every recipe) is evaluated once, by the first recipe with an eval stage;
the others evaluate only their own models. Stage-1 token budgets are tabled before anything runs, with a warning
when they differ by more than 10% (an ablation compares equal budgets).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from findap.io import write_json, write_text
from findap.recipe import (
    Recipe, RecipeError, apply_overrides, deep_merge, format_validation_error, load_recipe, recipe_to_dict,
)
from findap.runs import read_done

console = Console(stderr=True)

BUDGET_TOLERANCE = 0.10  # stage-1 budgets further apart than this (relative to the reference) are warned about
EVAL_FIELDS_PER_RECIPE = ("include", "models")  # eval fields a recipe may set for itself; the rest must agree
OWN_MODELS = {"cpt_it": ("train", "train"), "pa": ("align", "align")}  # label -> (stage, its model folder's stage)


class SweepError(ValueError):
    """A sweep that cannot run as asked: the message names the recipe file and the field."""


# ---- loading ------------------------------------------------------------------------------------------------------
def recipe_files(paths: Sequence[str | Path]) -> list[Path]:
    """The recipe files of the sweep, in order: each directory contributes its *.yaml files, sorted by name."""
    files: list[Path] = []
    for p in map(Path, paths):
        found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]
        if not found:
            raise SweepError(f"{p}: no recipe files (*.yaml) in this directory")
        files += [f for f in found if f.resolve() not in {g.resolve() for g in files}]
    if not files:
        raise SweepError("no recipes given")
    return files


def load_sweep_recipe(path: Path, base_recipe: Path | None, overrides: Sequence[str]) -> Recipe:
    """One recipe of the sweep, with its `base:` replaced by `base_recipe` when one is given (so a suite of
    ablation files, each stating only what it changes, can run on top of any main recipe)."""
    if base_recipe is None:
        return load_recipe(path, overrides)
    own = _read_yaml(path)
    own.pop("base", None)
    own.setdefault("name", path.stem)
    data = deep_merge(recipe_to_dict(load_recipe(base_recipe)), own)
    data = apply_overrides(data, overrides)
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, f"{path} (on --base-recipe {base_recipe})")) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise RecipeError(f"{path}{f':{mark.line + 1}' if mark else ''}: invalid YAML: {getattr(e, 'problem', e)}")
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping, got {type(data).__name__}")
    return data


# ---- consistency checks -------------------------------------------------------------------------------------------
def differences(a: Any, b: Any, path: str) -> list[tuple[str, Any, Any]]:
    """(field path, a's value, b's value) for every leaf where two recipe sections (as plain data) differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in [*a, *(k for k in b if k not in a)]:
            out += differences(a.get(key), b.get(key), f"{path}.{key}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}.{i}")]
    return [] if a == b else [(path, a, b)]


def _mismatch(file: Path, diffs: list[tuple[str, Any, Any]], reference: str, why: str) -> SweepError:
    shown = [f"  {p}: {b!r} here, {a!r} in {reference}" for p, a, b in diffs[:8]]
    more = [f"  ... and {len(diffs) - 8} more"] if len(diffs) > 8 else []
    return SweepError("\n".join([f"{file}: {why}", *shown, *more]))


def check_same_base_model(members: list["Member"]) -> None:
    first = members[0]
    for m in members[1:]:
        if m.recipe.model != first.recipe.model:
            raise _mismatch(m.file, [("model", first.recipe.model, m.recipe.model)], str(first.file),
                            "every recipe of a sweep starts from the same base model (it is evaluated once)")


def check_same_eval(members: list["Member"]) -> None:
    """Every recipe scores the same tasks, items and settings: the one base evaluation and the paired deltas
    compare item by item."""
    def shared(m: Member) -> dict:
        return {k: v for k, v in recipe_to_dict(m.recipe)["eval"].items() if k not in EVAL_FIELDS_PER_RECIPE}

    first = members[0]
    for m in members[1:]:
        diffs = differences(shared(first), shared(m), "eval")
        if diffs:
            raise _mismatch(m.file, diffs, str(first.file), "eval settings differ (only eval.include and "
                            "eval.models may differ: the base model is evaluated once, for every recipe)")


def check_same_curation(members: list["Member"], reference: dict, reference_name: str) -> None:
    for m in members:
        diffs = differences(reference, recipe_to_dict(m.recipe)["curate"], "curate")
        if diffs:
            raise _mismatch(m.file, diffs, reference_name, "its curate section differs from the shared curation's "
                            "(make them identical, or run with --no-shared-curation)")


def curation_of_run(path: Path) -> tuple[Path, dict, str]:
    """A finished curation given with --curation (a run directory or its curate/ folder): (curate dir, the curate
    section it ran with, its base model), from the config.yaml the stage saved."""
    curate_dir = path if path.name == "curate" else path / "curate"
    if read_done(curate_dir) is None:
        raise SweepError(f"--curation {path}: {curate_dir / 'DONE'} does not exist (not a finished curate stage)")
    config_file = curate_dir / "config.yaml"
    if not config_file.exists():
        raise SweepError(f"--curation {path}: {config_file} is missing: cannot tell which curate section made it")
    config = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
    if not isinstance(config.get("curate"), dict):
        raise SweepError(f"{config_file}: no curate section")
    return curate_dir, config["curate"], str(config.get("model", ""))


# ---- the plan -----------------------------------------------------------------------------------------------------
@dataclass
class Member:
    """One recipe of the sweep: the file, the recipe as written (+ --set), and the recipe as the sweep runs it."""

    file: Path
    recipe: Recipe
    labels: dict[str, str] = field(default_factory=dict)  # report label -> model (path or name)
    run: Recipe | None = None  # filled by plan_sweep


@dataclass
class Sweep:
    members: list[Member]
    out: Path
    shared: bool
    curate_dir: Path | None  # the shared curation's folder (None: each recipe curates for itself)
    curation_owner: Member | None  # the member whose curate stage makes it (None: given with --curation)
    base_label: str | None  # "base" when some recipe evaluates the base model

    @property
    def name(self) -> str:
        return self.out.name


def plan_sweep(paths: Sequence[str | Path], *, shared_curation: bool = True, base_recipe: Path | None = None,
               overrides: Sequence[str] = (), curation: Path | None = None, out: Path | None = None) -> Sweep:
    """Load and check every recipe and decide how each runs; nothing is started. Raises SweepError/RecipeError."""
    files = recipe_files(paths)
    members = [Member(f, load_sweep_recipe(f, base_recipe, overrides)) for f in files]
    _check_names(members)
    check_same_base_model(members)
    check_same_eval(members)
    out = Path(out) if out is not None else Path(members[0].recipe.runs_dir) / _default_name(paths)
    if curation is not None and not shared_curation:
        raise SweepError("--curation gives the one curation every recipe shares: drop --no-shared-curation")
    owner, curate_dir = None, None
    if curation is not None:
        curate_dir, section, model = curation_of_run(Path(curation))
        check_same_curation(members, section, str(curate_dir / "config.yaml"))
        if model and model != members[0].recipe.model:
            raise SweepError(f"--curation {curation}: made for model {model!r} (its token counts), the recipes use "
                             f"{members[0].recipe.model!r}")
    elif shared_curation:
        owner = next((m for m in members if "curate" in m.recipe.stages and m.recipe.curate.enabled), None)
        if owner is None:
            raise SweepError("--shared-curation: no recipe has a curate stage to share (give --curation RUN_DIR)")
        check_same_curation(members, recipe_to_dict(owner.recipe)["curate"], str(owner.file))
        curate_dir = out / owner.recipe.name / "curate"
    base_by = _base_evaluator(members)
    for m in members:
        m.labels = _labels(m, out, with_base=m is base_by)
        m.run = _as_run(m, out, curate_dir if curate_dir is not None and m is not owner else None)
    return Sweep(members, out, shared_curation, curate_dir, owner, "base" if base_by is not None else None)


def _default_name(paths: Sequence[str | Path]) -> str:
    dirs = [Path(p) for p in paths if Path(p).is_dir()]
    return dirs[0].resolve().name if len(paths) == 1 and dirs else "sweep"


def _check_names(members: list[Member]) -> None:
    seen: dict[str, Path] = {}
    for m in members:
        if m.recipe.name in seen:
            raise SweepError(f"{m.file}: name {m.recipe.name!r} is also {seen[m.recipe.name]}'s: the recipes of a "
                             "sweep need distinct names (they label the models in the report)")
        seen[m.recipe.name] = m.file


def _evaluates(recipe: Recipe) -> bool:
    return "eval" in recipe.stages and recipe.eval.enabled


def _base_evaluator(members: list[Member]) -> Member | None:
    return next((m for m in members if _evaluates(m.recipe) and "base" in m.recipe.eval.include), None)


def _trains(recipe: Recipe, stage: str) -> bool:
    return stage in recipe.stages and getattr(recipe, stage).enabled


def _labels(m: Member, out: Path, *, with_base: bool) -> dict[str, str]:
    """What this recipe's eval stage scores, by report label: `<recipe>/cpt_it`, `<recipe>/pa` (its own models,
    as eval.include selects), its eval.models under `<recipe>/...`, and `base` only for the base evaluator."""
    r = m.recipe
    if not _evaluates(r):
        return {}
    labels = {"base": r.model} if with_base else {}
    for label, (stage, folder) in OWN_MODELS.items():
        if label in r.eval.include and _trains(r, stage):
            labels[f"{r.name}/{label}"] = str(out / r.name / folder / "model")
    labels.update({f"{r.name}/{label}": model for label, model in r.eval.models.items()})
    return labels


def _as_run(m: Member, out: Path, shared_curate: Path | None) -> Recipe:
    """The recipe as the sweep runs it: under the sweep directory, its eval stage scoring exactly `m.labels`
    (eval.include emptied: the labels name every model), no report stage of its own (the sweep writes one over all
    recipes), and, when it shares another's curation, no curate stage of its own: its train groups read that
    curation's files (referenced by path; dev files are added once the curation exists)."""
    data = recipe_to_dict(m.recipe)
    data["runs_dir"] = str(out)
    data["stages"] = [s for s in data["stages"] if s != "report"]
    data["eval"]["include"], data["eval"]["models"] = [], dict(m.labels)
    if shared_curate is not None:
        data["stages"] = [s for s in data["stages"] if s != "curate"]
        for group in data["train"]["groups"]:
            if not group["train"]:  # explicit files stay as the recipe lists them
                group["train"] = [str(shared_curate / group["name"] / "train.parquet")]
                dev = shared_curate / group["name"] / "dev.parquet"
                if not group["dev"] and dev.exists():
                    group["dev"] = [str(dev)]
    return Recipe.model_validate(data)


# ---- stage-1 token budgets ----------------------------------------------------------------------------------------
@dataclass
class Budget:
    """A recipe's planned stage-1 tokens: per phase min(epochs x curated tokens of its kinds, max_steps x
    tokens_per_step); None where neither is known yet (epochs only, curation not yet run)."""

    recipe: str
    plan: str  # how the budget is set, group by group
    tokens: float | None
    reference_ratio: float | None = None  # tokens / the reference recipe's tokens

    @property
    def off(self) -> bool:
        return self.reference_ratio is not None and abs(self.reference_ratio - 1) > BUDGET_TOLERANCE


def curated_tokens(curate_dir: Path | None) -> dict[str, dict[str, int]] | None:
    """group -> kind -> curated training tokens, from the curation's manifest (None before it exists)."""
    manifest = None if curate_dir is None else Path(curate_dir) / "manifest.json"
    if manifest is None or not manifest.exists():
        return None
    groups = json.loads(manifest.read_text(encoding="utf-8")).get("groups") or {}
    return {name: dict((g.get("train") or {}).get("tokens_by_kind") or {}) for name, g in groups.items()}


def stage1_budget(recipe: Recipe, tokens: dict[str, dict[str, int]] | None) -> Budget:
    cfg = recipe.train
    if not _trains(recipe, "train"):
        return Budget(recipe.name, "no stage 1", 0.0)
    total, parts = 0.0, []
    for group in cfg.groups:
        knobs = cfg.group_knobs(group)
        phases = [tuple(cfg.kinds)] if cfg.mode == "joint" else [(k,) for k in ("cpt", "it") if k in cfg.kinds]
        by_kind = None if tokens is None or group.train else tokens.get(group.name)
        for kinds in phases:
            cap = knobs["max_steps"] * cfg.tokens_per_step if knobs["max_steps"] else None
            data = None if by_kind is None else knobs["epochs"] * sum(by_kind.get(k, 0) for k in kinds)
            known = [v for v in (cap, data) if v is not None]
            total = None if total is None or not known else total + min(known)
        steps = f", max_steps {knobs['max_steps']}" if knobs["max_steps"] else ""
        parts.append(f"{group.name}: {knobs['epochs']:g} ep{steps}")
    plan = f"{cfg.mode} {'+'.join(cfg.kinds)}, {cfg.finetune}, {cfg.tokens_per_step} tok/step; " + "; ".join(parts)
    return Budget(recipe.name, plan, total)


def budgets(sweep: Sweep) -> list[Budget]:
    """Every recipe's budget, compared with the first recipe that trains."""
    shared = curated_tokens(sweep.curate_dir)
    found = []
    for m in sweep.members:
        own = shared if sweep.curate_dir is not None else curated_tokens(sweep.out / m.recipe.name / "curate")
        found.append(stage1_budget(m.recipe, own))
    reference = next((b.tokens for b in found if b.tokens), None)
    for b in found:
        if reference and b.tokens is not None and b.plan != "no stage 1":
            b.reference_ratio = b.tokens / reference
    return found


def budget_table(found: list[Budget]) -> Table:
    table = Table(title="stage-1 token budgets (planned: epochs x curated tokens, capped at max_steps x "
                        "tokens_per_step)")
    for col, justify in (("recipe", "left"), ("tokens", "right"), ("vs first", "right"), ("plan", "left")):
        table.add_column(col, justify=justify)
    for b in found:
        tokens = "pending curation" if b.tokens is None else f"{b.tokens:,.0f}"
        ratio = "" if b.reference_ratio is None else f"{b.reference_ratio:.2f}x"
        table.add_row(b.recipe, tokens, f"[bold red]{ratio}[/]" if b.off else ratio, b.plan)
    return table


def budget_warning(found: list[Budget]) -> str | None:
    off = [b for b in found if b.off]
    if not off:
        return None
    listed = ", ".join(f"{b.recipe} {b.tokens:,.0f} ({b.reference_ratio:.2f}x)" for b in off)
    return (f"WARNING: stage-1 token budgets differ by more than {BUDGET_TOLERANCE:.0%} from the first recipe's: "
            f"{listed}. An ablation compares equal budgets: set max_steps (or epochs) per group, e.g. "
            "--set 'train.groups.*.max_steps=N'")


def print_budgets(found: list[Budget]) -> None:
    console.print(budget_table(found))
    warning = budget_warning(found)
    if warning:
        console.print(warning, style="bold yellow", markup=False, soft_wrap=True)


# ---- dry run and run ----------------------------------------------------------------------------------------------
def describe(sweep: Sweep) -> list[str]:
    """What the sweep would do, one line per recipe (after the pipeline's own preflight of each)."""
    from findap.pipeline import preflight

    curation = ("each recipe curates for itself" if sweep.curate_dir is None else
                f"shared: {sweep.curate_dir} (" + (f"made by {sweep.curation_owner.recipe.name}'s curate stage"
                                                   if sweep.curation_owner else "given with --curation") + ")")
    lines = [f"sweep {sweep.name!r}: {len(sweep.members)} recipes -> {sweep.out}", f"curation: {curation}",
             f"base model {sweep.members[0].recipe.model!r}: " + ("evaluated once, as `base`" if sweep.base_label
                                                                 else "not evaluated")]
    for m in sweep.members:
        lines.append(f"{m.recipe.name} ({m.file}): stages {', '.join(m.run.stages)}; models "
                     f"{', '.join(m.labels) or '(no eval)'}")
        for stage in m.run.stages:  # its train files are checked once the shared curation has written them
            lines += [f"    train: reads {sweep.curate_dir} (pending: the shared curation runs first)"] if (
                stage == "train" and _curation_pending(sweep, m)) else [f"    {s}" for s in preflight(m.run, [stage])]
    lines.append(f"report: {sweep.out / 'report'} (every recipe's models side by side)")
    return lines


def _curation_pending(sweep: Sweep, m: Member) -> bool:
    return sweep.curate_dir is not None and m is not sweep.curation_owner and read_done(sweep.curate_dir) is None


def run_sweep(sweep: Sweep, *, isolate: bool = True) -> dict:
    """Run every recipe (finished stages skipped), then write the combined report; returns the sweep record."""
    from findap.pipeline import run_recipe

    started = time.time()
    write_record(sweep, "running")
    print_budgets(budgets(sweep))
    if sweep.curation_owner is not None:  # the shared curation first: every other recipe reads it
        run_recipe(sweep.curation_owner.run, only=["curate"], isolate=isolate)
        print_budgets(budgets(sweep))  # now with the curated token counts
    for m in sweep.members:
        if sweep.curate_dir is not None and m is not sweep.curation_owner:
            m.run = _as_run(m, sweep.out, sweep.curate_dir)  # the shared dev files exist now
        console.rule(f"[bold]sweep: {m.recipe.name}")
        run_recipe(m.run, isolate=isolate)
    report = write_report(sweep)
    record = write_record(sweep, "done", report=report, wall_s=round(time.time() - started, 1))
    print_outcome(sweep)
    return record


def write_report(sweep: Sweep) -> dict:
    from findap.report.build import build_report

    inputs = [m.run.run_dir for m in sweep.members if m.run.run_dir.exists()]
    if sweep.curate_dir is not None and sweep.curation_owner is None:
        inputs.append(sweep.curate_dir)  # a curation given with --curation: its costs and decontamination note
    return build_report(inputs, sweep.out / "report", base=sweep.base_label, title=f"findap sweep: {sweep.name}")


def write_record(sweep: Sweep, status: str, **extra: Any) -> dict:
    """sweep.json: which recipes, which curation, which labels and budgets; rewritten as the sweep goes."""
    record = {
        "sweep": sweep.name, "status": status, "shared_curation": sweep.shared,
        "curation": None if sweep.curate_dir is None else {
            "dir": str(sweep.curate_dir), "made_by": sweep.curation_owner.recipe.name if sweep.curation_owner
            else "--curation", "done": read_done(sweep.curate_dir) is not None},
        "base_model": sweep.members[0].recipe.model, "base_label": sweep.base_label,
        "recipes": [{"name": m.recipe.name, "file": str(m.file), "run_dir": str(m.run.run_dir),
                     "stages": list(m.run.stages), "models": m.labels,
                     "trained_tokens": (read_done(m.run.run_dir / "train") or {}).get("tokens")}
                    for m in sweep.members],
        "budgets": [asdict(b) for b in budgets(sweep)],
        **extra,
    }
    write_json(sweep.out / "sweep.json", record)
    write_text(sweep.out / "sweep.md", _record_markdown(record))
    return record


def _record_markdown(record: dict) -> str:
    lines = [f"# findap sweep: {record['sweep']} ({record['status']})", ""]
    cur = record["curation"]
    lines.append(f"Curation: {'each recipe its own' if cur is None else cur['dir'] + ' (by ' + cur['made_by'] + ')'}."
                 f" Base model `{record['base_model']}`, evaluated once as `{record['base_label']}`.")
    lines += ["", "| recipe | models | planned stage-1 tokens | trained tokens |", "|---|---|---:|---:|"]
    planned = {b["recipe"]: b["tokens"] for b in record["budgets"]}
    for r in record["recipes"]:
        p, t = planned.get(r["name"]), r["trained_tokens"]
        lines.append(f"| {r['name']} | {', '.join(r['models'])} | {'–' if p is None else f'{p:,.0f}'} | "
                     f"{'–' if t is None else f'{t:,.0f}'} |")
    if record.get("report"):
        lines += ["", f"Report: {record['report']['markdown']}"]
    return "\n".join(lines) + "\n"


def print_outcome(sweep: Sweep) -> None:
    table = Table(title=f"findap sweep {sweep.name}")
    for col in ("recipe", "models", "stage-1 tokens", "wall s"):
        table.add_column(col)
    for m in sweep.members:
        dones = [read_done(m.run.run_dir / s) or {} for s in m.run.stages]
        tokens = (read_done(m.run.run_dir / "train") or {}).get("tokens")
        wall = sum(d.get("wall_s", 0) for d in dones)
        table.add_row(m.recipe.name, ", ".join(m.labels), "-" if tokens is None else f"{tokens:,}",
                      f"{wall:.0f}" if math.isfinite(wall) else "-")
    console.print(table)
    console.print(f"report: {sweep.out / 'report' / 'report.md'} and report.html")


__all__ = ["Sweep", "SweepError", "Member", "Budget", "plan_sweep", "run_sweep", "describe", "budgets",
           "print_budgets", "stage1_budget", "differences"]
