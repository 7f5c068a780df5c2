"""Trained, similar or novel: how a FinEval task relates to what a run's recipe actually trained on.

The paper (Ke et al. 2025) reports "similar" tasks (task types seen in training, datasets unseen) apart from
"novel" ones (task types never trained). A task YAML's `novelty` tag is one fixed guess for every recipe, and it is
wrong for a recipe that trains on the task's own dataset (German credit is tagged novel; the real-data recipe
curates the UCI file it is scored on). So the report decides per run, from its curation manifest:

    trained  a curated source the run trained on is the task's own dataset (its held-out rows are scored):
             - the source's converter declares `holdout_key` equal to the task's `carve.hash_key` (findap.splits:
               both sides split that dataset by the same hash), or
             - the source's location is the task's local data: `demo:<set>` and a task reading demo set <set>;
               a file or folder in the task's dataset folder under the curation's data root (a file's dataset
               folder is the folder holding it, a folder's is itself; one must equal or contain the other:
               `credit/german.data` and `credit/german.data`, `ectsum/train` and `ectsum`); or `hf:<id>[:<config>]`
               and a task whose hub source reads the same id and config.
    similar  not trained, and the task's type is the type of a curated instruction (IT) source the run trained
             on. A type is (capability, domain, answer_type, label set): the label set is the classification
             labels, lower-cased and unordered, and empty for every other answer type, so FiQA-SA (positive,
             neutral, negative) is similar to FPB and stock movement (rise, fall) is not. An IT source's types are
             those of the FinEval tasks on its dataset (the rule above); a source on no task's dataset
             (self_instruct, promptsource: many task types mixed) has no type and makes no task similar.
    novel    neither.

"Trained on": a source with documents in the `train` mixture of a curriculum group the run's train stage reads
(`train.groups` in <run>/train/config.yaml; every group when the run has no train config yet), of a kind it
trains on (`train.kinds`: an IT-only run never saw its curation's CPT text). A CPT source on the task's dataset
(ECTSum transcripts) makes the task trained too: the model read that dataset. The curation is
<run>/curate/manifest.json, or the shared one the run's train groups read (`findap sweep --shared-curation`).
A run with no readable manifest (an eval-only folder, a run without a curate stage) keeps the YAML tags, and the
report says so.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePath
from typing import Iterable, Sequence

RELATIONS = ("trained", "similar", "novel")
# hub loaders whose dataset id is implied rather than given in their arguments
_HUB_DATASETS = {"fineval_hub": "Salesforce/FinEval", "mathqa_hub": "allenai/math_qa"}


@dataclass(frozen=True)
class CuratedSource:
    """A curation source the run trained on: its recipe name, converter, example kind, where it was read from
    (as the manifest records it: a path, `demo:<set>` or `hf:<id>`), the curation's data root and its training
    tokens in the largest group that holds it."""

    name: str
    converter: str
    kind: str
    location: str | None = None
    data_root: str | None = None
    tokens: int = 0
    holdout_key: str | None = None


@dataclass(frozen=True)
class Relation:
    """`relation` (trained, similar, novel) and why; `derived` False when it is the task YAML's tag."""

    relation: str
    reason: str
    derived: bool = True

    def text(self) -> str:
        return f"{self.relation}: {self.reason}"


@dataclass
class Curation:
    """What a run's curation gives the relations: its sources (None when there is no readable manifest, with
    `why`), the manifest read and the IT sources that carry no FinEval task type."""

    run: str
    sources: list[CuratedSource] | None
    manifest: str | None = None
    why: str = ""
    untyped: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"run": self.run, "manifest": self.manifest, "derived": self.sources is not None, "why": self.why,
                "sources": [s.name for s in self.sources or []], "untyped_it_sources": self.untyped,
                "tokens": {s.name: s.tokens for s in self.sources or []}}


# ---- task types and datasets -----------------------------------------------------------------------------------


def _spec(task_spec):
    from findap.eval.task import TaskSpec

    return task_spec if isinstance(task_spec, TaskSpec) else TaskSpec.model_validate(task_spec)


