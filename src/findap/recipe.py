"""Recipes: one declarative YAML file describes a whole run; pydantic validates it before any work starts.

Each stage owns its section (`findap/<part>/config.py`); this module only composes them, loads YAML with
`yaml.safe_load`, applies `--set a.b.c=value` overrides (list items by index or `*`: `train.groups.0.lr=1e-5`,
`train.groups.*.lr=1e-5`; values parsed as YAML, so `3e-6`, `true`, `[a, b]` work), and turns validation failures into one message per problem naming the field path, the bad value
and what is allowed.
"""
from __future__ import annotations

import re
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Sequence, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from findap.align.config import AlignConfig
from findap.curate.config import CurateConfig
from findap.data_root import DataRoot
from findap.distill.config import DistillConfig
from findap.eval.config import EvalConfig
from findap.report.config import ReportConfig
from findap.io import DataError, read_text
from findap.train.config import GROUP_KNOBS, TrainConfig

STAGES = ("curate", "train", "distill", "align", "eval", "report")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="run name, a plain name (no '/', not '..'): outputs go to "
                      "<runs_dir>/<name>/<stage>/")
    model: str = Field("smollm2-135m-instruct", description="base model: findap name, HF hub id or local path")
    runs_dir: str = Field("runs", description="parent directory of run directories")
    data_root: str | None = Field(
        None, description="folder that relative dataset paths (curate and distill sources, FinEval task files) "
        "resolve against; relative to the recipe file. None: $FINDAP_DATA, else ../shared/data beside the checkout")
    seed: int = 0
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N, mps")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto = bf16 autocast where the hardware has fast bf16, else fp32"
    )
    stages: list[Literal["curate", "train", "distill", "align", "eval", "report"]] = Field(
        default_factory=lambda: list(STAGES), description="stages `findap run` executes, in this order"
    )
    curate: CurateConfig = Field(default_factory=CurateConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    @property
    def data_dir(self) -> "DataRoot":
        """The data root every stage reads datasets under (findap.data_root: the one rule)."""
        from findap.data_root import data_root

        return data_root(self.data_root)

    @field_validator("device")
    @classmethod
    def _device_name(cls, device: str) -> str:
        # the spelling only: whether this machine has the device is checked before the stages start (preflight)
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", device):
            raise ValueError("not a device: use auto, cpu, cuda, cuda:N or mps")
        return device

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        # The name becomes a folder under runs_dir: a path in it (`../../x`) would write outside runs/, an empty
        # name into runs_dir itself.
        if not name.strip():
            raise ValueError("the run name is empty; give a plain name such as demo-lr")
        bad = [c for c in ("/", "\\", "\0") if c in name]
        if bad or name in (".", "..") or name != name.strip():
            why = (f"contains {bad[0]!r}" if bad else "is a relative folder" if name in (".", "..")
                   else "starts or ends with a space")
            raise ValueError(f"the run name {why}: it names a folder under runs_dir, so give a plain name such as "
                             "demo-lr (to write elsewhere, set runs_dir)")
        return name

    @model_validator(mode="after")
    def _demo_paths_exist(self) -> "Recipe":
        from findap.demo.catalog import demo_location_problem

        for i, source in enumerate(self.curate.sources):
            problem = demo_location_problem(source.converter_name, source.path or "")
            if problem:
                raise ValueError(f"curate.sources.{i}.path: {problem}")
        return self

    @model_validator(mode="after")
    def _eval_has_tasks(self) -> "Recipe":
        if "eval" in self.stages and self.eval.enabled and not self.eval.tasks:
            raise ValueError("eval.tasks is empty: list the tasks to score, or leave eval out of `stages`")
        return self

    @model_validator(mode="after")
    def _fp16_cannot_train(self) -> "Recipe":
        # Caught here, not when the train stage starts after a long curation: the loops have no loss scaling.
        training = [s for s in ("train", "align") if s in self.stages and getattr(self, s).enabled]
        if self.precision == "fp16" and training:
            raise ValueError(f"fp16 cannot train ({', '.join(training)}: no loss scaling, small gradients underflow); "
                             "use bf16 or fp32, or leave those stages out of `stages`")
        return self

    @model_validator(mode="after")
    def _eval_holdout_covers_fineval(self) -> "Recipe":
        # Caught here, not after training: a holdout below a task's carve trains on rows FinEval scores as unseen.
        from findap.curate.holdout import check_recipe_holdout

        check_recipe_holdout(self)
        return self


class RecipeError(ValueError):
    pass


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], schema: type[BaseModel] | None = None,
                    ) -> dict[str, Any]:
    """Apply `key.path=value` overrides to raw recipe data, in order.

    A path walks sections by field name and lists by index (`train.groups.0.lr`) or `*` for every item
    (`train.groups.*.lr`). Values are YAML (`3e-6`, `true`, `[a, b]`, `{name: g, lr: 1e-5}`). A list the recipe
    leaves at its default is filled with that default first, so `train.groups.0.lr` works on a recipe without a
    `groups:` list. The schema (the Recipe model) is walked alongside, so a wrong path is refused here, naming the
    path and what exists there, instead of surfacing later as a validation error of a created key.

    A section-level value that each curriculum group may also set (`train.lr`, `train.warmup`, `train.epochs`,
    `train.max_steps`) applies to every group: the groups' own values for it are dropped, so
    `--set train.lr=1e-5` is the learning rate every group trains with, also in a recipe whose groups set `lr`.
    Later overrides still win (`--set train.lr=1e-5 --set train.groups.1.lr=2e-5`).
    """
    schema = Recipe if schema is None else schema
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not key.strip() or not all(parts):
            raise RecipeError(f"override {item!r}: expected key.path=value, e.g. seed=1 or train.groups.0.lr=1e-5")
        try:
            _assign(data, parts, _parse_scalar(raw), _Shape.of(schema), [])  # the value is parsed first
        except _PathError as e:
            raise RecipeError(f"override {item!r}: {e}") from None
        if schema is Recipe:
            _unshadow(data, parts)
    return data


