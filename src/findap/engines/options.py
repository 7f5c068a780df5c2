"""Command-line flags of the engine settings, made from the fields of an EngineConfig class: a flag's default,
lower bound and help are its field's, so `findap eval`, `findap chat`, `findap serve` and
`python -m findap.engines.server` cannot default differently from a recipe.

A command lists its engine flags as a table (`EngineFlag`s); `option()` makes the typer option of one,
`add_arguments()` the argparse options of a table, and `config_from()` turns the flags a user gave into the
config (the flags left out stay at the config's defaults, whatever the command line shows).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping

from findap.engines.config import EngineConfig


@dataclass(frozen=True)
class EngineFlag:
    """One command-line flag that sets the field `name` of `config`."""

    name: str
    flag: str  # e.g. --judge-engine; the command's parameter is the flag's name in snake case
    config: type[EngineConfig] = field(default=EngineConfig)
    help: str | None = None  # None: the field's description

    @property
    def param(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def default(self) -> Any:
        info = self.config.model_fields[self.name]
        return None if info.is_required() else info.default

    @property
    def minimum(self) -> int | None:
        return next((m.ge for m in self.config.model_fields[self.name].metadata if hasattr(m, "ge")), None)

    @property
    def description(self) -> str:
        return self.help or self.config.model_fields[self.name].description or ""


def flags(config: type[EngineConfig], *names: str, prefix: str = "", renamed: Mapping[str, str] | None = None,
          helps: Mapping[str, str] | None = None) -> dict[str, EngineFlag]:
    """param -> EngineFlag for the fields `names` of `config`: flag --<prefix><field> (dashes), or the flag given
    in `renamed` (field -> flag) where a command keeps an older name; `helps` (field -> text) replaces a field's
    description where the command needs its own words."""
    renamed, helps = renamed or {}, helps or {}
    table = [EngineFlag(n, renamed.get(n, f"--{prefix}{n}".replace("_", "-")), config, helps.get(n)) for n in names]
    return {f.param: f for f in table}


def option(flag: EngineFlag):
    """The typer option of `flag`: its field's default, lower bound and description."""
    import typer

    return typer.Option(flag.default, flag.flag, min=flag.minimum, help=flag.description)


def add_arguments(parser: argparse.ArgumentParser, table: Mapping[str, EngineFlag]) -> None:
    """The argparse options of a table, with the fields' defaults (values are checked by `config_from`)."""
    for flag in table.values():
        annotation = flag.config.model_fields[flag.name].annotation
        number = annotation is int or str(annotation).startswith("int")
        parser.add_argument(flag.flag, dest=flag.param, default=flag.default, type=_int_or_none if number else str,
                            help=flag.description)


def _int_or_none(text: str) -> int | None:
    return None if text.strip().lower() in ("none", "null") else int(text)


def config_from(table: Mapping[str, EngineFlag], values: Mapping[str, Any], given: Collection[str] | None = None,
                **fixed: Any) -> EngineConfig:
    """The config of a table's flags: `values` param -> value, of which only the params in `given` are used
    (None: all of them); `fixed` sets fields the command decides itself. A value the config refuses is a
    UsageError naming the flag."""
    from pydantic import ValidationError

    from findap.errors import UsageError

    config = next(iter(table.values())).config
    chosen = {f.name: values[p] for p, f in table.items() if p in values and (given is None or p in given)}
    try:
        return config(**chosen, **fixed)
    except ValidationError as e:
        problem = e.errors()[0]
        name = str(problem["loc"][0]) if problem["loc"] else ""
        flag = next((f.flag for f in table.values() if f.name == name), name)
        value = "" if problem.get("input") is None else f" {problem['input']!r}"
        raise UsageError(f"{flag}{value}: {problem['msg'].removeprefix('Value error, ')}") from None


# `findap serve` and `python -m findap.engines.server`: an hf engine over HTTP
SERVE_FLAGS = flags(EngineConfig, "device", "precision", "batch_size", "max_batch_tokens", "max_length", "cache_path")
# `findap chat`: one local model, one request at a time
CHAT_FLAGS = flags(EngineConfig, "device", "precision", "max_length")
