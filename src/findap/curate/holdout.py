"""Which rows of a dataset that FinEval also scores may be used for training, and whether that agrees with FinEval.

The split itself lives in the neutral module `findap.splits`, shared by curate, eval and distill: a row whose
normalised input text hashes into the first `fraction` of [0, 1) is reserved for evaluation and never converted
into training data. Decontamination (decontam.py) is the safety net for anything that slips through.

FinEval's hash-carved tasks (carve.hash_key) score the buckets below carve.dev + carve.unseen, so curation and
distillation reserve enough only when curate.eval_holdout is at least that carve: `check_eval_holdout` fails
before any work when it is not, naming the tasks.
"""
from __future__ import annotations

from typing import Iterable

from findap.splits import holdout_bucket, reserved_for_eval, tatqa_report_text

# carve 0.1 + 0.2 sums to 0.30000000000000004 in floats; an eval_holdout of 0.3 is meant to cover it (a bucket falls
# into the 4e-17 gap practically never)
_SLACK = 1e-9
# distill.sources kinds that draw prompts from a dataset FinEval scores, by the dataset key they are split on
_DISTILL_KEYS = {"cfa": "cfa", "gsm8k": "gsm8k", "tatqa": "tatqa"}


def curated_holdout_keys(cfg) -> set[str]:
    """The dataset keys (findap.splits) of the curate sources the groups use, from the converters' declarations."""
    from findap.curate.sources import CONVERTERS

    used = {name for g in cfg.groups for name in cfg.group_sources(g.name)}
    keys = set()
    for source in cfg.sources:
        converter = CONVERTERS.get(source.converter_name)
        if source.name in used and converter is not None and converter.holdout_key is not None:
            keys.add(converter.holdout_key)
    return keys


def _scored_tasks(task_names: Iterable[str]) -> list:
    from findap.eval.registry import resolve

    specs = []
    for name in task_names:
        try:
            specs += resolve([name])
        except (KeyError, ValueError, OSError):
            continue  # an unknown task is the eval stage's error to report; it scores nothing here
    return specs


def holdout_conflicts(eval_holdout: float, datasets: Iterable[str] = (), tasks: Iterable[str] = ()) -> list:
    """The hash-carved FinEval task specs that score more of their dataset than `eval_holdout` reserves, by name:
    tasks on one of `datasets` (the keys a recipe trains on or draws prompts from) and the tasks (names, groups,
    YAML paths) in `tasks` (what a recipe's eval section scores)."""
    from findap.eval.registry import all_specs

    datasets = set(datasets)
    try:
        specs = all_specs()
    except ValueError as e:  # a broken task YAML ($FINDAP_TASKS): say why a recipe load reads task files at all
        raise ValueError(f"curate.eval_holdout cannot be checked against FinEval's task carves: {e}") from e
    candidates = [spec for spec in specs.values() if spec.carve.hash_key in datasets]
    candidates += _scored_tasks(tasks)
    found = {spec.name: spec for spec in candidates
             if spec.carve.hash_key is not None and eval_holdout + _SLACK < spec.carve.dev + spec.carve.unseen}
    return [found[name] for name in sorted(found)]


def check_eval_holdout(eval_holdout: float, datasets: Iterable[str] = (), tasks: Iterable[str] = ()) -> None:
    """Raise ValueError when a FinEval task (see holdout_conflicts) would score rows that curation or distillation
    uses: the buckets between eval_holdout and the task's dev + unseen."""
    conflicts = holdout_conflicts(eval_holdout, datasets, tasks)
    if not conflicts:
        return
    named = "; ".join(f"{spec.name} (dataset {spec.carve.hash_key}: carve dev {spec.carve.dev:g} + unseen "
                      f"{spec.carve.unseen:g} = {spec.carve.dev + spec.carve.unseen:g})" for spec in conflicts)
    needed = max(spec.carve.dev + spec.carve.unseen for spec in conflicts)
    raise ValueError(
        f"curate.eval_holdout is {eval_holdout:g}, smaller than the share FinEval scores of datasets this recipe "
        f"uses: {named}. Rows in between would be trained on (or distilled from) and then scored as held out. Set "
        f"curate.eval_holdout: {needed:g} (or more), or lower those tasks' carve.dev + carve.unseen.")


def check_recipe_holdout(recipe) -> None:
    """check_eval_holdout for a whole recipe: the datasets its curate sources and distill prompts come from, and
    the tasks its eval section scores (whichever stages run now: a later run of the same recipe uses them)."""
    datasets = curated_holdout_keys(recipe.curate)
    datasets |= {_DISTILL_KEYS[s.kind] for s in recipe.distill.sources if s.kind in _DISTILL_KEYS}
    check_eval_holdout(recipe.curate.eval_holdout, datasets, recipe.eval.tasks)


__all__ = ["check_eval_holdout", "check_recipe_holdout", "curated_holdout_keys", "holdout_bucket",
           "holdout_conflicts", "reserved_for_eval", "tatqa_report_text"]
