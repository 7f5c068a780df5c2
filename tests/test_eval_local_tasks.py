"""CRA-CCFraud, CRA-TravelInsurance, CRA-Polish and NQ-Open on the local files in the shared data directory: the
tabular loaders (headerless CSV with named columns, ARFF with '?' missing values), their splits and prompts, the
hub configs' labels and metrics kept, broken copies named by file:line:field, scoring, decontamination and the
availability report."""
from __future__ import annotations

import shutil
from collections import Counter

import pytest

from findap.eval.availability import task_availability
from findap.eval.registry import get_extractor, get_task
from findap.eval.tabular_loaders import describe_row, read_arff
from findap.eval.task import Task
from findap.io import DataError

NEW = ("cra_ccfraud", "cra_travelinsurance", "cra_polish", "nq_open")

# (task, rows per split, gold labels per split) on the shared data
SPLITS = {
    "cra_ccfraud": ({"train": 7287, "dev": 420, "unseen": 1678},
                    {"train": {"good": 6860, "bad": 427}, "dev": {"good": 391, "bad": 29},
                     "unseen": {"good": 1584, "bad": 94}}),
    "cra_travelinsurance": ({"train": 8579, "dev": 507, "unseen": 2027},
                            {"train": {"no": 8454, "yes": 125}, "dev": {"no": 495, "yes": 12},
                             "unseen": {"no": 2001, "yes": 26}}),
    "cra_polish": ({"train": 9001, "dev": 1294, "unseen": 2587},
                   {"train": {"no": 8550, "yes": 451}, "dev": {"no": 1217, "yes": 77},
                    "unseen": {"no": 2435, "yes": 152}}),
    "nq_open": ({"train": 361, "dev": 722, "unseen": 2527}, None),
}


@pytest.mark.parametrize("name", NEW)
def test_splits_are_fixed_disjoint_and_labelled_as_the_hub_labels(shared_data, name):
    task = get_task(name, root=shared_data)
    sizes, labels = SPLITS[name]
    assert {k: len(v) for k, v in task.splits.items()} == sizes
    if labels:
        assert {k: dict(Counter(d["gold"] for d in v)) for k, v in task.splits.items()} == labels
        assert set(task.spec.labels) == {g for v in labels.values() for g in v}
    ids = [d["id"] for part in task.splits.values() for d in part]
    assert len(ids) == len(set(ids))
    again = get_task(name, root=shared_data)
    assert [d["id"] for d in again.docs("unseen", limit=20)] == [d["id"] for d in task.docs("unseen", limit=20)]
    # the hub config's prompt, labels and metrics are the ones the local source is scored with
    assert task.spec.hub is not None and task.spec.source is not None
    assert "local" in task.spec.all_groups


def test_own_train_test_split_test_scored_train_the_pool(shared_data):
    for name, test_stem, train_stem in (("cra_ccfraud", "ccfraud_test", "ccfraud_train"),
                                        ("cra_travelinsurance", "TraIn_test", "TraIn_train")):
        task = get_task(name, root=shared_data)
        assert all(d["id"].startswith(train_stem + "-") for d in task.splits["train"])
        assert all(d["id"].startswith(test_stem + "-") for d in task.splits["dev"] + task.splits["unseen"])
        n_test = sum(1 for line in (shared_data / "cra" / ("ccfraud" if "ccfraud" in name else "travel_insurance")
                                    / f"{test_stem}.csv").read_text(encoding="utf-8").splitlines() if line.strip())
        assert len(task.splits["dev"]) + len(task.splits["unseen"]) == n_test  # every test row is scored


@pytest.mark.parametrize("name", ["cra_ccfraud", "cra_travelinsurance", "cra_polish", "nq_open"])
def test_few_shot_examples_come_from_the_pool_and_never_copy_the_scored_item(shared_data, name):
    base = get_task(name, root=shared_data)
    task = Task(base.spec.model_copy(update={"few_shot": 3}), root=shared_data)
    pool = {d["id"] for d in task.splits["train"]}
    if name != "nq_open":  # tabular rows repeat: the loader drops pool rows identical to a scored row
        scored_text = {d["text"] for d in task.splits["dev"] + task.splits["unseen"]}
        assert not any(d["text"] in scored_text for d in task.splits["train"])
    for role in ("dev", "unseen"):
        for doc in task.docs(role, limit=15):
            shots = task.shots(doc, role)
            assert len(shots) == 3 and all(s["id"] in pool for s in shots)
    msgs = task.messages(task.docs("unseen")[0], "direct")
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 3 + ["user"]


