"""Task registry and loaders: the Table 1 task set, loaders on the real files in the shared data directory,
clear file:line:field errors on broken copies, seeded and hash splits, few-shot isolation, the generic local format."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from findap.eval.registry import all_specs, get_task, groups, load_spec, resolve
from findap.eval.task import Task
from findap.io import DataError

TABLE1 = {
    "FPB", "FiQA SA", "FOMC", "NER", "EDTSUM", "MMLU", "AI2-ARC", "Nq-open", "MMLU-Finance", "Flare-ECTSUM", "MLESG",
    "MA", "SM-Bigdata", "SM-ACL", "SM-CIKM", "CRA-CCF", "CRA-CCFraud", "Flare-German", "Flare-Astralian",
    "CRA-LendingClub", "CRA-Polish", "CRA-Taiwan", "CRA-ProroSeguro", "CRA-TravelInsurance", "Flare-TATQA",
    "Finance Bench", "MT-bench", "MathQA", "Social-IQA", "Open-book-qa", "Hellaswag", "Winogrande", "PIQA",
    "CFA-Easy", "CFA-Challenge",
}


def test_all_35_table1_datasets_are_tasks_with_tags_and_sources():
    specs = all_specs()
    table1 = {s.table1: s for s in specs.values() if s.table1}
    assert set(table1) == TABLE1
    assert len(groups()["fineval"]) == 35
    assert len(groups()["fineval-similar"]) == 5 and len(groups()["fineval-novel"]) == 30
    for s in table1.values():
        assert s.source is not None or s.hub is not None
    # FinanceBench comes from the original jsonl: the hub's FinanceBench config holds LendingClub rows
    fb = table1["Finance Bench"]
    assert fb.hub is None and fb.source.loader == "financebench_jsonl" and fb.answer_type == "judge"
    assert table1["MT-bench"].answer_type == "judge" and table1["MT-bench"].capability.value == "chat"
    assert {s.name for s in resolve(["fineval-similar"])} == {"fpb", "fiqa_sa", "fomc", "ner", "edtsum"}
    assert all(s.hub_config is None or s.hub.args.get("config") == s.hub_config for s in specs.values() if s.hub)


# (task, rows loaded from the real file, field checks)
REAL = [
    ("fpb", 3625, lambda d: d["gold"] in ("positive", "neutral", "negative")),
    ("fomc", 1984, lambda d: d["gold"] in ("dovish", "hawkish", "neutral")),
    ("ner", 511, lambda d: len(d["tokens"]) == len(d["tags"]) and d["entities"]),
    ("tatqa", 1668, lambda d: d["gold"] and d["gold_type"] in ("span", "multi-span", "arithmetic", "count")),
    ("cfa_easy", 1032, lambda d: len(d["choices"]) == 3 and 0 <= d["gold"] < 3),
    ("flare_german", 1000, lambda d: d["gold"] in ("good", "bad") and "credit amount" in d["text"]),
    ("mmlu", 5805, lambda d: len(d["choices"]) == 4),
    ("arc", 2376, lambda d: len(d["choices"]) >= 3),
    ("piqa", 1838, lambda d: len(d["choices"]) == 2),
    ("boolq", 3270, lambda d: d["choices"] == ["true", "false"]),
    ("gsm8k", 7473, lambda d: float(d["gold"][0]) == float(d["gold"][0])),
    ("mt_bench", 80, lambda d: len(d["turns"]) == 2),
    ("ectsum", 249, lambda d: d["text"] and d["gold"]),
]


@pytest.mark.parametrize("name,n,check", REAL, ids=[r[0] for r in REAL])
def test_loaders_read_the_real_files(shared_data, name, n, check):
    task = get_task(name, root=shared_data)
    docs = task.all_docs
    assert len(docs) == n
    assert all(check(d) for d in docs)
    assert len({d["id"] for d in docs}) == n


def test_real_file_details(shared_data):
    fomc = Counter(d["gold"] for d in get_task("fomc", root=shared_data).all_docs)
    assert fomc == {"neutral": 979, "dovish": 521, "hawkish": 484}  # label column 2 / 0 / 1 of the xlsx
    ner = get_task("ner", root=shared_data).all_docs
    first = next(d for d in ner if "SILICON" in d["tokens"])
    # FiNER writes I-ORG for every entity token; the loader starts each span with B-
    i = first["tokens"].index("SILICON")
    assert first["tags"][i : i + 3] == ["B-ORG", "I-ORG", "I-ORG"]
    assert ("SILICON VALLEY BANK", "ORG") in first["entities"]
    cfa = get_task("cfa_easy", root=shared_data).all_docs[0]
    assert cfa["choices"] == ["maturity.", "liquidity.", "expected inflation."] and cfa["gold"] == 2
    arc = get_task("arc", root=shared_data).all_docs[0]
    assert arc["choices"][0].startswith("Sunlight is the source") and arc["gold"] == 0
    assert arc["question"].startswith("Which statement best explains why photosynthesis")


def test_german_credit_split_is_curations_hash_split(shared_data):
    from findap.eval.loaders import load_german
    from findap.splits import reserved_for_eval

    a = get_task("flare_german", root=shared_data)
    b = get_task("flare_german", root=shared_data)
    # the task carves by curation's hash of the raw line (findap.splits), ~70/10/20
    assert {k: len(v) for k, v in a.splits.items()} == {"train": 703, "dev": 110, "unseen": 187}
    assert [d["id"] for d in a.docs("unseen")] == [d["id"] for d in b.docs("unseen")]
    assert all(reserved_for_eval("credit", d["source_line"], 0.3) for d in a.docs("dev") + a.docs("unseen"))
    assert not any(reserved_for_eval("credit", d["source_line"], 0.3) for d in a.splits["train"])
    assert Counter(d["gold"] for d in a.all_docs) == {"good": 700, "bad": 300}
    # the loader's FinBen-style seeded 70/10/20 split is still there for users who want it
    seeded = load_german(shared_data, a.spec, "credit/german.data", seed=42)
    assert Counter(d["split"] for d in seeded) == {"train": 700, "dev": 100, "unseen": 200}


def test_carving_is_deterministic_disjoint_and_few_shot_never_scored(shared_data):
    task = get_task("fpb", root=shared_data)
    parts = {k: {d["id"] for d in v} for k, v in task.splits.items()}
    assert not (parts["train"] & parts["dev"]) and not (parts["dev"] & parts["unseen"])
    assert sum(map(len, parts.values())) == 3625
    again = get_task("fpb", root=shared_data)
    assert [d["id"] for d in again.docs("dev", limit=5)] == [d["id"] for d in task.docs("dev", limit=5)]
    spec = task.spec.model_copy(update={"few_shot": 3})
    shot_task = Task(spec, root=shared_data)
    for role in ("dev", "unseen"):
        for doc in shot_task.docs(role, limit=20):
            shots = shot_task.shots(doc, role)
            assert len(shots) == 3 and all(s["id"] in parts["train"] for s in shots)
            assert shots == shot_task.shots(doc, role)  # same doc, same examples
    msgs = shot_task.messages(shot_task.docs("dev")[0], "direct")
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 3 + ["user"]
    assert msgs[1]["content"] in ("positive", "neutral", "negative")


def test_few_shot_without_train_part_uses_dev_for_unseen_scoring(shared_data):
    task = get_task("mmlu_finance", root=shared_data)
    t = Task(task.spec.model_copy(update={"few_shot": 2}), root=shared_data)
    assert not t.splits["train"]
    dev_ids = {d["id"] for d in t.splits["dev"]}
    for doc in t.docs("unseen"):
        shots = t.shots(doc, "unseen")
        assert len(shots) == 2 and all(s["id"] in dev_ids for s in shots)


@pytest.mark.parametrize("name", ["mmlu_finance", "ectsum", "fpb", "demo_sentiment", "cfa_easy"])
def test_dev_role_prompts_never_hold_an_unseen_or_scored_item(shared_data, name):
    """Dev scoring (model selection) must not show final-report items: without a train part there is no legal
    pool, and asking for shots is a clear error before anything is scored (the old code drew them from unseen)."""
    t = Task(get_task(name, root=shared_data).spec.model_copy(update={"few_shot": 2}), root=shared_data)
    unseen = t.splits["unseen"]
    scored_ids = {d["id"] for d in t.splits["dev"]}
    if not t.splits["train"]:
        with pytest.raises(ValueError, match=rf"task {name}: few_shot=2 but scoring role 'dev' has no legal"):
            t.docs("dev")
        with pytest.raises(ValueError, match="unseen part is never a few-shot pool"):
            t.messages(t.splits["dev"][0], "direct", "dev")
        return
    unseen_inputs = [t.user_message(d, "direct") for d in unseen]
    for doc in t.docs("dev", limit=15):
        shots = t.shots(doc, "dev")
        assert len(shots) == 2 and not {s["id"] for s in shots} & ({d["id"] for d in unseen} | scored_ids)
        shown = [m["content"] for m in t.messages(doc, "direct", "dev")[:-1] if m["role"] == "user"]
        assert len(shown) == 2 and not set(shown) & set(unseen_inputs)


# ---- broken copies: the error names file, line and field ----------------------------------------------------
def _copy(shared_data: Path, tmp_path: Path, rel: str) -> Path:
    dst = tmp_path / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    if (shared_data / rel).is_dir():
        shutil.copytree(shared_data / rel, dst)
    else:
        shutil.copy(shared_data / rel, dst)
    return dst


def _break_line(path: Path, lineno: int, new: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[lineno - 1] = new
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    "task,rel,lineno,new,where",
    [
        ("fpb", "fpb/Sentences_50Agree.train.txt", 3, "A sentence without any label", ":3: field 'label'"),
        ("fpb", "fpb/Sentences_50Agree.train.txt", 5, "Profit rose .@bullish", ":5: field 'label'"),
        ("flare_german", "credit/german.data", 7, "A11 6 A99 A43 1169 A65 A75 4 A93 A101 4 A121 67 A143 A152 2 A173 1 A192 A201 1",
         ":7: field 'credit history'"),
        ("flare_german", "credit/german.data", 2, "A11 6 A34", ":2:"),
        ("gsm8k", "gsm8k/train.jsonl", 4, json.dumps({"question": "1+1?", "answer": "It is 2."}), ":4: field 'answer'"),
        ("gsm8k", "gsm8k/train.jsonl", 6, json.dumps({"answer": "#### 3"}), ":6: field 'question'"),
        ("ner", "finer/FIN5.train.conll", 10, "SILICON NNP - X-ORG", ":10: field 'tag'"),
        ("mt_bench", "mtbench/question.jsonl", 2, json.dumps({"question_id": 82, "turns": "just one"}), ":2: field 'turns'"),
    ],
)
def test_broken_copies_name_file_line_field(shared_data, tmp_path, task, rel, lineno, new, where):
    path = _copy(shared_data, tmp_path, rel)
    _break_line(path, lineno, new)
    with pytest.raises(DataError) as err:
        get_task(task, root=tmp_path).all_docs
    assert str(path) in str(err.value) and where in str(err.value)


def test_broken_mmlu_csv_and_cfa_json(shared_data, tmp_path):
    import csv
    import io

    path = _copy(shared_data, tmp_path, "mmlu/dev/econometrics_dev.csv")
    _copy(shared_data, tmp_path, "mmlu/dev/marketing_dev.csv")
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    rows[3][-1] = "7"  # the third record gets an impossible answer index
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    # quoted questions span lines: the record starts after the header and the lines of the two records before it
    line = 1 + sum(1 + sum(cell.count("\n") for cell in row) for row in rows[:3])
    assert line > 4
    with pytest.raises(DataError, match=rf"econometrics_dev\.csv:{line}: field 'answer'"):
        get_task("mmlu_finance", root=tmp_path).all_docs
    cfa = _copy(shared_data, tmp_path, "cfa/CFA_Easy.json")
    rows = json.loads(cfa.read_text())
    rows[4]["text"] = "Q: what? no options here"
    cfa.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"CFA_Easy\.json:item 4: field 'text'"):
        get_task("cfa_easy", root=tmp_path).all_docs


def test_missing_data_root_names_the_file(tmp_path):
    with pytest.raises(DataError, match="fpb/Sentences_50Agree.train.txt.*not found.*FinEval"):
        get_task("fpb", root=tmp_path).all_docs
    with pytest.raises(DataError, match="mtbench/question.jsonl.*not found"):
        get_task("mt_bench", root=tmp_path).all_docs


def test_bad_task_yaml_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncapability: wisdom\ndomain: finance\nnovelty: novel\nanswer_type: classification\n"
                   "source: {loader: jsonl, args: {path: x.jsonl}}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: field 'capability'"):
        load_spec(bad)
    bad.write_text("name: x\ncapability: task\ndomain: finance\nnovelty: novel\nanswer_type: classification\n"
                   "source: {loader: nosuch, args: {}}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: field 'source.loader': unknown loader 'nosuch'"):
        load_spec(bad)
    bad.write_text("name: x\ncapability: task\ndomain: finance\nnovelty: novel\nanswer_type: classification\n"
                   "labels: [a, b]\ncarve: {train: 0.5, dev: 0.5, unseen: 0.5}\nsource: {loader: jsonl, args: {path: x}}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: field 'carve'"):
        load_spec(bad)


# ---- the generic local format (docs/tasks.md) ---------------------------------------------------------------
GENERIC = {
    "classification": ({"labels": ["up", "down"]}, [{"text": "Shares jumped 5%.", "label": "up"},
                                                    {"text": "Shares slid.", "label": "down"}]),
    "multiple_choice": ({}, [{"question": "2+2?", "choices": ["3", "4"], "answer": "B"},
                             {"question": "3+3?", "choices": ["6", "7"], "answer": 0}]),
    "numeric_qa": ({}, [{"question": "Revenue?", "context": "Revenue was 5.", "answer": "5"}]),
    "ner": ({}, [{"tokens": ["Apple", "sued", "Bob"], "tags": ["B-ORG", "O", "B-PER"]}]),
    "summarization": ({}, [{"text": "Long report.", "summary": "Short."}]),
    "judge": ({}, [{"question": "Explain inflation.", "reference": "Prices rise."}]),
}


@pytest.mark.parametrize("kind", list(GENERIC))
def test_generic_local_format_needs_no_code(tmp_path, monkeypatch, kind):
    import yaml

    extra, rows = GENERIC[kind]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"name": f"my_{kind}", "capability": "task", "domain": "finance", "novelty": "novel",
            "answer_type": kind, "source": {"loader": "jsonl", "args": {"path": str(data)}},
            "groups": ["mine"], **extra}
    (tmp_path / f"my_{kind}.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("FINDAP_TASKS", str(tmp_path))
    [found] = resolve(["mine"])
    docs = Task(found, root=tmp_path).all_docs
    assert len(docs) == len(rows)
    if kind == "multiple_choice":
        assert [d["gold"] for d in docs] == [1, 0]
    if kind == "ner":
        assert docs[0]["entities"] == [("Apple", "ORG"), ("Bob", "PER")]
    if kind == "judge":
        assert docs[0]["turns"] == ["Explain inflation."]


def test_generic_format_errors_name_line_and_field(tmp_path):
    spec = load_spec_from(tmp_path, "classification", {"labels": ["up", "down"]})
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps({"text": "a", "label": "up"}) + "\n\n" + json.dumps({"text": "b", "label": "sideways"}) + "\n")
    with pytest.raises(DataError, match=r"mine\.jsonl:3: field 'label'"):
        Task(spec, root=tmp_path).all_docs
    data.write_text(json.dumps({"text": "a"}) + "\n")
    with pytest.raises(DataError, match=r"mine\.jsonl:1: field 'label'"):
        Task(spec, root=tmp_path).all_docs


def load_spec_from(tmp_path: Path, kind: str, extra: dict):
    import yaml

    spec = {"name": "mine", "capability": "task", "domain": "finance", "novelty": "novel", "answer_type": kind,
            "source": {"loader": "jsonl", "args": {"path": "mine.jsonl"}}, **extra}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(spec))
    return load_spec(path)


# ---- demo data and hub layout -------------------------------------------------------------------------------
def test_demo_tasks_read_the_shipped_data_with_the_demo_split():
    from findap.demo.load import load_demo
    from findap.demo.splits import split_role

    for name, demo_name in [("demo_sentiment", "sentiment"), ("demo_stance", "stance"),
                            ("demo_concepts", "concepts_mc"), ("demo_exercises", "exercises")]:
        task = get_task(name)
        rows = load_demo(demo_name)
        assert len(task.all_docs) == len(rows)
        test_ids = {str(r["id"]) for r in rows if split_role(str(r["id"])) == "test"}
        train_ids = {str(r["id"]) for r in rows if split_role(str(r["id"])) == "train"}
        # the report scores only the demo's test rows, and few-shot examples come from its train rows
        assert {d["id"] for d in task.docs("unseen")} == test_ids
        assert {d["id"] for d in task.few_shot_pool("unseen")} == train_ids
    ex = get_task("demo_exercises").all_docs[0]
    assert ex["gold"] == [str(load_demo("exercises")[0]["answer"])]


def test_fineval_hub_layout_maps_to_docs(shared_data, monkeypatch):
    """The hub configs use the FinBen layout {query, answer, text, choices, gold}; CFA_Easy.json is a real file in
    that layout, so it stands in for the download."""
    from findap.eval import loaders
    from findap.io import read_records

    monkeypatch.setattr(loaders, "_hub_rows", lambda dataset, config, split: read_records(shared_data / "cfa/CFA_Easy.json"))
    task = Task(get_task("cfa_easy").spec, root=shared_data, prefer="hub")
    # prefer='auto' reads the hub when the local file is absent
    assert len(Task(get_task("cfa_easy").spec, root=shared_data / "nowhere", prefer="auto").all_docs) == 1032
    docs = task.all_docs
    assert len(docs) == 1032 and docs[0]["choices"] == ["A", "B", "C"] and docs[0]["gold"] == 2
    assert "expected inflation" in docs[0]["question"]
    spec = get_task("fpb").spec
    rows = [{"id": "fpb0", "query": "q", "text": "Profit rose.", "answer": "Positive", "choices": ["negative", "positive", "neutral"], "gold": 1}]
    monkeypatch.setattr(loaders, "_hub_rows", lambda dataset, config, split: rows)
    [doc] = Task(spec, prefer="hub").all_docs
    assert doc["gold"] == "positive" and doc["text"] == "Profit rose."


def test_docs_example_task_loads(tmp_path):
    """The example in docs/tasks.md works as written (YAML + JSONL blocks, paths moved into tmp_path)."""
    import re

    import yaml

    text = (Path(__file__).resolve().parents[1] / "docs" / "tasks.md").read_text()
    yaml_block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    jsonl_block = re.search(r"```json\n(.*?)```", text, re.S).group(1)
    (tmp_path / "bank_sentiment.jsonl").write_text(jsonl_block)
    spec = yaml.safe_load(yaml_block)
    spec["source"]["args"]["path"] = str(tmp_path / "bank_sentiment.jsonl")
    (tmp_path / "bank_sentiment.yaml").write_text(yaml.safe_dump(spec))
    task = Task(load_spec(tmp_path / "bank_sentiment.yaml"), root=tmp_path)
    assert [d["gold"] for d in task.all_docs] == ["positive", "negative"]
    assert "Sentence: The bank beat" in task.user_message(task.all_docs[0], "direct")


def test_multiple_choice_requests_with_few_shot(shared_data):
    task = get_task("cfa_easy", root=shared_data)
    t = Task(task.spec.model_copy(update={"few_shot": 2}), root=shared_data)
    doc = t.docs("unseen")[0]
    context, conts = t.mc_requests(doc, "unseen")
    shots = t.shots(doc, "unseen")
    blocks = context.split("\n\n")
    assert len(blocks) == 3 and blocks[-1] == f"Question: {doc['question']}\nAnswer:"
    for block, shot in zip(blocks, shots):
        assert block == f"Question: {shot['question']}\nAnswer: {shot['choices'][shot['gold']]}"
    assert conts == [" " + c for c in doc["choices"]]


def test_eval_config_rejects_unknown_fields_and_modes():
    from pydantic import ValidationError

    from findap.eval.config import EvalConfig

    assert EvalConfig().modes == ["direct"] and "fpb" in EvalConfig().tasks
    with pytest.raises(ValidationError, match="modes"):
        EvalConfig(modes=["fast"])
    with pytest.raises(ValidationError, match="extra"):
        EvalConfig(taks=["fpb"])


def test_financebench_original_jsonl_layout(tmp_path):
    """FinanceBench is read from the original financebench_open_source.jsonl layout (not in the data directory,
    so two rows in that layout are written here)."""
    rows = [
        {"financebench_id": "financebench_id_03029", "company": "3M", "doc_name": "3M_2018_10K",
         "question_type": "metrics-generated", "question": "What is the FY2018 capital expenditure amount for 3M?",
         "answer": "$1577.00", "justification": "", "evidence": [
             {"evidence_text": "Purchases of property, plant and equipment (PP&E) (1,577)", "doc_name": "3M_2018_10K",
              "evidence_page_num": 59}]},
        {"financebench_id": "financebench_id_00499", "question": "Is 3M a capital-intensive business?",
         "answer": "No, the company is managing its CAPEX well.", "evidence": []},
    ]
    folder = tmp_path / "financebench"
    folder.mkdir()
    path = folder / "financebench_open_source.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    docs = get_task("financebench", root=tmp_path).all_docs
    assert [d["id"] for d in docs] == ["financebench_id_03029", "financebench_id_00499"]
    assert docs[0]["reference"] == "$1577.00" and "(1,577)" in docs[0]["turns"][0]
    assert docs[0]["turns"][0].endswith("Question: What is the FY2018 capital expenditure amount for 3M?")
    assert docs[1]["turns"] == ["Is 3M a capital-intensive business?"]
    rows[1]["evidence"] = "page 3"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"financebench_open_source\.jsonl:2: field 'evidence'"):
        get_task("financebench", root=tmp_path).all_docs
