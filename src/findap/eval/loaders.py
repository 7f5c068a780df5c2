"""Loaders: original dataset formats -> FinEval docs (see task.py for the doc fields per answer type).

Every loader is `fn(root: Path, spec: TaskSpec, **args) -> list[dict]`, registered by name and referenced from
a task YAML. Paths are relative to the data root ($FINDAP_DATA) unless absolute. Bad rows raise
`findap.io.DataError` naming file, line and field. Generic formats go through `findap.io.read_records`. The
datasets that curation and distillation read too (FPB `sentence@label`, FiNER CoNLL, FOMC, German credit, TAT-QA
nesting, CFA choices inside the text, GSM8K `#### N`) are parsed in findap.datasets, so a row reads the same on
every side; the other original formats (ECTSum folders, LLM-Adapters options inside the instruction, ...) here.
"""
from __future__ import annotations

import glob
import random
import re
from pathlib import Path

from findap.datasets import RowError, cfa, finer, fomc, fpb, tatqa
from findap.datasets.finer import entity_spans
from findap.datasets.german_credit import decode_row
from findap.datasets.gsm8k import split_answer
from findap.io import DataError, read_records, read_text
from findap.eval.availability import hub_dataset_source
from findap.eval.registry import register_loader
from findap.eval.task import LETTERS


def _path(root: Path, path: str) -> Path:
    """Absolute, `findap:` (inside the installed package, for shipped demo data) or relative to the data root."""
    if path.startswith("findap:"):
        return Path(__file__).resolve().parents[1] / path[len("findap:"):]
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(root) / p


def _lines(path: Path) -> list[str]:
    if not path.exists():
        raise DataError(path, None, None, "file not found (set FINDAP_DATA to the data directory)")
    lines = read_text(path).splitlines()  # a byte that is not UTF-8 is named by line and offset
    if not any(line.strip() for line in lines):
        raise DataError(path, None, None, "the file is empty: a task needs at least one row")
    return lines


def _records(file: Path, required: tuple = ()) -> list[tuple[int | str, dict]]:
    """(line, row) pairs: the file line for JSONL, the line a record starts on for CSV/TSV (quoted cells may span
    lines), the sheet row for xlsx, `item i` for JSON lists. An empty file is an error: a task scores no rows."""
    rows = read_records(file, required=required, keep_line=True)
    if not rows:
        raise DataError(file, None, None, "the file is empty: a task needs at least one row")
    suffix = file.suffix.lower()
    if suffix in (".csv", ".tsv"):
        for row in rows:
            row.pop("__line__", None)
        return list(zip(_csv_start_lines(file, "\t" if suffix == ".tsv" else ","), rows))
    return [(row.pop("__line__"), row) for row in rows]