def test_ccfraud_row_rendered_as_attribute_sentences(shared_data):
    task = get_task("cra_ccfraud", root=shared_data)
    by_id = {d["id"]: d for d in task.all_docs}
    # ccfraud_test.csv line 1: 2,15,1,3000,23,1,2,0 (fraudRisk 0 = not fraudulent = good)
    doc = by_id["ccfraud_test-1"]
    assert doc["gold"] == "good"
    assert doc["text"] == (
        "The state of gender code is 2. The state of state number is 15. The state of number of cards held is 1. "
        "The state of credit balance is 3000. The state of number of transactions is 23. The state of number of "
        "international transactions is 1. The state of credit line is 2.")
    msg = task.user_message(doc, "direct")
    assert msg.startswith("Assess the credit risk of the applicant") and "Applicant: The state of gender" in msg
    assert msg.endswith("Reply with one of: good, bad.")
    assert "Answer: L" in task.user_message(doc, "cot")
    bad = [d for d in task.all_docs if d["gold"] == "bad"]
    assert len(bad) == 427 + 29 + 94


def test_travel_insurance_label_is_the_first_column(shared_data):
    task = get_task("cra_travelinsurance", root=shared_data)
    by_id = {d["id"]: d for d in task.all_docs}
    # TraIn_test.csv line 1: No,EPX,Travel Agency,Online,Cancellation Plan,32,CHINA,28,0,35
    doc = by_id["TraIn_test-1"]
    assert doc["gold"] == "no"
    assert doc["text"].startswith("The state of agency is EPX. The state of agency type is Travel Agency. ")
    assert "The state of destination is CHINA." in doc["text"] and doc["text"].endswith("age of the insured is 35.")
    assert "No" not in doc["text"].split()
    # a quoted cell with a comma stays one value (TraIn_train.csv line 3)
    assert "The state of destination is TAIWAN, PROVINCE OF CHINA." in by_id["TraIn_train-3"]["text"]


def test_polish_arff_missing_values_and_class(shared_data):
    attributes, rows = read_arff(shared_data / "cra/polish/1year.arff")
    assert len(attributes) == 65 and attributes[0] == ("Attr1", "numeric") and attributes[-1] == ("class", ["0", "1"])
    assert len(rows) == 7027 and rows[0][0] == 70  # @data is on line 69
    assert rows[1][1][23] is None  # Attr24 of the second row is '?'
    task = get_task("cra_polish", root=shared_data)
    by_id = {d["id"]: d for d in task.all_docs}
    doc = by_id["1year-71"]
    assert doc["text"].count("The state of ") == 64
    assert "The state of gross profit (in 3 years) / total assets is unknown." in doc["text"]
    assert doc["text"].startswith("The state of net profit / total assets is 0.20912.")
    # 55 pool rows that repeat a scored row are dropped (54 not bankrupt, 1 bankrupt)
    assert Counter(d["gold"] for d in task.all_docs) == {"no": 6756 + 5500 - 54, "yes": 271 + 410 - 1}
    assert {d["id"].split("-")[0] for d in task.docs("unseen")} == {"1year", "5year"}


def test_nq_open_reads_the_dev_file_and_scores_exact_match(shared_data):
    task = get_task("nq_open", root=shared_data)
    assert len(task.all_docs) == 3610
    doc = next(d for d in task.all_docs if d["question"] == "who wrote he ain't heavy he's my brother lyrics")
    assert doc["gold"] == ["Bobby Scott", "Bob Russell"]
    assert task.user_message(doc, "direct").endswith(
        "Question: who wrote he ain't heavy he's my brother lyrics\n\nReply with the answer only.")
    from findap.eval.metrics import score

    extract = get_extractor(task.spec.extraction)
    replies = ["Answer: Bob Russell.", "the Bobby Scott", "Bobby Darin"]
    preds = [extract(r, doc, task.spec) for r in replies]
    scores = score(preds, [doc] * 3, task.spec, "direct")
    assert scores["exact_match"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("name", NEW)
def test_prompts_render_in_both_modes(shared_data, name):
    task = get_task(name, root=shared_data)
    for doc in task.docs("dev", limit=3) + task.docs("unseen", limit=3):
        for mode in ("direct", "cot"):
            assert task.messages(doc, mode)[-1]["content"]


# ---- broken copies ------------------------------------------------------------------------------------------
def _copy_task(shared_data, tmp_path, name, rel_files):
    for rel in rel_files:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / rel, tmp_path / rel)
    return Task(get_task(name).spec, root=tmp_path)


def _break(path, lineno, new):
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[lineno - 1] = new
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("new,where", [
    ("2,15,1,3000,23,1,2", "ccfraud_test.csv:3:"),                # a column short
    ("2,15,1,3000,23,1,2,7", "ccfraud_test.csv:3: field 'fraudRisk'"),  # unknown label code
])
def test_broken_csv_names_file_line_field(shared_data, tmp_path, new, where):
    files = ["cra/ccfraud/ccfraud_test.csv", "cra/ccfraud/ccfraud_train.csv"]
    task = _copy_task(shared_data, tmp_path, "cra_ccfraud", files)
    _break(tmp_path / files[0], 3, new)
    with pytest.raises(DataError, match=where):
        task.all_docs