def task_type(task_spec) -> tuple:
    """(capability, domain, answer_type, label set): what "the same task type" compares."""
    spec = _spec(task_spec)
    labels = frozenset(str(x).strip().lower() for x in spec.labels) if spec.answer_type == "classification" \
        else frozenset()
    return spec.capability.value, spec.domain.value, spec.answer_type, labels


def type_text(kind: tuple) -> str:
    capability, domain, answer_type, labels = kind
    return f"{capability} / {domain} / {answer_type}" + (f": {', '.join(sorted(labels))}" if labels else "")


def _dataset_folder(parts: Sequence[str]) -> tuple[str, ...]:
    """A file's folder, a folder itself (a last part with a suffix such as `.data` or `.json` is a file)."""
    parts = tuple(p for p in parts if p not in ("", "."))
    return parts[:-1] if parts and PurePath(parts[-1]).suffix else parts


def _relative_parts(location: str, data_root: str | None) -> tuple[tuple[str, ...], bool]:
    """The location's parts below the data root (True), else all of them (False)."""
    parts = PurePath(location).parts
    if data_root:
        root = tuple(p for p in PurePath(data_root).parts if p != ".")
        trimmed = tuple(p for p in parts if p != ".")
        if root and trimmed[:len(root)] == root:
            return trimmed[len(root):], True
    return tuple(parts), False


def _hub_id(location: str) -> tuple[str, str | None]:
    spec = location[3:].partition("@")[0]
    name, _, config = spec.partition(":")
    return name.lower(), config or None


def same_dataset(task_spec, source: CuratedSource) -> str | None:
    """Why `source` is the task's own dataset (e.g. `dataset key fpb`), or None when it is not."""
    spec = _spec(task_spec)
    if source.holdout_key is not None and source.holdout_key == spec.carve.hash_key:
        return f"dataset key {source.holdout_key}"
    location = source.location or ""
    local = spec.source
    if location.startswith("demo:"):
        wanted = location[len("demo:"):]
        if local is not None and local.loader == "demo" and local.args.get("name") == wanted:
            return f"demo set {wanted}"
        return None
    if location.startswith("hf:"):
        hub = spec.hub
        if hub is None:
            return None
        dataset = hub.args.get("dataset") or _HUB_DATASETS.get(hub.loader)
        if dataset is not None and (str(dataset).lower(), hub.args.get("config")) == _hub_id(location):
            return location
        return None
    if not location or local is None or not isinstance(local.args.get("path"), str):
        return None
    task_folder = _dataset_folder(PurePath(local.args["path"]).parts)
    parts, under_root = _relative_parts(location, source.data_root)
    folder = _dataset_folder(parts)
    if not task_folder or not folder:
        return None
    if under_root:
        n = min(len(folder), len(task_folder))
        found = folder[:n] == task_folder[:n]
    else:  # a location outside the data root: its dataset folder (or that folder's parent) ends with the task's
        k = len(task_folder)
        found = folder[-k:] == task_folder or folder[:-1][-k:] == task_folder
    return f"{'/'.join(parts if under_root else parts[-3:])} in dataset folder {'/'.join(task_folder)}" \
        if found else None


def source_types(source: CuratedSource, specs: Iterable) -> set[tuple]:
    """The task types an IT source teaches: those of the FinEval tasks on its dataset (none for CPT text)."""
    if source.kind != "it":
        return set()
    return {task_type(spec) for spec in specs if same_dataset(spec, source)}


