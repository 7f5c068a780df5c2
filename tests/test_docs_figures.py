"""Measured figures live in docs/results.md (current) and docs/log.md (history) only.

Everywhere else (README.md, the other docs/*.md, the comments of recipes/**/*.yaml and configs/*.yaml, and the
docstrings and comments of src/**/*.py and bench/*.py) a measurement is a pointer to its results.md section, so a
number is written once and cannot disagree with itself across files. This test scans those texts for what reads
like a measurement: an amount with a unit of memory, time or speed; a speed or memory ratio (`3.0x faster`,
`0.49x TRL's peak`); a `±` interval; a signed change in points or percent. Each finding names file:line.

Settings are not measurements: a budget, a limit or a default that the code uses may keep its number (`budget_gb:
7.2`). The allow-lists are explicit: SETTINGS (settings, arithmetic and example inputs, each with why it is not a
measurement), FORMAT_EXAMPLE (the made-up cell that documents the report's format) and PENDING (figures in files
another change is rewriting, each with the results.md section that holds it).
"""
from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The two files that hold measurements: results.md the current ones, log.md the superseded ones (dated)
FIGURE_HOMES = {"results.md", "log.md"}

NUMBER = r"(?<![\w.])[~≈]?\d[\d,]*(?:\.\d+)?"
AMOUNT = re.compile(NUMBER + r" ?(?:GiB|GB|MiB|MB|kB|tok/s|s/it|it/s|docs/s|requests/s|[GT]FLOP/s"
                             r"|ms|s|min|h|seconds?|minutes?|hours?)(?![\w/])")
RATIO = re.compile(NUMBER + r"x(?![\w])")  # "45x", "0.49x"; "2 x 2048" is a shape
RATIO_WORDS = re.compile(r"faster|slower|speed|throughput|tok/s|\bpeak|\bRSS\b|\bTRL\b|lm-eval|memory", re.I)
FRACTION_SPEED = re.compile(r"(?<![\w./])1/\d{2,}(?![\w/])")  # "1/40 of the speed"
PLUS_MINUS = re.compile(r"(?:\d+(?:\.\d+)?%? ?)?±(?: ?\d+(?:\.\d+)?)?")  # a bare "±" names the symbol
INTERVAL = re.compile(r"[+-]\d+(?:\.\d+)? \[[+-]?\d+(?:\.\d+)?, [+-]?\d+(?:\.\d+)?\]")  # "+18.9 [+16.7, +21.3]"
SIGNED_CHANGE = re.compile(r"(?<![\w.])[+-]\d+(?:\.\d+)? ?(?:%|points?\b|pp\b|pts\b)")

# The example cell that docs/report.md and the report's renderer use to show the cell format (value, 95% interval,
# paired delta; a classification cell's second line): made-up values, the same ones wherever the format is shown.
FORMAT_EXAMPLE = {"57.6 ±2.1", "±2.1", "+4.2 [+1.0, +7.3]", "31.0 ±4.0", "±4.0", "50.2 ±3.1", "62% ±4", "±4"}

# Settings and arithmetic that look like measurements, each with why it is not one. Keys: (file, matched text).
SETTINGS: dict[tuple[str, str], str] = {
    ("src/findap/training/memory.py", "0.4 GB"): "arithmetic: 1,024 tokens x 49,152 vocabulary x 8 bytes",
    ("src/findap/train/loss.py", "400 MB"): "arithmetic: 2048 x 49152 x 4 bytes, shown in the line",
    ("src/findap/align/logprobs.py", "800 MB"): "arithmetic: 4096 tokens x 49,152 vocabulary x 4 bytes",
    ("src/findap/engines/hf.py", "800 MB"): "arithmetic: 2048 tokens x 49K vocabulary x 8 bytes",
    ("docs/memory.md", "32 MB"): "arithmetic: max_batch_tokens x T bytes at 16384 x 2048, shown in the line",
    ("docs/memory.md", "1.4 GB"): "arithmetic from the model's config: the default token budget x the bytes a token "
                                  "holds, derived in the same paragraph",
    ("src/findap/eval/answers.py", "300 minutes"): "an example reply the number reader parses",
    ("src/findap/eval/answers.py", "5 hours"): "an example reply the number reader parses",
    ("src/findap/eval/extract.py", "-22.22%"): "an example reply the extractor reads",
    ("bench/cpu_precision.py", "30 s"): "the bench's time budget per precision, a setting",
    ("bench/curate_scaling.py", "1.5x"): "the bench's pass criterion (issue 14's target), not a result",
}

# Measured figures in files that another change is rewriting now (issue #27), so they cannot be moved here; each
# names the results.md section that holds the figure. Remove an entry when its file is rewritten.
PENDING: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Finding:
    where: str  # file:line
    text: str  # the matched figure
    line: str  # the line it is on

    def __str__(self) -> str:
        return f"{self.where}: {self.text!r} in: {self.line.strip()[:160]}"


def figures_in_line(text: str) -> list[str]:
    """The measured-looking figures of one line of prose, comment or docstring."""
    found = [m.group(0) for m in AMOUNT.finditer(text)]
    found += [m.group(0) for m in PLUS_MINUS.finditer(text) if m.group(0) != "±"]
    found += [m.group(0) for m in INTERVAL.finditer(text)]
    found += [m.group(0) for m in SIGNED_CHANGE.finditer(text)]
    if RATIO_WORDS.search(text):
        found += [m.group(0) for m in RATIO.finditer(text)]
        found += [m.group(0) for m in FRACTION_SPEED.finditer(text)]
    return found