@pytest.mark.parametrize("lineno,new,where", [
    (71, "0.1,0.2", "1year.arff:71:"),
    (71, ",".join(["0.1"] * 64 + ["2"]), "1year.arff:71: field 'class'"),
    (71, ",".join(["abc"] + ["0.1"] * 63 + ["0"]), "1year.arff:71: field 'Attr1'"),
    (71, "{0 0.1, 64 1}", "1year.arff:71: sparse"),
])
def test_broken_arff_names_file_line_field(shared_data, tmp_path, lineno, new, where):
    files = ["cra/polish/1year.arff", "cra/polish/5year.arff"]
    task = _copy_task(shared_data, tmp_path, "cra_polish", files)
    _break(tmp_path / files[0], lineno, new)
    with pytest.raises(DataError, match=where):
        task.all_docs


def test_renamed_column_or_missing_file_fails_clearly(shared_data, tmp_path):
    files = ["cra/polish/1year.arff", "cra/polish/5year.arff"]
    task = _copy_task(shared_data, tmp_path, "cra_polish", files)
    arff = tmp_path / files[1]
    arff.write_text(arff.read_text(encoding="utf-8").replace("@attribute Attr64 numeric", "@attribute X64 numeric"),
                    encoding="utf-8")
    with pytest.raises(DataError, match="5year.arff: attributes differ"):
        task.all_docs
    spec = get_task("cra_ccfraud").spec
    args = dict(spec.source.args, describe={**spec.source.args["describe"], "creditLimit": "credit limit"})
    renamed = spec.model_copy(update={"source": spec.source.model_copy(update={"args": args})})
    with pytest.raises(DataError, match="field 'describe'.*unknown: \\['creditLimit'\\]"):
        Task(renamed, root=shared_data).all_docs
    with pytest.raises(DataError, match="file not found.*the task can also read Salesforce/FinEval:CRA-CCFraud"):
        Task(spec, root=tmp_path / "nowhere").all_docs


def test_arff_reader_quoted_names_comments_and_missing(tmp_path):
    f = tmp_path / "t.arff"
    f.write_text("% a comment\n@RELATION t\n\n@ATTRIBUTE 'net profit' NUMERIC\n@attribute kind {a, 'b c'}\n"
                 "@attribute class {0,1}\n@DATA\n% rows\n1.5,a,0\n?,'b c',1\n", encoding="utf-8")
    attributes, rows = read_arff(f)
    assert attributes == [("net profit", "numeric"), ("kind", ["a", "b c"]), ("class", ["0", "1"])]
    assert rows == [(9, ["1.5", "a", "0"]), (10, [None, "b c", "1"])]
    assert describe_row({"net profit": None, "kind": "b c"}, {"net profit": "net profit"}) == (
        "The state of net profit is unknown. The state of kind is b c.")


# ---- decontamination and availability -----------------------------------------------------------------------
def test_decontamination_reads_and_matches_the_new_tasks(shared_data):
    from findap.curate.decontam import EvalIndex
    from findap.curate.eval_texts import _scored_docs, doc_probes
    from findap.eval.registry import all_specs

    specs = all_specs()
    texts = {}
    for name in ("cra_ccfraud", "cra_travelinsurance", "nq_open"):
        docs = _scored_docs(name, specs[name], shared_data)  # what curation's registry gathering reads
        assert len(docs) == sum(SPLITS[name][0][k] for k in ("dev", "unseen"))
        texts[name] = [doc_probes(d) for d in docs]
    index = EvalIndex(texts)
    fraud = texts["cra_ccfraud"][7][0]
    question = texts["nq_open"][3][0]
    assert index.match(f"Notes from a fraud analyst.\n{fraud}\nEnd of notes.") == "cra_ccfraud"
    assert index.match(f"Question: {question}\nAnswer: someone") == "nq_open"
    train = get_task("cra_ccfraud", root=shared_data).splits["train"][0]["text"]
    assert index.match(train) is None  # a pool row is not an evaluation item


def test_availability_of_the_new_tasks(shared_data):
    for name in NEW:
        got = task_availability(name, root=shared_data)
        assert got["status"] == "local file found" and got["runnable"], got
        assert got["n"] == {k: SPLITS[name][0][k] for k in ("dev", "unseen", "train")}
        assert str(shared_data) in got["source"]
    quick = task_availability("cra_polish", root=shared_data, count=False)
    assert quick["runnable"] and quick["n"] is None and "1year.arff" in quick["source"]
    gone = task_availability("cra_polish", root=shared_data / "nowhere")
    assert not gone["runnable"] and gone["status"].startswith("unavailable: data not on disk:")
    assert "1year.arff" in gone["status"]