# section -> (its list of groups, the values a group may set for itself, falling back to the section's)
GROUPED_SECTIONS = {"train": ("groups", GROUP_KNOBS)}


def _unshadow(data: dict[str, Any], parts: list[str]) -> None:
    """After an override of a section-level value the groups may shadow, drop the groups' own values for it."""
    if len(parts) != 2 or parts[0] not in GROUPED_SECTIONS:
        return
    section, knob = parts
    groups_key, knobs = GROUPED_SECTIONS[section]
    groups = (data.get(section) or {}).get(groups_key) if isinstance(data.get(section), dict) else None
    if knob in knobs and isinstance(groups, list):
        for group in groups:
            if isinstance(group, dict):
                group.pop(knob, None)


class _PathError(ValueError):
    pass


class _Shape:
    """What the schema says sits at a path: a model section, a list, a mapping, or a value (leaf)."""

    def __init__(self, kind: str, inner: Any = None):
        self.kind, self.inner = kind, inner  # inner: model class, item shape or value shape

    @classmethod
    def of(cls, annotation: Any) -> "_Shape":
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return cls("model", annotation)
        origin, args = get_origin(annotation), get_args(annotation)
        if origin in (Union, UnionType):  # `X | None`, `list[str] | str`: the structured alternative decides
            shapes = [cls.of(a) for a in args if a is not type(None)]
            return next((s for s in shapes if s.kind != "value"), cls("value"))
        if origin in (list, tuple) and args:
            return cls("list", cls.of(args[0]))
        if origin is dict and len(args) == 2:
            return cls("dict", cls.of(args[1]))
        return cls("value")

    def child(self, key: str, where: str) -> "_Shape":
        if self.kind == "dict":
            return self.inner
        fields = self.inner.model_fields
        moved = getattr(self.inner, "moved_fields", {}).get(key)  # a setting that moved within its section
        if key not in fields and moved:
            raise _PathError(f"{_join(where, key)}: unknown field; it is {_join(where, moved)} now")
        if key not in fields:
            raise _PathError(f"{_join(where, key)}: unknown field; {where or 'a recipe'} has: {', '.join(fields)}")
        return _Shape.of(fields[key].annotation)

    def default(self, key: str) -> Any:
        """The raw form of a field's default, to fill in before indexing into it (lists of sections included)."""
        if self.kind != "model":
            return None
        value = self.inner.model_fields[key].get_default(call_default_factory=True)
        if isinstance(value, list):
            return [v.model_dump(exclude_unset=True) if isinstance(v, BaseModel) else v for v in value]
        return None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _assign(node: Any, parts: list[str], value: Any, shape: _Shape, trail: list[str]) -> None:
    where, (key, rest) = ".".join(trail), (parts[0], parts[1:])
    if isinstance(node, list):
        for index in _indices(node, key, where):
            _set_or_descend(node, index, rest, value, shape.inner if shape.kind == "list" else _Shape("value"),
                            [*trail, str(index)])
        return
    if key == "*":
        raise _PathError(f"{_join(where, key)}: '*' selects every item of a list, and {where or 'a recipe'} "
                         "is a section")
    child_shape = shape.child(key, where) if shape.kind in ("model", "dict") else _Shape("value")
    if rest and node.get(key) is None:  # absent, or `section:` left empty in the YAML
        node[key] = _filled(shape, key, child_shape, _join(where, key), rest[0])
    _set_or_descend(node, key, rest, value, child_shape, [*trail, key])


def _filled(shape: _Shape, key: str, child_shape: _Shape, path: str, next_key: str) -> Any:
    """What stands at `path` before an override descends into it: the default list, or an empty section."""
    filled = shape.default(key)
    if filled is not None:
        return filled
    if child_shape.kind in ("model", "dict"):
        return {}
    raise _PathError(f"{path} is a value, not a section or list: nothing to find at '{next_key}'")


