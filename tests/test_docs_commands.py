"""Every command shown in README.md, docs/*.md and the recipe/config comments is run or checked, so the docs cannot
drift from the CLI.

Commands come from fenced bash/sh/shell/console blocks, from inline code spans that start like a command
(`findap ...`, `python -m findap...`, `accelerate launch ...`, `PYTHONPATH=src .venv/bin/python bench/...`) and
from `#   findap ...` lines in recipes/*.yaml and configs/*.yaml. Each simple command (split at `&&`) goes to the
rule for its program:

- `findap` commands are first parsed by the real typer app (an unknown subcommand or flag, or a missing argument,
  fails here), then executed: a command that would run stages for minutes gets `--dry-run --set runs_dir=TMP`
  (`findap sweep`: `--dry-run --out TMP`) appended, which loads the recipe with the command's own overrides, validates it and checks every input file it
  names; the cheap ones (eval --list, recipe-schema, chat, serve, report, eval --model) really run, with the tiny
  random Llama standing in for a model placeholder or the default model, and small limits appended.
- `accelerate launch ... -m findap train ARGS` (multi-GPU, NCCL) is not launched: its config file is read and
  its flags are checked against `accelerate launch --help`, and the findap command inside is checked as above.
  (tests/test_cli_flags.py launches the same command line with torchrun over 2 gloo processes.)
- benchmarks (`bench/*.py`, minutes on an idle machine) are checked by parsing: every flag the doc shows must be
  in the script's `--help`.
- setup commands (scripts/setup.sh, venv, pip) are not re-run: the files, extras and pins they name must exist.
A command with no rule fails the test: a new kind of command in the docs needs a rule here.

Placeholders: RECIPE -> recipes/demo.yaml, M -> the tiny model, N -> 2, run directories -> a run evaluated here.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer._click.exceptions import UsageError  # typer vendors click; its parser raises this class
from typer.main import get_command
from typer.testing import CliRunner

from findap.cli import app

REPO = Path(__file__).resolve().parents[1]
SRC = str(REPO / "src")
# docs/log.md is left out: it quotes the commands of superseded runs as they were then; history is not a contract
DOCS = [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "log.md")]
COMMENTED = [*sorted((REPO / "recipes").rglob("*.yaml")), *sorted((REPO / "configs").glob("*.yaml"))]
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
COMMAND_START = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?(?:findap|python3?|accelerate|torchrun|bash)\s")
# Recipe commands that would run stages for minutes: checked with a dry run
RECIPE_COMMANDS = {"curate", "train", "distill", "align", "run", "eval"}


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    text: str  # one simple command, as written (continuations joined)
    mention: bool = False  # an inline `findap <subcommand>` naming a command, not a full command line

    @property
    def tokens(self) -> list[str]:
        return shlex.split(self.text)


# ---- extraction ---------------------------------------------------------------------------------------------------
def fenced_commands(path: Path) -> list[DocCommand]:
    out, lang, start, buffer = [], None, 0, ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            lang = None if lang is not None else fence.group(1)
            continue
        if lang not in SHELL_BLOCKS:
            continue
        if lang == "console":
            if not line.startswith("$ ") and not buffer:
                continue
            line = line[2:] if not buffer else line
        if not buffer:
            start = number
        buffer += line.rstrip()
        if buffer.endswith("\\"):
            buffer = buffer[:-1] + " "
            continue
        out += split_simple(f"{path.relative_to(REPO)}:{start}", buffer)
        buffer = ""
    return out


def paragraphs(path: Path) -> list[tuple[int, str]]:
    """(first line, text) of each prose paragraph or table row, lines joined: a code span may wrap a line."""
    out, in_fence, start, lines = [], False, 0, []
    for number, line in enumerate([*path.read_text(encoding="utf-8").splitlines(), ""], start=1):
        fence = re.match(r"^\s*```", line)
        in_fence = in_fence != bool(fence)
        if fence or in_fence or not line.strip() or line.startswith("|"):
            if lines:
                out.append((start, " ".join(lines)))
            lines = []
            if line.startswith("|") and not in_fence:
                out.append((number, line))
            continue
        start = start if lines else number
        lines.append(line.strip())
    return out


def inline_commands(path: Path) -> list[DocCommand]:
    out = []
    for number, text in paragraphs(path):
        for span in re.findall(r"`([^`]+)`", text):
            if COMMAND_START.match(span + " "):
                where = f"{path.relative_to(REPO)}:{number}"
                words = span.split()
                if (words[0] == "findap" and len(words) == 2) or words in (["torchrun"], ["accelerate", "launch"]):
                    out.append(DocCommand(where, span, mention=True))  # `findap curate`: naming a command
                else:
                    out += split_simple(where, span)
    return out


def comment_commands(path: Path) -> list[DocCommand]:
    """Command lines in YAML comments: indented (`#   findap run ...`) or after a colon (`# Compare: findap ...`)."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        m = re.match(r"^\s*#(?:\s{2,}|.*:\s+)((?:findap [a-z]|accelerate launch |torchrun ).*)$", line)
        if m:
            out += split_simple(f"{path.relative_to(REPO)}:{number}", m.group(1))
    return out


