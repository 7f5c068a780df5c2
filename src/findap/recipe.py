"""Recipes: one declarative YAML file describes a whole run; pydantic validates it before any work starts.

Each stage owns its section (`findap/<part>/config.py`); this module only composes them, loads YAML with
`yaml.safe_load`, applies `--set a.b.c=value` overrides (values parsed as YAML scalars, so `3e-6`, `true`,
`[a, b]` work), and turns validation failures into one message per problem naming the field path, the bad value
and what is allowed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from findap.align.config import AlignConfig
from findap.curate.config import CurateConfig
from findap.distill.config import DistillConfig
from findap.eval.config import EvalConfig
from findap.train.config import TrainConfig

STAGES = ("curate", "train", "distill", "align", "eval", "report")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="run name: outputs go to <runs_dir>/<name>/<stage>/")
    model: str = Field("smollm2-135m-instruct", description="base model: findap name, HF hub id or local path")
    runs_dir: str = Field("runs", description="parent directory of run directories")
    seed: int = 0
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
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

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    @model_validator(mode="after")
    def _fp16_cannot_train(self) -> "Recipe":
        # Caught here, not when the train stage starts after a long curation: the loops have no loss scaling.
        training = [s for s in ("train", "align") if s in self.stages and getattr(self, s).enabled]
        if self.precision == "fp16" and training:
            raise ValueError(f"fp16 cannot train ({', '.join(training)}: no loss scaling, small gradients underflow); "
                             "use bf16 or fp32, or leave those stages out of `stages`")
        return self


class RecipeError(ValueError):
    pass


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"override {item!r}: expected key.path=value, e.g. train.lr=1e-5")
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.setdefault(part, {}), dict):
                raise RecipeError(f"override {item!r}: '{part}' is a value, not a section")
            node = node[part]
        node[parts[-1]] = _parse_scalar(raw)
    return data


def _parse_scalar(raw: str) -> Any:
    return yaml.safe_load(raw) if raw.strip() else ""


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
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
        path = ".".join(str(p) for p in e["loc"]) or "(top level)"
        bad = e.get("input")
        allowed = ""
        ctx = e.get("ctx") or {}
        if "expected" in ctx and str(ctx["expected"]) not in e["msg"]:
            allowed = f"; allowed: {ctx['expected']}"
        if e["type"] == "extra_forbidden":
            lines.append(f"  {path}: unknown field (value {bad!r}); check the spelling against `findap recipe-schema`")
        else:
            lines.append(f"  {path}: {e['msg']} (got {bad!r}){allowed}")
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
    base = data.pop("base", None)
    if base is None:
        return data
    base_data = _load_with_base(path.parent / base, (*seen, path.resolve()))
    base_data.pop("name", None)  # a derived recipe is its own run
    return deep_merge(base_data, data)


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    path = Path(path)
    data = _load_with_base(path)
    data.setdefault("name", path.stem)
    data = apply_overrides(data, overrides)
    try:
        return Recipe.model_validate(_numbers_from_strings(data))
    except ValidationError as e:
        raise RecipeError(format_validation_error(e, str(path))) from None


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json")
