"""The FinEval registry: named Python hooks (loaders, extractors, metrics) and the task YAMLs.

Tasks are data (tasks/*.yaml); code enters only through the three hook tables below, referenced by name in
the YAML, the lm-evaluation-harness pattern. Users add tasks by pointing `FINDAP_TASKS` (os.pathsep-separated)
at folders of their own YAMLs, or by passing a YAML path wherever a task name is accepted.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import yaml
from pydantic import ValidationError

from findap.errors import UnknownName, UsageError
from findap.eval.task import Task, TaskSpec
from findap.io import DataError, read_text

TASKS_DIR = Path(__file__).parent / "tasks"

LOADERS: dict[str, Callable[..., list[dict]]] = {}
EXTRACTORS: dict[str, Callable] = {}
METRICS: dict[str, Callable] = {}


def _register(table: dict, kind: str):
    def decorator_for(name: str):
        def decorator(fn):
            if name in table and table[name] is not fn:
                raise ValueError(f"{kind} {name!r} is already registered")
            table[name] = fn
            return fn

        return decorator

    return decorator_for


register_loader = _register(LOADERS, "loader")
register_extractor = _register(EXTRACTORS, "extractor")
register_metric = _register(METRICS, "metric")


def _builtin_hooks() -> None:
    # imported lazily: the hook modules import this one to register themselves
    from findap.eval import extract, loaders, metrics  # noqa: F401
    from findap.eval import tabular_loaders  # noqa: F401


def _lookup(table: dict, kind: str, name: str):
    _builtin_hooks()
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; registered: {', '.join(sorted(table))}")
    return table[name]


def get_loader(name: str):
    return _lookup(LOADERS, "loader", name)


def get_extractor(name: str):
    return _lookup(EXTRACTORS, "extractor", name)


def get_metric(name: str):
    return _lookup(METRICS, "metric", name)


# ---- task YAMLs ---------------------------------------------------------------------------------------------
def load_spec(path: str | Path) -> TaskSpec:
    """Read and validate one task YAML; errors (DataError) name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, None, "task file not found")
    try:
        raw = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise DataError(path, mark.line + 1 if mark else None, None,
                        f"not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(raw, dict):
        raise DataError(path, None, None, f"a task YAML must be a mapping, got {type(raw).__name__}")
    recipe_keys = sorted(raw.keys() & {"stages", "curate", "train", "distill", "align", "eval", "model"})
    if recipe_keys and "answer_type" not in raw:  # a recipe passed to --tasks: say so, not seven missing fields
        raise DataError(path, None, None, f"this is a recipe (it has {', '.join(recipe_keys)}), not a task YAML: "
                        f"score a recipe's models with `findap eval {path}`")
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as e:
        errors = [(".".join(map(str, err["loc"])) or None, err["msg"]) for err in e.errors()]
        rest = "".join(f"; field '{loc}': {msg}" if loc else f"; {msg}" for loc, msg in errors[1:])
        raise DataError(path, None, errors[0][0], errors[0][1] + rest) from None
    _check_hooks(path, spec)
    return spec


def _check_hooks(path: Path, spec: TaskSpec) -> None:
    _builtin_hooks()
    for where, src in (("source", spec.source), ("hub", spec.hub)):
        if src is not None and src.loader not in LOADERS:
            raise DataError(path, None, f"{where}.loader", f"unknown loader {src.loader!r}")
    if spec.extraction is not None and spec.extraction not in EXTRACTORS:
        raise DataError(path, None, "extraction", f"unknown extractor {spec.extraction!r}")
    for m in spec.metrics:
        if m not in METRICS:
            raise DataError(path, None, "metrics", f"unknown metric {m!r}")


def task_dirs() -> list[Path]:
    """The built-in tasks folder, then each folder of $FINDAP_TASKS (os.pathsep-separated), which must exist."""
    extra = [Path(p).expanduser() for p in os.environ.get("FINDAP_TASKS", "").split(os.pathsep) if p]
    for folder in extra:
        if not folder.is_dir():
            raise UsageError(f"FINDAP_TASKS: {folder} {'is not a folder' if folder.exists() else 'does not exist'}",
                             hint="point it at folders of task YAMLs, separated by " + repr(os.pathsep))
    return [TASKS_DIR, *extra]


@dataclass(frozen=True)
class _Found:
    """The task YAMLs of some folders: the valid specs by name, and each broken YAML's error under every name the
    user could mean it by (its file stem and, when readable, its `name:`); a name defined twice is broken too."""

    specs: dict[str, TaskSpec]
    broken: dict[str, DataError]
    paths: dict[str, Path]  # task name -> the YAML that defines it


@lru_cache(maxsize=None)
def _scan(dirs: tuple[Path, ...]) -> _Found:
    # A broken YAML is not an error here: only a command that uses or lists that task fails (naming the YAML and
    # the field), so one bad file in a FINDAP_TASKS folder does not stop runs that never touch it.
    specs: dict[str, TaskSpec] = {}
    broken: dict[str, DataError] = {}
    paths: dict[str, Path] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")):
            try:
                spec = load_spec(path)
            except DataError as err:
                for name in {path.stem, _declared_name(path)} - {None}:
                    broken.setdefault(name, err)
                continue
            if spec.name in specs:
                broken[spec.name] = DataError(path, None, "name", f"task name {spec.name!r} is already defined by "
                                              f"{paths[spec.name]}; rename one of them")
                continue
            specs[spec.name], paths[spec.name] = spec, path
    return _Found(specs, broken, paths)


def _declared_name(path: Path) -> str | None:
    try:
        raw = yaml.safe_load(path.read_bytes())
    except (yaml.YAMLError, OSError):
        return None
    name = raw.get("name") if isinstance(raw, dict) else None
    return name if isinstance(name, str) else None


def _found() -> _Found:
    return _scan(tuple(task_dirs()))


def all_specs() -> dict[str, TaskSpec]:
    """Every valid task spec by name (built-in plus $FINDAP_TASKS folders); broken YAMLs are left out (they fail
    where a command names them: `resolve`, `check_task_names`, `groups(strict=True)`)."""
    return _found().specs


def broken_tasks() -> dict[str, DataError]:
    """Task name (or YAML file stem) -> why its YAML cannot be used."""
    return dict(_found().broken)


def groups(strict: bool = False) -> dict[str, list[str]]:
    """Group name -> task names (fineval, fineval-similar, fineval-novel, capabilities, domains, declared).
    `strict` (for listings): a broken task YAML is an error naming the file and the field, not left out."""
    found = _found()
    if strict and found.broken:
        err = next(iter(found.broken.values()))
        others = len({id(e) for e in found.broken.values()}) - 1
        raise DataError(err.file, err.line, err.field, err.problem + (f" ({others} more broken task YAMLs)"
                                                                      if others else ""))
    out: dict[str, list[str]] = {}
    for name, spec in found.specs.items():
        for g in spec.all_groups:
            out.setdefault(g, []).append(name)
    return out


def resolve(names: list[str] | str) -> list[TaskSpec]:
    """Task names, group names or YAML paths -> specs, in order, without duplicates. An unknown name raises
    UnknownName (a KeyError) listing close matches; a broken or missing task YAML raises its DataError."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n]
    found, grouped, seen = _found(), groups(), set()
    specs = found.specs
    out: list[TaskSpec] = []
    for name in names:
        if name.endswith((".yaml", ".yml")):
            found_specs = [load_spec(name)]
        elif name in found.broken:
            err = found.broken[name]
            raise DataError(err.file, err.line, err.field, err.problem)
        elif name in specs:
            found_specs = [specs[name]]
        elif name in grouped:
            found_specs = [specs[n] for n in grouped[name]]
        else:
            raise _unknown(name, [*specs, *grouped])
        for spec in found_specs:
            if spec.name not in seen:
                seen.add(spec.name)
                out.append(spec)
    return out


def _unknown(name: str, known: list[str]) -> UnknownName:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else "`findap eval --list` lists the tasks and groups"
    return UnknownName(f"unknown task or group {name!r}", hint)


def check_task_names(names: list[str] | str) -> list[str]:
    """The task names that `names` (tasks, groups, YAML paths) stand for, checked before any model loads: an
    unknown name raises UnknownName (a UsageError) with close matches, a broken task YAML its DataError."""
    return [spec.name for spec in resolve(names)]


def get_task(name: str, root: Path | None = None, prefer: str = "local") -> Task:
    [spec] = resolve([name])
    return Task(spec, root=root, prefer=prefer)  # type: ignore[arg-type]