def split_simple(where: str, line: str) -> list[DocCommand]:
    """One command line -> its simple commands: comments dropped, `&&` chains split."""
    words = shlex.split(line, comments=True)
    commands, current = [], []
    for word in [*words, "&&"]:
        if word == "&&":
            if current:
                commands.append(DocCommand(where, shlex.join(current)))
            current = []
        else:
            current.append(word)
    return commands


def all_doc_commands() -> list[DocCommand]:
    found = []
    for path in DOCS:
        found += fenced_commands(path) + inline_commands(path)
    for path in COMMENTED:
        found += comment_commands(path)
    return found


COMMANDS = all_doc_commands()


# ---- the rules ----------------------------------------------------------------------------------------------------
def program(tokens: list[str]) -> tuple[str, list[str]]:
    """(rule name, arguments): environment assignments dropped, `.venv/bin/x` read as x, `python -m findap[.train]`
    read as findap [train]."""
    while tokens and re.match(r"^[A-Z_]+=", tokens[0]):
        tokens = tokens[1:]
    head, rest = (tokens[0] if tokens[0] in (".", "source") else Path(tokens[0]).name), tokens[1:]
    if head.startswith("python"):
        if rest[:2] == ["-m", "findap"]:
            return "findap", rest[2:]
        if rest[:2] == ["-m", "findap.train"]:
            return "findap", ["train", *rest[2:]]
        if rest and rest[0] == "-m":
            return f"python -m {rest[1]}", rest[2:]
        if rest and rest[0].startswith("bench/"):
            return "bench", rest
    if head == "accelerate" and rest[:1] == ["launch"]:
        return "launcher", ["accelerate", "launch", *rest[1:]]
    if head == "torchrun":
        return "launcher", ["torchrun", *rest]
    if head == "." or head == "source":
        return "source", rest
    return head, rest


def substitute(args: list[str], env: "DocEnv") -> list[str]:
    out: list[str] = []
    for arg in args:
        if arg == "RECIPE":
            arg = "recipes/demo.yaml"
        elif arg == "M" or (out[-1:] in (["--model"], ["-m"]) and arg.startswith("runs/")):
            arg = env.model  # a model placeholder, or a model directory an earlier doc command would have written
        elif arg == "N":
            arg = "2"
        elif re.match(r"^runs/", arg):  # run directories the doc's earlier commands would have written
            if str(env.run_dir) in out:
                continue
            arg = str(env.run_dir)
        out.append(arg)
    return out


def click_parse(args: list[str]) -> None:
    """Parse ARGS with the real app without running anything: raises click's UsageError on an unknown subcommand,
    an unknown flag, a bad value or a missing argument."""
    group = get_command(app)
    ctx = group.make_context("findap", list(args))  # typer's vendored click keeps the name in _protected_args
    name, command, rest = group.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
    while hasattr(command, "resolve_command"):  # `findap demo check ...`
        sub_ctx = command.make_context(name, rest, parent=ctx)
        name, command, rest = command.resolve_command(sub_ctx, [*sub_ctx._protected_args, *sub_ctx.args])
    command.make_context(name, rest, parent=ctx)


def invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"findap {shlex.join(args)} exited {result.exit_code}:\n{result.output}" + (
        f"\n{result.exception!r}" if result.exception and not isinstance(result.exception, SystemExit) else "")
    return result.output


def check_findap(cmd: DocCommand, args: list[str], env: "DocEnv") -> None:
    if cmd.mention:
        assert args[0] in get_command(app).commands, f"{cmd.where}: `findap {args[0]}` is not a findap command"
        return
    args = substitute(args, env)
    click_parse(args)
    sub = args[0]
    if sub == "eval" and "--list" in args:
        assert "fineval-similar" in invoke(args)
    elif sub == "eval" and "--model" in args:
        run_subprocess(["findap", *args, "--limit", "1", "--batch-size", "4", "--out", str(env.tmp / "eval-out")])
    elif sub in RECIPE_COMMANDS:
        assert "nothing started" in invoke([*args, "--dry-run", "--set", f"runs_dir={env.tmp / 'runs'}"])
    elif sub == "sweep":  # runs whole recipes: checked with a dry run (every recipe loaded, compared, preflighted)
        assert "nothing started" in invoke([*args, "--dry-run", "--out", str(env.tmp / "sweep")])
    elif sub == "recipe-schema":  # a table per section; --json: the raw JSON schema
        assert ('"properties"' if "--json" in args else "train.groups[].lr") in invoke(args)
    elif sub == "chat":
        # sampled: the random test model's greedy answer is only newlines
        assert invoke([*args, "--model", env.model, "--max-new-tokens", "4", "--temperature", "1"]).strip()
    elif sub == "report":
        out = env.tmp / "report"
        invoke([*args, "--out", str(out)])
        assert (out / "report.md").exists() and (out / "report.html").exists()
    elif sub == "serve":
        check_serve(args, env)
    else:
        pytest.fail(f"{cmd.where}: no rule for `findap {sub}` in tests/test_docs_commands.py")