def task_relation(task_spec, curated_sources: Sequence[CuratedSource] | None, specs: Iterable | None = None,
                  why_not: str = "no curation manifest") -> Relation:
    """trained, similar or novel (module docstring) with a short reason; the YAML's tag, said so, when there is no
    curation (`curated_sources` None; `why_not` says why). `specs`: the task specs that give the IT sources their
    types (default: every registered task plus this one)."""
    spec = _spec(task_spec)
    tag = spec.novelty.value
    if curated_sources is None:
        return Relation(tag, f"YAML tag ({why_not})", derived=False)
    if specs is None:
        from findap.eval.registry import all_specs

        specs = [*all_specs().values(), spec]
    specs = list(specs)
    for source in curated_sources:
        why = same_dataset(spec, source)
        if why:
            what = "" if source.kind == "it" else f"{source.kind} text, "
            return Relation("trained", f"curated source {source.name} ({what}{why}){_yaml_note(tag, 'trained')}")
    kind = task_type(spec)
    teaching = [s.name for s in curated_sources if kind in source_types(s, specs)]
    if teaching:
        return Relation("similar", f"task type of curated {', '.join(teaching)} ({type_text(kind)})"
                                   f"{_yaml_note(tag, 'similar')}")
    return Relation("novel", f"no curated source of its dataset or task type ({type_text(kind)})"
                             f"{_yaml_note(tag, 'novel')}")


def _yaml_note(tag: str, relation: str) -> str:
    """`; the YAML says novel` where the tag put the task on the other side of the novel line."""
    return f"; the YAML says {tag}" if (tag == "novel") != (relation == "novel") else ""


# ---- what a run trained on ---------------------------------------------------------------------------------------


def curated_sources(manifest: dict, config: dict | None = None, groups: Sequence[str] | None = None,
                    kinds: Sequence[str] | None = None) -> list[CuratedSource]:
    """The sources of a curation manifest with training documents in `groups` (None: all) of `kinds` (None: all).
    `config` is the curate stage's resolved recipe (its config.yaml): each source's converter (and the data root of runs
    whose manifest does not record it).
    A manifest without its `sources` and `groups` objects raises ValueError."""
    from findap.curate.sources import CONVERTERS

    reports, group_stats = manifest.get("sources"), manifest.get("groups")
    if not isinstance(reports, dict) or not isinstance(group_stats, dict):
        raise ValueError("no `sources` and `groups` objects (not a curation manifest)")
    curate = (config or {}).get("curate") if isinstance((config or {}).get("curate"), dict) else {}
    converters = {s["name"]: s.get("converter") or s["name"] for s in curate.get("sources") or []
                  if isinstance(s, dict) and isinstance(s.get("name"), str)}
    tokens: dict[str, int] = {}
    kind_of: dict[str, str] = {}
    for name, stats in group_stats.items():
        if (groups is not None and name not in groups) or not isinstance(stats, dict):
            continue
        mixture = stats.get("train") if isinstance(stats.get("train"), dict) else stats.get("all") or {}
        for source, numbers in (mixture.get("sources") or {}).items():
            if not isinstance(numbers, dict):
                continue
            kind = numbers.get("kind") or (reports.get(source) or {}).get("kind")
            if (numbers.get("docs") or 0) <= 0 or (kinds is not None and kind not in kinds):
                continue
            tokens[source] = max(tokens.get(source, 0), int(numbers.get("tokens") or 0))
            kind_of[source] = kind
    out = []
    for name in [*[n for n in reports if n in tokens], *[n for n in tokens if n not in reports]]:
        converter = converters.get(name, name)
        known = CONVERTERS.get(converter)
        out.append(CuratedSource(name=name, converter=converter, kind=str(kind_of[name]),
                                 location=(reports.get(name) or {}).get("location"),
                                 data_root=manifest.get("data_root") or curate.get("data_root"), tokens=tokens[name],
                                 holdout_key=known.holdout_key if known is not None else None))
    return out


def run_dir_of(result_path: str | Path) -> Path | None:
    """The run a result file belongs to: the folder holding its `eval` folder (runs/<run>/eval/<label>/...)."""
    parts = Path(result_path).parts
    if "eval" not in parts[:-1]:
        return None
    i = len(parts) - 1 - parts[::-1].index("eval")
    return Path(*parts[:i]) if i > 0 else None


