"""The error contract of the `findap` command: expected failures are one short line, bugs keep their traceback.

Code anywhere in findap raises `UsageError` (the user's input is wrong: a flag, a recipe field, a file; exit 2) or
`RuntimeFailure` (the input is fine but the work could not be done here: out of memory, a server that went away;
exit 1), with the fix in `hint` when there is one. `findap.io.DataError` and `findap.recipe.RecipeError` are input
errors too. `describe(exc)` is how the CLI (and a stage's child process) tells an expected failure from a bug.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

USAGE = 2  # the user's input (flag, recipe, file) is wrong: fix it and rerun
FAILURE = 1  # a runtime failure, or a bug
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it


class FindapError(Exception):
    """An expected failure: `message` says what is wrong and where, `hint` how to fix it (optional)."""

    exit_code = FAILURE

    def __init__(self, message: str, hint: str | None = None):
        self.message, self.hint = message, hint
        super().__init__(f"{message}; {hint}" if hint else message)

    def __str__(self) -> str:  # as written, also for subclasses of KeyError (whose str() quotes the message)
        return str(self.args[0])


class UsageError(FindapError):
    """A wrong flag, recipe field, task name or input file: exit 2."""

    exit_code = USAGE


class RuntimeFailure(FindapError):
    """The input is fine but the work failed here: exit 1."""

    exit_code = FAILURE


class UnknownName(UsageError, KeyError):
    """A name that is not in a registry (a task, a demo set). A KeyError too, for callers that catch lookups."""


def debug_enabled() -> bool:
    return os.environ.get("FINDAP_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


# Expected failures raised by other modules, by (module, class): matched by name along the exception's MRO, so
# telling a failure from a bug never imports a heavy module (torch, datatrove) that the failing command did not.
EXPECTED = {
    ("findap.io", "DataError"): USAGE,  # file:line: field 'x': problem
    ("findap.recipe", "RecipeError"): USAGE,
    ("findap.pipeline", "PreflightError"): USAGE,
    ("findap.sweep", "SweepError"): USAGE,
    ("findap.curate.sources.badrows", "SourceError"): USAGE,
    ("findap.train.tokenize", "TemplateError"): USAGE,
    ("findap.training.memory", "MemoryDoesNotFit"): FAILURE,
    ("findap.training.loop", "TrainingDiverged"): FAILURE,
    ("findap.engines.openai_client", "EndpointError"): FAILURE,
    ("findap.eval.stage", "TasksSkipped"): FAILURE,
    ("findap.eval.task", "TaskDataUnavailable"): FAILURE,  # the data cannot be had here (offline, not on disk)
    ("findap.curate.executors", "StepFailed"): FAILURE,
}


def describe(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit code) for an expected failure, None for anything else (a bug)."""
    if isinstance(exc, FindapError):
        return str(exc), exc.exit_code
    for cls in type(exc).__mro__:
        code = EXPECTED.get((cls.__module__, cls.__name__))
        if code is not None:
            return str(exc), code
    if isinstance(exc, FileNotFoundError) and exc.filename and _outside_findap(exc.filename):
        return f"{exc.filename}: file not found", USAGE
    if isinstance(exc, MemoryError):
        return "out of memory: use a smaller batch, sequence length or model, or a machine with more memory", FAILURE
    return None


def _outside_findap(filename: str | os.PathLike) -> bool:
    """A missing file the user named (a recipe's data, a folder on the command line), not one findap ships: a
    file missing inside the package or the Python installation is a broken install or a bug."""
    path = Path(filename).expanduser().absolute()
    package = Path(__file__).resolve().parent
    return not any(path.is_relative_to(root) for root in (package, Path(sys.prefix), Path(sys.base_prefix)))
