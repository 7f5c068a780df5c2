"""The FinEval registry: named Python hooks (loaders, extractors, metrics) and the task YAMLs.

Tasks are data (tasks/*.yaml); code enters only through the three hook tables below, referenced by name in
the YAML, the lm-evaluation-harness pattern. Users add tasks by pointing `FINDAP_TASKS` (os.pathsep-separated)
at folders of their own YAMLs, or by passing a YAML path wherever a task name is accepted.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Callable

import yaml
from pydantic import ValidationError

from findap.eval.task import Task, TaskSpec

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
    """Read and validate one task YAML; errors name the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a task YAML must be a mapping, got {type(raw).__name__}")
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"field '{'.'.join(map(str, err['loc']))}': {err['msg']}" for err in e.errors())
        raise ValueError(f"{path}: {problems}") from e
    _check_hooks(path, spec)
    return spec


def _check_hooks(path: Path, spec: TaskSpec) -> None:
    _builtin_hooks()
    for where, src in (("source", spec.source), ("hub", spec.hub)):
        if src is not None and src.loader not in LOADERS:
            raise ValueError(f"{path}: field '{where}.loader': unknown loader {src.loader!r}")
    if spec.extraction is not None and spec.extraction not in EXTRACTORS:
        raise ValueError(f"{path}: field 'extraction': unknown extractor {spec.extraction!r}")
    for m in spec.metrics:
        if m not in METRICS:
            raise ValueError(f"{path}: field 'metrics': unknown metric {m!r}")


def task_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("FINDAP_TASKS", "").split(os.pathsep) if p]
    return [TASKS_DIR, *extra]


@lru_cache(maxsize=None)
def _specs(dirs: tuple[Path, ...]) -> dict[str, TaskSpec]:
    specs: dict[str, TaskSpec] = {}
    for d in dirs:
        for path in sorted(d.glob("*.yaml")):
            spec = load_spec(path)
            if spec.name in specs:
                raise ValueError(f"{path}: task name {spec.name!r} is defined twice")
            specs[spec.name] = spec
    return specs


def all_specs() -> dict[str, TaskSpec]:
    """Every known task spec by name (built-in plus $FINDAP_TASKS folders)."""
    return _specs(tuple(task_dirs()))


def groups() -> dict[str, list[str]]:
    """Group name -> task names (fineval, fineval-similar, fineval-novel, capabilities, domains, declared)."""
    out: dict[str, list[str]] = {}
    for name, spec in all_specs().items():
        for g in spec.all_groups:
            out.setdefault(g, []).append(name)
    return out


def resolve(names: list[str] | str) -> list[TaskSpec]:
    """Task names, group names or YAML paths -> specs, in order, without duplicates."""
    if isinstance(names, str):
        names = [n for n in names.split(",") if n]
    specs, grouped, seen = all_specs(), groups(), set()
    out: list[TaskSpec] = []
    for name in names:
        if name.endswith((".yaml", ".yml")) and Path(name).exists():
            found = [load_spec(name)]
        elif name in specs:
            found = [specs[name]]
        elif name in grouped:
            found = [specs[n] for n in grouped[name]]
        else:
            raise KeyError(f"unknown task or group {name!r}; groups: {', '.join(sorted(grouped))}")
        for spec in found:
            if spec.name not in seen:
                seen.add(spec.name)
                out.append(spec)
    return out


def get_task(name: str, root: Path | None = None, prefer: str = "local") -> Task:
    [spec] = resolve([name])
    return Task(spec, root=root, prefer=prefer)  # type: ignore[arg-type]