def _set_or_descend(node: Any, key: Any, rest: list[str], value: Any, shape: _Shape, trail: list[str]) -> None:
    if not rest:
        node[key] = value
        return
    child = node[key]
    if not isinstance(child, (dict, list)) or shape.kind == "value":
        raise _PathError(f"{'.'.join(trail)} is a value ({child!r}), not a section or list: "
                         f"nothing to find at '{rest[0]}'")
    _assign(child, rest, value, shape, trail)


def _indices(items: list, key: str, where: str) -> range | list[int]:
    if key == "*":
        return range(len(items))
    noun = where.rsplit(".", 1)[-1] or "items"
    if not key.isdigit():
        raise _PathError(f"{_join(where, key)}: {where} is a list of {len(items)} {noun}: index it with 0.."
                         f"{len(items) - 1} or * (every item)")
    index = int(key)
    if index >= len(items):
        have = f"only {len(items)} {noun}" if items else f"no {noun} (an empty list)"
        raise _PathError(f"{_join(where, key)}: {have}; to add one, set the whole list: {where}=[...]")
    return [index]


def _parse_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise _PathError(f"the value is not valid YAML: {getattr(e, 'problem', e)}") from None


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(read_text(path)) or {}
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except DataError as e:  # bytes that are not UTF-8, named by line and offset
        raise RecipeError(str(e)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RecipeError(f"{where}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping, got {type(data).__name__}")
    return data


def _numbers_from_strings(node: Any) -> Any:
    """YAML 1.1 reads `5e-6` as a string; recipes mean a number. Convert such strings before validation."""
    if isinstance(node, dict):
        return {k: _numbers_from_strings(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_numbers_from_strings(v) for v in node]
    if isinstance(node, str):
        s = node.strip().lower()
        if s and s[0] in "+-.0123456789" and "e" in s:
            try:
                return float(s)
            except ValueError:
                return node
    return node


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid recipe ({err.error_count()} problem{'s' if err.error_count() > 1 else ''})"]
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        bad = e.get("input")
        msg = e["msg"].removeprefix("Value error, ")
        allowed = ""
        ctx = e.get("ctx") or {}
        if "expected" in ctx and str(ctx["expected"]) not in msg:
            allowed = f"; allowed: {ctx['expected']}"
        # a whole section (or the whole recipe, for checks across fields) is not worth repeating back
        got = "" if isinstance(bad, (dict, list)) and len(repr(bad)) > 80 else f" (got {bad!r})"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown field (value {bad!r}); check the spelling against `findap recipe-schema`")
        elif not path and re.match(r"^[\w.]+: ", msg):  # a check across fields that names the field itself
            lines.append(f"  {msg}")
        else:
            lines.append(f"  {path or '(top level)'}: {msg}{got}{allowed}")
    return "\n".join(lines)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top` wins; mappings merge key by key, anything else (lists included) is replaced whole."""
    out = dict(base)
    for key, value in top.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _load_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe may start from another (`base: demo.yaml`, relative to itself) and change only what differs."""
    if path.resolve() in seen:
        raise RecipeError(f"{path}: recipe bases form a cycle: {' -> '.join(map(str, seen))}")
    data = _load_yaml(path)
    _data_root_of_file(data, path)
    base = data.pop("base", None)
    if base is None:
        return data
    base_data = _load_with_base(path.parent / base, (*seen, path.resolve()))
    base_data.pop("name", None)  # a derived recipe is its own run
    return deep_merge(base_data, data)


def _data_root_of_file(data: dict[str, Any], path: Path) -> None:
    """A recipe file's `data_root` is relative to the file (so a recipe and its data move together), made absolute
    here: the stages run in other processes and folders. `curate.data_root` was the old place: one line says so."""
    curate = data.get("curate")
    if isinstance(curate, dict) and "data_root" in curate:
        raise RecipeError(f"{path}: curate.data_root: the data root is now set once for every stage: move it to "
                          "`data_root:` at the top of the recipe (relative to the recipe file)")
    root = data.get("data_root")
    if isinstance(root, str) and root:
        data["data_root"] = str((path.parent / Path(root).expanduser()).resolve())


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    path = Path(path)
    data = _load_with_base(path)
    data.setdefault("name", path.stem)
    data = apply_overrides(data, overrides)
    if isinstance(data.get("curate"), dict) and "data_root" in data["curate"]:
        raise RecipeError("curate.data_root: the data root is set once for every stage now: --set data_root=...")
    if isinstance(data.get("data_root"), str) and data["data_root"]:  # from --set: relative to the current folder
        data["data_root"] = str(Path(data["data_root"]).expanduser().resolve())
    try:
        return Recipe.model_validate(_numbers_from_strings(data))
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, str(path))) from None


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")