def markdown_lines(path: Path) -> list[tuple[int, str]]:
    """Every line: prose, tables and code blocks alike (a `# 14 min here` after a command is a figure too)."""
    return list(enumerate(path.read_text(encoding="utf-8").splitlines(), start=1))


def yaml_comment_lines(path: Path) -> list[tuple[int, str]]:
    """The comment part of each line: keys and values are settings."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith("#"):
            out.append((number, stripped))
        elif " #" in line:
            out.append((number, line[line.index(" #"):]))
    return out


def python_prose_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of a module's comments and docstrings (module, class and function), not its code or strings."""
    source = path.read_text(encoding="utf-8")
    out = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            out.append((token.start[0], token.string))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                lines = source.splitlines()[first.lineno - 1:first.end_lineno]
                out += [(first.lineno + i, line) for i, line in enumerate(lines)]
    return sorted(out)


def prose_lines(path: Path) -> list[tuple[int, str]]:
    if path.suffix == ".md":
        return markdown_lines(path)
    if path.suffix == ".yaml":
        return yaml_comment_lines(path)
    if path.suffix == ".py":
        return python_prose_lines(path)
    raise ValueError(f"{path}: no rule for a {path.suffix} file")


def measured_figures(path: Path, root: Path = REPO) -> list[Finding]:
    """The figures in PATH's prose that read like measurements and are not listed in SETTINGS."""
    name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    out = []
    for number, line in prose_lines(path):
        for text in figures_in_line(line):
            if (name, text) not in SETTINGS and (name, text) not in PENDING and text not in FORMAT_EXAMPLE:
                out.append(Finding(f"{name}:{number}", text, line))
    return out


def scanned_files(root: Path = REPO) -> list[Path]:
    docs = [root / "README.md", *(p for p in sorted((root / "docs").glob("*.md")) if p.name not in FIGURE_HOMES)]
    configs = [*sorted((root / "recipes").rglob("*.yaml")), *sorted((root / "configs").glob("*.yaml"))]
    code = [*sorted((root / "src").rglob("*.py")), *sorted((root / "bench").glob("*.py"))]
    return [*docs, *configs, *code]


# ---- the tests ----------------------------------------------------------------------------------------------------
def test_no_measured_figure_outside_results():
    findings = [f for path in scanned_files() for f in measured_figures(path)]
    assert not findings, (f"{len(findings)} measured figures outside docs/results.md and docs/log.md: link to the "
                          "results.md section instead (or, for a setting, add it to SETTINGS with why):\n"
                          + "\n".join(map(str, findings)))


def test_every_allow_list_entry_is_still_there():
    """An entry whose text is gone would silently allow the same text back later: remove it."""
    for (name, text), reason in {**SETTINGS, **PENDING}.items():
        assert reason, f"{name}: {text!r} needs a reason"
        path = REPO / name
        lines = prose_lines(path) if path.exists() else []
        assert any(text in figures_in_line(line) for _, line in lines), \
            f"{name}: {text!r} is no longer there: remove its entry from tests/test_docs_figures.py"


def test_the_homes_of_the_figures_exist_and_are_not_scanned():
    scanned = {p.name for p in scanned_files()}
    for home in FIGURE_HOMES:
        assert (REPO / "docs" / home).exists()
        assert home not in scanned


@pytest.mark.parametrize("suffix, text, figure", [
    (".py", '"""The stage-1 trainer.\n\nIt runs at 183 tok/s on the development machine."""\nX = 1\n', "183 tok/s"),
    (".py", "def f():\n    # peaks at 7.94 GiB over the whole run\n    return 1\n", "7.94 GiB"),
    (".py", 'def f():\n    """bf16 matmuls are ~45x slower than fp32 here."""\n', "~45x"),
    (".md", "The recipe takes 2 h 45 min on this CPU.\n", "45 min"),
    (".md", "Finance rose 29.5 ±2.3 over the base model.\n", "29.5 ±2.3"),
    (".md", "cpt_it: +18.9 [+16.7, +21.3]* on finance.\n", "+18.9 [+16.7, +21.3]"),
    (".md", "FPB gained +33.2 points.\n", "+33.2 points"),
    (".md", "findap-ckpt at 0.49x TRL's peak RSS.\n", "0.49x"),
    (".md", "bf16 runs at 1/40 of the speed of fp32.\n", "1/40"),
    (".yaml", "# peak 7.23 GiB measured\ntrain:\n  lr: 1e-4\n", "7.23 GiB"),
])
def test_a_pasted_measurement_is_found(tmp_path, suffix, text, figure):
    path = tmp_path / f"pasted{suffix}"
    path.write_text(text, encoding="utf-8")
    assert figure in [f.text for f in measured_figures(path, root=tmp_path)]


@pytest.mark.parametrize("suffix, text", [
    (".py", 'def f(budget_gb: float = 7.2):\n    """Plan for BUDGET_GB GiB; 3e-4 is the learning rate."""\n'
            '    return "used 183 tok/s"  # a string in code, not prose\n'),
    (".yaml", "train:\n  memory: {budget_gb: 7.2}\n  lr: 1e-4\n"),
    (".md", "Split 80/20, seed 0, 16 prompts x 4 samples, a 2,048-token micro-batch.\n"),
    (".md", "A cell reads `57.6 ±2.1 (+4.2 [+1.0, +7.3]*)`; a ± would put one end outside [0, 100].\n"),
])
def test_settings_and_code_are_not_figures(tmp_path, suffix, text):
    path = tmp_path / f"settings{suffix}"
    path.write_text(text, encoding="utf-8")
    assert measured_figures(path, root=tmp_path) == []
