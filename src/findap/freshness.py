"""Whether a finished stage is still current, as a build system decides it.

A stage's DONE records the fingerprints of everything it read (findap.provenance): its recipe section and the
run-wide settings that change its numbers, the models it loaded (by content), upstream outputs (curated
parquet files, preference pairs, evaluation results) and the data files it was pointed at. Before a stage is
skipped, the same fingerprints are taken again; any difference re-runs it, and since a re-run changes what the
stage writes, every stage that reads it sees a changed input in turn. A DONE without recorded inputs (written
before they were recorded) is kept, with a line saying so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from findap.provenance import digest_text, file_digest, model_fingerprint, tree_fingerprint

# run-wide recipe fields that change a stage's outputs (name, runs_dir and stages only place or order them)
_RUN_FIELDS = ("seed", "precision")
# what each stage takes from the recipe besides its own section
_ALSO_READS = {"distill": ["curate.eval_holdout"], "report": ["eval.task_sets"]}


def input_fingerprints(recipe, stage: str) -> dict[str, str | None]:
    """name -> fingerprint of each input of `stage` (None: not there yet, e.g. an upstream stage still to run)."""
    from findap.recipe import recipe_to_dict

    data = recipe_to_dict(recipe)
    settings = {"section": data.get(stage), **{f: data[f] for f in _RUN_FIELDS}}
    for dotted in _ALSO_READS.get(stage, []):
        section, key = dotted.split(".")
        settings[dotted] = data[section][key]
    found: dict[str, str | None] = {f"recipe.{stage}": digest_text(settings)}
    found.update(_READS[stage](recipe))
    return found


def _model(label: str, name: str | Path, *, written_by_run: bool = False) -> dict[str, str | None]:
    """A model's content fingerprint; None for a model an upstream stage of this run has not written yet."""
    if written_by_run and not (Path(name) / "config.json").exists():
        return {f"model {label}": None}
    return {f"model {label}": model_fingerprint(name)}


def _data(where: str, location: str | Path | None) -> dict[str, str | None]:
    if location is None or str(location).startswith(("hf:", "demo:")):
        return {}  # hub data is named by its id in the recipe section; demo data ships with the code
    path = Path(location).expanduser()
    fingerprint = file_digest(path)[:16] if path.is_file() else tree_fingerprint(path)
    return {f"data {where}": fingerprint}


def _curate(recipe) -> dict[str, str | None]:
    from findap.curate.sources import CONVERTERS, resolve_location

    found = _model("base", recipe.model)  # the default judge is the base model
    for spec in recipe.curate.sources:
        converter = CONVERTERS.get(spec.converter_name)
        if converter is not None and (spec.path or converter.default_path):
            found |= _data(f"curate.sources[{spec.name}]", resolve_location(spec, converter, recipe.data_dir.path))
    return found


def curated_outputs(curate_dir: Path) -> str | None:
    """The curate stage's outputs as train reads them: every group's parquet files and the manifest."""
    if not (Path(curate_dir) / "manifest.json").exists():
        return None
    return digest_text(tree_fingerprint(curate_dir, "*/*.parquet"), file_digest(Path(curate_dir) / "manifest.json"))


def _train(recipe) -> dict[str, str | None]:
    found = _model("base", recipe.model)
    if "curate" in recipe.stages:
        found["curate outputs"] = curated_outputs(recipe.run_dir / "curate")
    for group in recipe.train.groups:
        for kind in ("train", "dev"):
            for i, f in enumerate(getattr(group, kind)):
                found |= _data(f"train.groups[{group.name}].{kind}[{i}]", f)
    return found


def _policy(recipe) -> dict[str, str | None]:
    """The model distill samples from and align starts from: stage 1's when the recipe trains, else the base."""
    if "train" in recipe.stages:
        return _model("policy", recipe.run_dir / "train" / "model", written_by_run=True)
    return _model("policy", recipe.model)


def _distill(recipe) -> dict[str, str | None]:
    found = _policy(recipe)
    for s in recipe.distill.sources:
        found |= _data(f"distill.sources[{s.kind}]", recipe.data_dir.resolve(s.path) if s.path else None)
    return found


def _align(recipe) -> dict[str, str | None]:
    found = _model("policy", recipe.align.model) if recipe.align.model else _policy(recipe)
    if recipe.align.pairs:
        found |= _data("align.pairs", recipe.align.pairs)
        found |= _data("align.dev_pairs", recipe.align.dev_pairs)
    else:
        distill = recipe.run_dir / "distill"
        found["distill outputs"] = (tree_fingerprint(distill, "*pairs.jsonl")
                                    if (distill / "pairs.jsonl").exists() else None)
    return found


def _eval(recipe) -> dict[str, str | None]:
    found = _model("base", recipe.model) if "base" in recipe.eval.include else {}
    for label, stage in (("cpt_it", "train"), ("pa", "align")):
        if stage in recipe.stages and label in recipe.eval.include:
            found |= _model(label, recipe.run_dir / stage / "model", written_by_run=True)
    for label, name in recipe.eval.models.items():
        found |= _model(label, name)
    return found


def _report(recipe) -> dict[str, str | None]:
    eval_dir = recipe.run_dir / "eval"
    return {"eval outputs": tree_fingerprint(eval_dir, "*/*.json") if eval_dir.is_dir() else None}


_READS = {"curate": _curate, "train": _train, "distill": _distill, "align": _align, "eval": _eval,
          "report": _report}


def changed_inputs(recorded: dict[str, Any] | None, current: dict[str, Any]) -> list[str] | None:
    """Names of the inputs that differ from those a DONE recorded (None: the DONE recorded none)."""
    if recorded is None:
        return None
    return sorted(k for k in recorded.keys() | current.keys() if recorded.get(k) != current.get(k))


def describe_change(stage: str, changed: list[str]) -> str:
    """One line: why a finished stage runs again."""
    what = ", ".join(_reads_as(name) for name in changed)
    return f"{stage}: {what} changed since it ran, re-running"


def _reads_as(name: str) -> str:
    if name.startswith("recipe."):
        return f"the recipe's {name.removeprefix('recipe.')} section (or its seed/precision)"
    return name
