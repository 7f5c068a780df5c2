"""A corpus of model replies (tests/data/replies.yaml) read by FinEval's extractors and distillation's parsers.

Each case is a reply written the way chat models answer (markdown, trailing explanations, self-corrections, CoT
conclusions) with the parse a careful human reader gives it. Every case named in issue #11 is in it.

Run as a script to count how many cases another revision's code gets wrong (the old readers are loaded from
git, nothing is checked out):

    .venv/bin/python tests/test_extraction_corpus.py --against HEAD
"""
from __future__ import annotations

import sys
import types
from collections import Counter
from pathlib import Path

import pytest
import yaml

from findap.distill.genprm import numbered_steps
from findap.distill.judges import parse_prm
from findap.distill.prompts import ReasoningItem
from findap.distill.trajectories import check_answer, split_steps
from findap.eval.extract import extract_label, extract_letter, extract_number, extract_tatqa
from findap.eval.task import LETTERS, TaskSpec

CORPUS = Path(__file__).parent / "data" / "replies.yaml"
KINDS = {"label", "letter", "number", "tatqa", "prm", "prm_shown", "check"}


def load_corpus() -> tuple[dict, list[dict]]:
    data = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    for n, case in enumerate(data["cases"]):
        missing = {"id", "kind", "reply", "expected"} - set(case)
        if missing or case["kind"] not in KINDS:
            raise ValueError(f"{CORPUS}: case {n} ({case.get('id')}): missing {sorted(missing)} or unknown kind")
    return data["label_sets"], data["cases"]


LABEL_SETS, CASES = load_corpus()


def _spec(label_set: dict) -> TaskSpec:
    return TaskSpec.model_validate({
        "name": "corpus", "capability": "task", "domain": "finance", "novelty": "similar",
        "answer_type": "classification", "source": {"loader": "jsonl", "args": {"path": "x"}},
        "labels": label_set["labels"], "synonyms": label_set.get("synonyms", {})})


def current_readers() -> dict:
    return {"extract_label": extract_label, "extract_letter": extract_letter, "extract_number": extract_number,
            "extract_tatqa": extract_tatqa, "parse_prm": parse_prm, "check_answer": check_answer,
            "shown_steps": lambda solution: numbered_steps(split_steps(solution))}


def parse(case: dict, readers: dict):
    """What `readers` make of the case's reply, in the corpus's `expected` form."""
    kind, reply = case["kind"], case["reply"]
    if kind == "label":
        return readers["extract_label"](reply, {}, _spec(LABEL_SETS[case["labels"]]))
    if kind == "letter":
        choices = case.get("choices") or [f"<option text {i}>" for i in range(case["n_choices"])]
        index = readers["extract_letter"](reply, {"choices": choices}, None)
        return None if index is None else LETTERS[index]
    if kind == "number":
        return readers["extract_number"](reply, {}, None)
    if kind == "tatqa":
        return readers["extract_tatqa"](reply, {}, None)
    if kind == "prm":
        judged = readers["parse_prm"](reply)
        return None if judged is None else {"first_error": judged.first_error, "correction": judged.correction}
    if kind == "prm_shown":
        return readers["shown_steps"](reply)
    item = ReasoningItem(case["id"], case["question"], str(case["gold"]), case["answer_type"], "corpus")
    return readers["check_answer"](reply, item)


@pytest.mark.parametrize("case", CASES, ids=[f"{c['kind']}:{c['id']}" for c in CASES])
def test_reply_parses_as_stated(case):
    assert parse(case, current_readers()) == case["expected"]


def test_corpus_size_kinds_and_issue_cases():
    kinds = Counter(c["kind"] for c in CASES)
    assert len(CASES) >= 70 and set(kinds) == KINDS
    assert len({(c["kind"], c["id"]) for c in CASES}) == len(CASES)
    replies = {c["reply"] for c in CASES}
    for named_in_issue in (
        "Negative. It is not a positive development.",
        "Answer: neutral (neither hawkish nor dovish)",
        "Answer: C, since option A ignores the tax shield.",
        "B. Option A ignores taxes.",
        "Answer: 990 (rounded to 2 decimals)",
        "990 dollars after 8 years",
    ):
        assert named_in_issue in replies


# ---------------------------------------------------------------------------- the same corpus on older code
def _module_from_git(ref: str, path: str, name: str) -> types.ModuleType:
    """A module built from `path` at git `ref` (registry decorators made inert so nothing re-registers)."""
    import subprocess

    source = subprocess.run(["git", "show", f"{ref}:{path}"], check=True, capture_output=True, text=True,
                            cwd=Path(__file__).parents[1]).stdout
    source = source.replace("from findap.eval.registry import register_extractor",
                            "register_extractor = lambda name: (lambda fn: fn)")
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    exec(compile(source, f"{ref}:{path}", "exec"), module.__dict__)
    return module


def readers_at(ref: str) -> dict:
    extract = _module_from_git(ref, "src/findap/eval/extract.py", "old_extract")
    trajectories = _module_from_git(ref, "src/findap/distill/trajectories.py", "old_trajectories")
    judges = _module_from_git(ref, "src/findap/distill/judges.py", "old_judges")
    try:
        genprm = _module_from_git(ref, "src/findap/distill/genprm.py", "old_genprm")
        numbering = getattr(genprm, "numbered_steps", None)
    except Exception:  # noqa: BLE001 - an older genprm may not import on its own; then it showed raw steps
        numbering = None
    return {"extract_label": extract.extract_label, "extract_letter": extract.extract_letter,
            "extract_number": extract.extract_number, "extract_tatqa": extract.extract_tatqa,
            "parse_prm": judges.parse_prm, "check_answer": trajectories.check_answer,
            "shown_steps": lambda s: (numbering or (lambda steps: steps))(trajectories.split_steps(s))}


def wrong_cases(readers: dict) -> list[tuple[str, object, object]]:
    wrong = []
    for case in CASES:
        try:
            got = parse(case, readers)
        except Exception as exc:  # noqa: BLE001 - a crash is a wrong parse too
            got = f"error: {exc!r}"
        if got != case["expected"]:
            wrong.append((f"{case['kind']}:{case['id']}", got, case["expected"]))
    return wrong


if __name__ == "__main__":
    ref = sys.argv[sys.argv.index("--against") + 1] if "--against" in sys.argv else "HEAD"
    old, new = wrong_cases(readers_at(ref)), wrong_cases(current_readers())
    for name, got, expected in old:
        print(f"{ref} wrong  {name}: got {got!r}, expected {expected!r}")
    print(f"{len(CASES)} cases: {ref} gets {len(old)} wrong "
          f"({dict(Counter(n.split(':')[0] for n, _, _ in old))}); the working tree gets {len(new)} wrong")