def _yaml(path: Path) -> dict | None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _curate_dir(run: Path, train_config: dict | None) -> Path | None:
    """The run's own curate folder, else the shared one its train groups read (a sweep's other recipes)."""
    if (run / "curate" / "manifest.json").exists():
        return run / "curate"
    for group in ((train_config or {}).get("train") or {}).get("groups") or []:
        for file in (group.get("train") or []) if isinstance(group, dict) else []:
            curate = Path(file).parent.parent
            # written relative to where the sweep ran; from elsewhere, the owner recipe is a sibling of this run
            for candidate in (curate, run.parent / curate.parent.name / curate.name):
                if (candidate / "manifest.json").exists():
                    return candidate
    return None


def run_curation(run: str | Path) -> Curation:
    """The sources a run trained on (see the module docstring), or why there are none to decide from."""
    run = Path(run)
    train = _yaml(run / "train" / "config.yaml")
    curate = _curate_dir(run, train)
    if curate is None:
        return Curation(run.name, None, why=f"run {run.name} has no curation manifest")
    manifest_path = curate / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
        section = (train or {}).get("train") if isinstance((train or {}).get("train"), dict) else None
        groups = [g["name"] for g in section.get("groups") or [] if isinstance(g, dict) and "name" in g] \
            if section and section.get("groups") else None
        kinds = section.get("kinds") if section and section.get("kinds") else None
        sources = curated_sources(manifest, _yaml(curate / "config.yaml"), groups, kinds)
    except (OSError, ValueError) as err:
        return Curation(run.name, None, str(manifest_path), why=f"{manifest_path} is unreadable: {err}")
    return Curation(run.name, sources, str(manifest_path))


# ---- the report's results -----------------------------------------------------------------------------------------


def relate_results(results: Sequence, base: str | None = None) -> tuple[list, list[Curation]]:
    """Each result with `novelty` set to its task's relation and `relation` to its own run's (text), plus the
    curations read. All results of a task share one `novelty`, so a task keeps one row: the relation of the base
    model's run when it was derived from a curation, else that of the first model (column order: base, then by
    label) whose run's was, else the YAML tag. Where runs disagree, each result's `relation` says its own."""
    from findap.eval.registry import all_specs

    specs = dict(all_specs())
    own: dict[str, object] = {}
    for r in results:
        if r.spec and r.task not in specs:
            try:
                own[r.task] = _spec(r.spec)
            except ValueError:
                continue
    pool = [*specs.values(), *own.values()]
    curations: dict[Path | None, Curation] = {}
    relations: dict[tuple, Relation] = {}
    for r in results:
        run = run_dir_of(r.path)
        if run not in curations:
            curation = run_curation(run) if run is not None else \
                Curation("", None, why="results outside a run directory")
            curation.untyped = [s.name for s in curation.sources or [] if s.kind == "it" and not source_types(s, pool)]
            curations[run] = curation
        if (run, r.task) in relations:
            continue
        spec = own.get(r.task) or specs.get(r.task)
        try:
            spec = _spec(r.spec) if r.spec else spec
        except ValueError:
            pass  # a result's own spec that no longer validates: the registered one decides
        relations[run, r.task] = (task_relation(spec, curations[run].sources, pool, curations[run].why)
                                  if spec is not None else
                                  Relation(r.novelty, "YAML tag (no task spec to compare)", derived=False))
    order = sorted({r.model for r in results}, key=lambda m: (m != base, m))
    by_task: dict[str, Relation] = {}
    for task in {r.task for r in results}:
        mine = sorted((r for r in results if r.task == task), key=lambda r: order.index(r.model))
        found = [relations[run_dir_of(r.path), task] for r in mine]
        by_task[task] = next((rel for rel in found if rel.derived), found[0])
    related = [replace(r, novelty=by_task[r.task].relation, relation=relations[run_dir_of(r.path), r.task].text())
               for r in results]
    return related, [c for c in curations.values()]


__all__ = ["RELATIONS", "CuratedSource", "Curation", "Relation", "curated_sources", "relate_results",
           "run_curation", "run_dir_of", "same_dataset", "source_types", "task_relation", "task_type", "type_text"]