def run_subprocess(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", *args], env=env, cwd=REPO, capture_output=True, text=True,
                         timeout=600, **kw)
    assert res.returncode == 0, f"python -m {shlex.join(args)}:\n{res.stderr[-3000:]}"
    return res


def check_serve(args: list[str], env: "DocEnv") -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    penv = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "findap", *args, "--port", str(port)], env=penv, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    assert r.status == 200
                    return
            except OSError:
                time.sleep(0.5)
        pytest.fail("findap serve did not answer /v1/models within 120 s")
    finally:
        proc.kill()
        proc.wait()


def check_launcher(cmd: DocCommand, args: list[str], env: "DocEnv") -> None:
    """accelerate launch / torchrun (several GPUs, NCCL, minutes): not launched here. Its flags must be the
    launcher's, a config file must exist and parse, and the findap command it runs is checked like any other."""
    if cmd.mention:
        assert (Path(sys.executable).parent / args[0]).exists(), f"{cmd.where}: {args[0]} is not installed"
        return
    assert "-m" in args and args[args.index("-m") + 1] == "findap", f"{cmd.where}: launch `-m findap train RECIPE`"
    launcher, own = args[:args.index("-m")], args[args.index("-m") + 2:]
    if "--config_file" in launcher:
        config = REPO / launcher[launcher.index("--config_file") + 1]
        assert isinstance(yaml.safe_load(config.read_text()), dict), f"{cmd.where}: {config} is not a mapping"
    program_path = str(Path(sys.executable).parent / launcher[0])
    subcommand = launcher[1:2] if launcher[0] == "accelerate" else []
    help_text = subprocess.run([program_path, *subcommand, "--help"],
                               capture_output=True, text=True, timeout=120).stdout
    for flag in [a.split("=")[0] for a in launcher if a.startswith("-")]:
        assert flag in help_text, f"{cmd.where}: {launcher[0]} has no {flag}"
    check_findap(cmd, own, env)


def check_bench(cmd: DocCommand, args: list[str], env: "DocEnv") -> None:
    script = REPO / args[0]
    assert script.exists(), f"{cmd.where}: {args[0]} does not exist"
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=REPO,
                               env={**os.environ, "PYTHONPATH": SRC}, timeout=300).stdout
    for flag in [a for a in args[1:] if a.startswith("--")]:
        assert flag.split("=")[0] in help_text, f"{cmd.where}: {args[0]} has no {flag}"


def check_setup(cmd: DocCommand, name: str, args: list[str]) -> None:
    """Setup commands are not re-run; what they name must exist."""
    pyproject = (REPO / "pyproject.toml").read_text()
    setup = (REPO / "scripts" / "setup.sh").read_text()
    if name == "bash":
        assert args == ["scripts/setup.sh"] and (REPO / args[0]).exists(), f"{cmd.where}: unknown script {args}"
    elif name == "pip":
        assert args[0] == "install", f"{cmd.where}: only pip install is documented"
        for previous, arg in zip(args, args[1:]):
            extras = re.match(r"^\.\[(.*)\]$", arg)
            if extras:
                for extra in extras.group(1).split(","):
                    assert re.search(rf"^{extra} = \[", pyproject, re.M), f"{cmd.where}: no extra [{extra}]"
            elif not arg.startswith("-") and previous != "--index-url":  # a requirement, pinned as we pin it
                assert f'"{arg}' in pyproject or f'"{arg}' in setup, \
                    f"{cmd.where}: {arg} is not what pyproject.toml / scripts/setup.sh install"
    elif name == "python -m pytest":
        assert (REPO / "tests").is_dir()
    # python -m venv, `. .venv/bin/activate`: nothing to check


SETUP = {"bash", "pip", "python -m venv", "source", "python -m pytest"}
# Module entry points shown in the docs that are not run here, and why
NOT_RUN = {"python -m findap.demo.regenerate": "rewrites the shipped demo data; tests/test_demo_exercises.py "
                                               "checks the file equals the generator's output"}