def _csv_start_lines(file: Path, delimiter: str) -> list[int]:
    """The line each CSV record starts on (quoted cells may span several lines, as MMLU's do)."""
    import csv
    import io

    starts = []
    with io.StringIO(read_text(file), newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        next(reader, None)
        prev = reader.line_num
        for _ in reader:
            starts.append(prev + 1)
            prev = reader.line_num
    return starts


# ---- finance tasks ------------------------------------------------------------------------------------------
@register_loader("fpb")
def load_fpb(root, spec, path: str) -> list[dict]:
    """Financial PhraseBank: one `sentence@label` per line."""
    file = _path(root, path)
    docs = []
    for lineno, line in enumerate(_lines(file), 1):
        if not line.strip():
            continue
        try:
            row = fpb.parse_line(line)
        except RowError as err:
            raise DataError(file, lineno, err.field, err.problem) from None
        if spec.labels and row.label not in spec.labels:
            raise DataError(file, lineno, "label", f"{row.label!r} is not one of {spec.labels}")
        docs.append({"id": f"fpb-{lineno}", "text": row.sentence, "gold": row.label})
    return docs


@register_loader("fomc_xlsx")
def load_fomc(root, spec, path: str, label_names: tuple = ("dovish", "hawkish", "neutral")) -> list[dict]:
    """FOMC hawkish-dovish xlsx: columns sentence, label (0 dovish, 1 hawkish, 2 neutral)."""
    file = _path(root, path)
    docs = []
    for line, row in _records(file, required=fomc.COLUMNS):
        try:
            parsed = fomc.parse_row(row["sentence"], row["label"])
        except RowError as err:
            raise DataError(file, line, err.field, err.problem) from None
        docs.append({"id": f"fomc-{line}", "text": parsed.sentence, "gold": label_names[parsed.code]})
    return docs


@register_loader("conll_ner")
def load_conll(root, spec, path: str, min_entities: int = 1) -> list[dict]:
    """CoNLL `token POS chunk TAG` lines, blank line between sentences (findap.datasets.finer); IOB1 tags become
    IOB2, types outside spec.entity_types -> O."""
    file = _path(root, path)
    keep = set(spec.entity_types)

    def bad(lineno: int, err: RowError) -> None:
        raise DataError(file, lineno, err.field, err.problem)

    docs = []
    for sentence in finer.sentences(enumerate(_lines(file), 1), bad):
        iob = finer.iob2([t if t[2:] in keep else "O" for t in sentence.tags])
        ents = entity_spans(sentence.tokens, iob)
        if len(ents) >= min_entities:
            docs.append({"id": f"ner-{sentence.start}", "text": sentence.text, "tokens": sentence.tokens, "tags": iob,
                         "gold": iob, "entities": ents})
    return docs


@register_loader("ectsum")
def load_ectsum(root, spec, path: str, folder: str = "val", max_input_chars: int = 6000) -> list[dict]:
    """ECTSum: `<folder>/ects/X.txt` transcript and `<folder>/gt_summaries/X.txt` bullet summary.

    Transcripts run to tens of thousands of characters; `max_input_chars` keeps the first part (whole lines)
    so the prompt fits small context windows; the key figures are usually stated early in the call.
    """
    base = _path(root, path) / folder
    ects, sums = base / "ects", base / "gt_summaries"
    if not ects.is_dir():
        raise DataError(ects, None, None, "ECTSum transcript folder not found")
    docs = []
    for f in sorted(ects.glob("*.txt")):
        summary_file = sums / f.name
        if not summary_file.exists():
            raise DataError(summary_file, None, "summary", "no summary for this transcript")
        text, kept = "", []
        for line in read_text(f).splitlines():
            if len(text) + len(line) > max_input_chars and kept:
                break
            kept.append(line)
            text = "\n".join(kept)
        summary = read_text(summary_file).strip()
        if not summary:
            raise DataError(summary_file, 1, "summary", "empty summary")
        docs.append({"id": f"ectsum-{f.stem}", "text": text, "gold": summary})
    return docs


@register_loader("tatqa")
def load_tatqa(root, spec, path: str) -> list[dict]:
    """TAT-QA JSON reports {table, paragraphs, questions[]} (findap.datasets.tatqa); one doc per question, every
    question field required. `report` is the report's hash key (Report.key_text, as curation hashes it): the task
    carves by report, not question."""
    file = _path(root, path)
    data = read_records(file)
    docs = []
    for i, item in enumerate(data):
        try:
            report = tatqa.read_report(item)
        except RowError as err:
            raise DataError(file, f"item {i}", err.field, err.problem) from None
        for raw in report.questions:
            for field in ("uid", "question", "answer", "answer_type", "scale"):
                if field not in raw:
                    raise DataError(file, f"item {i}", f"questions.{field}", "missing")
            q = tatqa.read_question(raw)
            gold = [str(a) for a in q.answer] if isinstance(q.answer, list) else [str(q.answer)]
            docs.append({"id": q.uid, "question": q.question, "context": report.context, "report": report.key_text,
                         "gold": gold, "gold_raw": q.answer, "gold_type": q.answer_type, "scale": q.scale})
    return docs


@register_loader("cfa_json")
def load_cfa(root, spec, path: str) -> list[dict]:
    """CFA exams in the FinBen layout {query, answer, text, choices, gold}; options are inside `text`
    (findap.datasets.cfa). `source_text` keeps the raw `text` (what curation hashes for the train/eval split)."""
    file = _path(root, path)
    docs = []
    for n, (where, row) in enumerate(_records(file, required=("text", "gold"))):
        try:
            parsed = cfa.parse_text(row["text"])
        except RowError as err:
            raise DataError(file, where, err.field, err.problem) from None
        gold = int(row["gold"])
        if not 0 <= gold < len(parsed.choices):
            raise DataError(file, where, "gold", f"{gold} is not a valid option index")
        docs.append({"id": f"cfa-{n}", "question": parsed.question, "choices": parsed.choices, "gold": gold,
                     "source_text": row["text"]})
    return docs


@register_loader("german_credit")
def load_german(root, spec, path: str, seed: int = 42, fractions: tuple = (0.7, 0.1, 0.2),
                seeded_split: bool = True) -> list[dict]:
    """UCI German credit `german.data` (20 attributes + 1 good / 2 bad) with the FinBen-style seeded
    70/10/20 train/dev/unseen split, or (`seeded_split: false`) no fixed split, for the task's hash carve on
    `source_line` (the raw line, what curation hashes)."""
    file = _path(root, path)
    docs = []
    for lineno, line in enumerate(_lines(file), 1):
        cols = line.split()
        if not cols:
            continue
        try:
            decoded, gold = decode_row(cols)
        except RowError as err:
            raise DataError(file, lineno, err.field, err.problem) from None
        parts = [f"{name}: {meaning}" for name, meaning in decoded]
        docs.append({"id": f"german-{lineno}", "text": "; ".join(parts), "gold": gold,
                     "source_line": line})
    return assign_seeded_split(docs, fractions, seed) if seeded_split else docs


def assign_seeded_split(docs: list[dict], fractions, seed: int) -> list[dict]:
    """Seeded train/dev/unseen `split` fields for datasets without one; docs come back in the shuffled order, so a
    `limit` takes a random sample rather than the first file's rows."""
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three numbers (train, dev, unseen) summing to 1, got {fractions}")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_train, n_dev = round(fractions[0] * len(docs)), round(fractions[1] * len(docs))
    for rank, i in enumerate(order):
        docs[i]["split"] = "train" if rank < n_train else "dev" if rank < n_train + n_dev else "unseen"
    return [docs[i] for i in order]


@register_loader("financebench_jsonl")
def load_financebench(root, spec, path: str) -> list[dict]:
    """FinanceBench's original `financebench_open_source.jsonl`: question, answer, evidence[evidence_text]."""
    file = _path(root, path)
    docs = []
    for line, row in _records(file, required=("question", "answer")):
        evidence = row.get("evidence") or []
        if not isinstance(evidence, list):
            raise DataError(file, line, "evidence", "expected a list")
        context = "\n\n".join(str(e.get("evidence_text", "")).strip() for e in evidence if isinstance(e, dict))
        docs.append({"id": str(row.get("financebench_id") or line), "question": row["question"],
                     "context": context, "turns": [_with_context(row["question"], context)],
                     "reference": str(row["answer"]), "gold": str(row["answer"]),
                     "category": str(row.get("question_type") or "financebench")})
    return docs


def _with_context(question: str, context: str) -> str:
    return f"{context}\n\nQuestion: {question}" if context else question


# ---- general tasks ------------------------------------------------------------------------------------------
@register_loader("mmlu_csv")
def load_mmlu(root, spec, eval_glob: str, pool_glob: str | None = None, subjects: list | None = None) -> list[dict]:
    """MMLU CSVs `question,choice0..3,answer` (answer = index). Files matching `pool_glob` become the few-shot
    pool; `subjects` keeps only those subjects (MMLU-Finance)."""
    docs = []
    for pattern, split in ((eval_glob, None), (pool_glob, "train")):
        if not pattern:
            continue
        files = sorted(glob.glob(str(_path(root, pattern))))
        if not files:
            raise DataError(_path(root, pattern), None, None, "no MMLU CSV file matches")
        for f in files:
            subject = re.sub(r"_(dev|test|val)$", "", Path(f).stem)
            if subjects and subject not in subjects:
                continue
            for line, row in _records(Path(f), required=("question", "choice0", "choice1", "answer")):
                choices = [row[k] for k in ("choice0", "choice1", "choice2", "choice3") if row.get(k) not in (None, "")]
                try:
                    gold = int(row["answer"])
                    assert 0 <= gold < len(choices)
                except (ValueError, AssertionError):
                    raise DataError(f, line, "answer", f"{row['answer']!r} is not a choice index") from None
                doc = {"id": f"{Path(f).stem}-{line}", "question": row["question"],
                       "choices": choices, "gold": gold, "subject": subject.replace("_", " ")}
                if split:
                    doc["split"] = split
                docs.append(doc)
    if not docs:
        raise DataError(_path(root, eval_glob), None, "subjects", f"no rows for subjects {subjects}")
    return docs


_OPTION = re.compile(r"(?:Answer|Solution|Option|Ending)(\d+):\s*(.*?)(?=\s*(?:Answer|Solution|Option|Ending)\d+:|\n\nAnswer format:|$)", re.S)


@register_loader("llm_adapters")
def load_llm_adapters(root, spec, path: str) -> list[dict]:
    """LLM-Adapters JSON {instruction, answer}: options inside the instruction (`Answer1: ...`, `Solution1: ...`),
    or a true/false question (BoolQ). The answer is `answerN`/`solutionN` or `true`/`false`."""
    file = _path(root, path)
    docs = []
    for n, (where, row) in enumerate(_records(file, required=("instruction", "answer"))):
        text = row["instruction"]
        head, _, _ = text.partition("\n\n")
        question = re.sub(r"^.*?question:\s*", "", head, count=1, flags=re.S).strip()
        answer = str(row["answer"]).strip().lower()
        found = _OPTION.findall(text)
        if found:
            choices = [t.strip() for _, t in found]
            m = re.fullmatch(r"[a-z]+(\d+)", answer)
            if not m or not 1 <= int(m.group(1)) <= len(choices):
                raise DataError(file, where, "answer", f"{answer!r} does not name one of {len(choices)} options")
            gold = int(m.group(1)) - 1
        elif answer in ("true", "false"):
            choices, gold = ["true", "false"], 0 if answer == "true" else 1
        else:
            raise DataError(file, where, "instruction", "no options found and the answer is not true/false")
        docs.append({"id": f"{file.parent.name}-{n}", "question": question, "choices": choices, "gold": gold})
    return docs


@register_loader("gsm8k")
def load_gsm8k(root, spec, path: str) -> list[dict]:
    """GSM8K JSONL {question, answer}; the answer's last line is `#### N`."""
    file = _path(root, path)
    docs = []
    for line, row in _records(file, required=("question", "answer")):
        try:
            solution = split_answer(row["answer"])
        except RowError as err:
            raise DataError(file, line, err.field, err.problem) from None
        docs.append({"id": f"gsm8k-{line}", "question": row["question"], "context": "",
                     "gold": [solution.number], "scale": "", "gold_type": "number",
                     "solution": row["answer"]})
    return docs


@register_loader("mtbench")
def load_mtbench(root, spec, path: str) -> list[dict]:
    """MT-bench question.jsonl {question_id, category, turns[2], reference?}."""
    file = _path(root, path)
    docs = []
    for line, row in _records(file, required=("question_id", "turns")):
        if not isinstance(row["turns"], list) or not all(isinstance(t, str) for t in row["turns"]):
            raise DataError(file, line, "turns", "expected a list of strings")
        ref = row.get("reference")
        docs.append({"id": f"mtbench-{row['question_id']}", "turns": row["turns"],
                     "category": row.get("category", ""), "reference": ref, "gold": ref})
    return docs


# ---- the generic local format (docs/tasks.md) ---------------------------------------------------------------
@register_loader("jsonl")
def load_jsonl(root, spec, path: str, fields: dict | None = None) -> list[dict]:
    """The generic local task format: one JSON object per line, fields per answer type (docs/tasks.md).
    `fields` renames columns, e.g. {text: sentence, label: sentiment}."""
    file = _path(root, path)
    rename = {v: k for k, v in (fields or {}).items()}
    kind = spec.answer_type
    required = {"classification": ("text", "label"), "multiple_choice": ("question", "choices", "answer"),
                "numeric_qa": ("question", "answer"), "ner": ("tokens", "tags"),
                "summarization": ("text", "summary"), "judge": ()}[kind]
    docs = []
    for line, row in _records(file):
        row = {rename.get(k, k): v for k, v in row.items()}
        for name in required:
            if row.get(name) in (None, "", []):
                raise DataError(file, line, (fields or {}).get(name, name), "missing or empty")
        docs.append(_generic_doc(row, kind, spec, file, line))
    return docs


def _generic_doc(row: dict, kind: str, spec, file, line) -> dict:
    doc = dict(row)
    doc["id"] = str(row.get("id", f"{file.stem}-{line}"))
    if kind == "classification":
        if str(row["label"]) not in spec.labels:
            raise DataError(file, line, "label", f"{row['label']!r} is not one of {spec.labels}")
        doc["gold"] = str(row["label"])
    elif kind == "multiple_choice":
        choices, ans = row["choices"], row["answer"]
        if not isinstance(choices, list) or len(choices) < 2:
            raise DataError(file, line, "choices", "expected a list of at least 2 options")
        if isinstance(ans, str) and len(ans) == 1 and ans.upper() in LETTERS[: len(choices)]:
            ans = LETTERS.index(ans.upper())
        if not isinstance(ans, int) or not 0 <= ans < len(choices):
            raise DataError(file, line, "answer", f"{row['answer']!r} is not an option index or letter")
        doc["gold"] = ans
    elif kind == "numeric_qa":
        ans = row["answer"]
        doc["gold"] = [str(a) for a in ans] if isinstance(ans, list) else [str(ans)]
        doc.setdefault("context", "")
        doc.setdefault("scale", "")
        doc.setdefault("gold_type", "span" if isinstance(ans, list) else "number")
    elif kind == "ner":
        tokens, tags = row["tokens"], row["tags"]
        if len(tokens) != len(tags):
            raise DataError(file, line, "tags", f"{len(tags)} tags for {len(tokens)} tokens")
        bad = [t for t in tags if t != "O" and not re.fullmatch(r"[BI]-\w+", t)]
        if bad:
            raise DataError(file, line, "tags", f"{bad[0]!r} is not an IOB tag")
        doc.update(text=" ".join(tokens), gold=tags, entities=entity_spans(tokens, tags))
    elif kind == "summarization":
        doc["gold"] = row["summary"]
    elif kind == "judge":
        turns = row.get("turns") or ([row["question"]] if row.get("question") else None)
        if not turns:
            raise DataError(file, line, "turns", "a judge task row needs 'turns' (list) or 'question'")
        doc.update(turns=turns, reference=row.get("reference"), gold=row.get("reference"))
    return doc


# ---- Hugging Face hub sources (for users online) ------------------------------------------------------------
def _hub_rows(dataset: str, config: str | None, split: str) -> list[dict]:
    dataset = hub_dataset_source(dataset)  # a FINDAP_HUB_MIRROR copy when there is one, else the hub id
    return read_records(f"hf:{dataset}{':' + config if config else ''}@{split}")


@register_loader("fineval_hub")
def load_fineval_hub(root, spec, config: str, split: str = "test", dataset: str = "Salesforce/FinEval") -> list[dict]:
    """A `Salesforce/FinEval` config in the FinBen layout {id, query, answer, text, choices, gold}."""
    rows = _hub_rows(dataset, config, split)
    src = f"hf:{dataset}:{config}"
    docs = []
    for i, row in enumerate(rows):
        text, answer = row.get("text") or row.get("query"), row.get("answer")
        if text is None or answer is None:
            raise DataError(src, f"row {i}", "text" if text is None else "answer", "missing")
        doc = {"id": str(row.get("id", f"{config}-{i}")), "text": str(text), "question": str(text), "context": ""}
        kind = spec.answer_type
        if kind == "classification":
            doc["gold"] = _hub_label(str(answer), spec)
        elif kind == "multiple_choice":
            choices = list(row.get("choices") or [])
            doc.update(choices=choices, gold=int(row["gold"]))
        elif kind == "ner":
            from findap.eval.extract import entities_to_tags

            tokens = str(text).split()
            tags = entities_to_tags(str(answer), tokens, spec.entity_types)
            doc.update(tokens=tokens, tags=tags, gold=tags, entities=entity_spans(tokens, tags))
        elif kind == "numeric_qa":
            doc.update(gold=[str(answer)], scale="", gold_type="span")
        else:
            doc["gold"] = str(answer)
        docs.append(doc)
    return docs


def _hub_label(answer: str, spec) -> str:
    low = answer.strip().lower()
    for label in spec.labels:
        if low == label.lower() or low in [s.lower() for s in spec.synonyms.get(label, [])]:
            return label
    return answer.strip()


def _dig(row: dict, dotted: str):
    for key in dotted.split("."):
        row = row[key]
    return row


@register_loader("hf_mc")
def load_hf_mc(root, spec, dataset: str, split: str, question: str, choices, label: str,
               config: str | None = None, label_kind: str = "index") -> list[dict]:
    """A multiple-choice hub dataset. `question` is a template over row fields; `choices` a (dotted) list field or
    a list of fields; `label_kind`: index | one_based | letter (digits accepted as one-based) | text."""
    rows = _hub_rows(dataset, config, split)
    docs = []
    for i, row in enumerate(rows):
        opts = [str(row[c]) for c in choices] if isinstance(choices, list) else [str(c) for c in _dig(row, choices)]
        raw = str(_dig(row, label)).strip()
        if label_kind == "text":
            gold = opts.index(raw)
        elif label_kind == "letter" and not raw.isdigit():
            gold = LETTERS.index(raw.upper())
        elif label_kind in ("one_based", "letter"):
            gold = int(raw) - 1
        else:
            gold = int(raw)
        doc = {"id": f"{dataset.split('/')[-1]}-{i}", "question": question.format_map(row), "choices": opts,
               "gold": gold}
        if "subject" in row:  # MMLU's prompt names the subject, as the local CSV loader's docs do
            doc["subject"] = str(row["subject"]).replace("_", " ")
        docs.append(doc)
    return docs


@register_loader("hf_qa")
def load_hf_qa(root, spec, dataset: str, split: str, question: str, answers: str,
               config: str | None = None) -> list[dict]:
    """An open-QA hub dataset (NQ-open): `answers` names a field holding one or several acceptable answers."""
    rows = _hub_rows(dataset, config, split)
    docs = []
    for i, row in enumerate(rows):
        gold = _dig(row, answers)
        gold = [str(g) for g in gold] if isinstance(gold, list) else [str(gold)]
        docs.append({"id": f"{dataset.split('/')[-1]}-{i}", "question": question.format_map(row), "context": "",
                     "gold": gold, "scale": "", "gold_type": "text"})
    return docs


# ---- demo data (src/findap/demo) ----------------------------------------------------------------------------
@register_loader("demo_exercises")
def load_demo_exercises(root, spec, n: int = 60, seed: int = 7) -> list[dict]:
    """Generated finance exercises (findap.demo.exercises): numeric answers, worked solutions."""
    from findap.demo.exercises import generate_exercises

    return [{"id": ex["id"], "question": ex["question"], "context": "", "gold": [str(ex["answer"])],
             "scale": "", "gold_type": "number", "solution": ex["solution"]} for ex in generate_exercises(n, seed)]


_MATHQA_OPTION = re.compile(r"([a-e])\s*\)\s*(.*?)\s*(?=,\s*[a-e]\s*\)|$)")


@register_loader("mathqa_hub")
def load_mathqa_hub(root, spec, dataset: str = "allenai/math_qa", split: str = "test") -> list[dict]:
    """MathQA: options come as one string 'a ) 38 , b ) 27.675 , ...'; the answer is a letter."""
    rows = _hub_rows(dataset, None, split)
    docs = []
    for i, row in enumerate(rows):
        found = _MATHQA_OPTION.findall(str(row.get("options", "")))
        if not found:
            raise DataError(f"hf:{dataset}", f"row {i}", "options", "could not read options a) .. e)")
        letters = [letter for letter, _ in found]
        answer = str(row.get("correct", "")).strip().lower()
        if answer not in letters:
            raise DataError(f"hf:{dataset}", f"row {i}", "correct", f"{answer!r} is not one of {letters}")
        docs.append({"id": f"mathqa-{i}", "question": str(row["Problem"]), "choices": [t for _, t in found],
                     "gold": letters.index(answer)})
    return docs


@register_loader("demo")
def load_demo_set(root, spec, name: str, path: str | None = None) -> list[dict]:
    """A shipped demo dataset (findap/demo/data) or a user file in its format, with the demo's own hash split
    (train / dev / test -> train / dev / unseen), so eval never scores rows that curate trains on."""
    from findap.demo.load import load_demo
    from findap.demo.splits import split_role

    rows = load_demo(name, path=_path(root, path) if path else None)
    roles = {"train": "train", "dev": "dev", "test": "unseen"}
    docs = []
    for row in rows:
        doc = {"id": str(row["id"]), "split": roles[split_role(str(row["id"]))]}
        if spec.answer_type == "classification":
            doc.update(text=row.get("sentence") or row.get("text"), gold=row["label"])
        elif spec.answer_type == "multiple_choice":
            doc.update(question=row["question"], choices=row["choices"], gold=int(row["gold"]))
        elif spec.answer_type == "numeric_qa":
            doc.update(question=row["question"], context="", gold=[str(row["answer"])], scale="",
                       gold_type="number", solution=row.get("solution"))
        else:
            raise ValueError(f"demo loader: answer type {spec.answer_type} is not supported")
        docs.append(doc)
    return docs