@dataclass
class DocEnv:
    tmp: Path
    model: str
    run_dir: Path


def report_set_tasks() -> list[str]:
    """Every task the docs' `findap report --task-set NAME=a,b` commands name: a set needs all its tasks scored."""
    tasks = ["fpb"]
    for cmd in COMMANDS:
        name, args = program(cmd.tokens)
        if name == "findap" and args[:1] == ["report"]:
            specs = [b for a, b in zip(args, args[1:]) if a == "--task-set"]
            tasks += [t for spec in specs for t in spec.partition("=")[2].split(",") if t]
    return list(dict.fromkeys(tasks))


@pytest.fixture(scope="module")
def doc_env(tmp_path_factory, tiny_model_dir) -> DocEnv:
    """A run evaluated for real (tiny model, 2 items of fpb and of every task a report command's set names) for
    the report commands to read."""
    tmp = tmp_path_factory.mktemp("docs")
    recipe = tmp / "evaluated.yaml"
    recipe.write_text(yaml.safe_dump({"name": "evaluated", "model": tiny_model_dir, "runs_dir": str(tmp / "runs"),
                                      "stages": ["eval"], "device": "cpu", "precision": "fp32",
                                      "eval": {"tasks": report_set_tasks(), "limit": 2, "include": ["base"]}}))
    invoke(["eval", str(recipe)])
    return DocEnv(tmp=tmp, model=tiny_model_dir, run_dir=tmp / "runs" / "evaluated")


def check(cmd: DocCommand, env: DocEnv) -> None:
    name, args = program(cmd.tokens)
    if name == "findap":
        check_findap(cmd, args, env)
    elif name == "launcher":
        check_launcher(cmd, args, env)
    elif name == "bench":
        check_bench(cmd, args, env)
    elif name in SETUP:
        check_setup(cmd, name, args)
    elif name in NOT_RUN:
        import importlib.util

        assert importlib.util.find_spec(name.split()[-1]), f"{cmd.where}: no module {name.split()[-1]}"
    else:
        pytest.fail(f"{cmd.where}: no rule for `{cmd.text}`: add one to tests/test_docs_commands.py")


# ---- the tests ----------------------------------------------------------------------------------------------------
def test_the_docs_show_the_commands_we_expect():
    texts = {c.text for c in COMMANDS}
    assert len(COMMANDS) >= 25, COMMANDS
    for expected in ("findap run recipes/demo.yaml --set train.lr=1e-5 --set name=demo-lr",
                     (".venv/bin/findap report runs/smollm2-fin --base base --task-set "
                      "finance_trained=fpb,fomc,ner,flare_german,tatqa,cfa_easy --task-set general=arc,piqa,boolq"),
                     "findap serve --model M"):
        assert expected in texts, f"extraction lost {expected!r}"
    assert any(c.text.startswith("accelerate launch") for c in COMMANDS)
    assert any(c.text.startswith("torchrun") for c in COMMANDS)
    assert any(c.text.startswith("PYTHONPATH=src .venv/bin/python bench/") for c in COMMANDS)


def _is_slow(cmd: DocCommand) -> bool:
    name, args = program(cmd.tokens)
    return name == "bench" or (name == "findap" and not cmd.mention and args[:1] in (["serve"], ["chat"])) or (
        name == "findap" and "--model" in args and args[:1] == ["eval"])


@pytest.mark.parametrize("cmd", [pytest.param(c, id=f"{c.where} {c.text[:60]}",
                                              marks=[pytest.mark.slow] if _is_slow(c) else [])
                                 for c in COMMANDS])
def test_doc_command(cmd, doc_env, monkeypatch):
    monkeypatch.chdir(REPO)  # the docs' relative paths (recipes/, configs/, ../shared/data) are from the checkout
    check(cmd, doc_env)


@pytest.mark.parametrize("text", [
    "findap run recipes/demo.yaml --no-such-flag",
    "findap trian recipes/demo.yaml",
    "findap run recipes/demo.yaml --set train.groups.5.lr=1e-5",
    "findap eval --list --limit 3",
    "python -m findap.train --model M --config recipes/demo.yaml --out runs/x",
    "accelerate launch --config_file configs/accelerate_fsdp.yaml --no-such-accelerate-flag -m findap train "
    "recipes/llama-fin.yaml",
    "PYTHONPATH=src .venv/bin/python bench/train_vs_trl.py --no-such-flag 4",
    "pip install -e .[dev,no_such_extra]",
    "make everything",
])
def test_a_wrong_doc_command_fails(text, doc_env, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises((AssertionError, pytest.fail.Exception, UsageError)):
        check(DocCommand("test", text), doc_env)
