"""The hub path, run: a local mirror in the hub datasets' own layout (README.md `configs:` and
`<config>/<split>-*.parquet`; the config names, splits and columns findap reads), filled with real rows from the
shared data directory, read offline through the loaders a user with hub access runs (`$FINDAP_HUB_MIRROR` maps
the hub id to the folder; the `datasets.load_dataset(path, config, split=...)` call is the one made for the hub).
A renamed config, split or column in a task YAML or a loader fails here. Also: the availability report on a
mirror, on the datasets cache and on huggingface_hub's file cache."""
from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from findap.eval.availability import HUB_MIRROR_ENV, hub_offline, hub_target, task_availability
from findap.eval.registry import all_specs, get_task
from findap.eval.task import LETTERS, Task

# Salesforce/FinEval's configs: its repository folders (huggingface.co/datasets/Salesforce/FinEval, 2025), plus
# the CFA subsets it hosts (CFA-Easy, and CFA-Challenge, which ZixuanKe/CFA-Level-III points to).
FINEVAL_CONFIGS = {
    "CRA-Bigdata", "CRA-CCF", "CRA-CCFraud", "CRA-LendingClub", "CRA-Polish", "CRA-ProtoSeguro", "CRA-Taiwan",
    "CRA-TravelInsurance", "ECTSUM", "EDTSUM", "FIQASA", "FOMC", "FPB", "Flare-Australian", "Flare-German",
    "Flare-TATQA", "MA", "MLESG", "MMLU-finance", "NER", "SM-ACL", "SM-CIKM", "CFA-Easy", "CFA-Challenge",
}


def write_hub_dataset(mirror: Path, dataset: str, configs: dict[str, dict[str, list[dict]]]) -> Path:
    """`<mirror>/<dataset>/` as the hub stores a parquet dataset: one folder per config, one
    `<split>-00000-of-00001.parquet` per split, and a README.md whose YAML header declares them."""
    root = mirror / dataset
    card = []
    for config, splits in configs.items():
        (root / config).mkdir(parents=True, exist_ok=True)
        files = []
        for split, rows in splits.items():
            pq.write_table(pa.Table.from_pylist(rows), root / config / f"{split}-00000-of-00001.parquet")
            files.append({"split": split, "path": f"{config}/{split}-*"})
        card.append({"config_name": config, "data_files": files})
    (root / "README.md").write_text(f"---\n{yaml.safe_dump({'configs': card}, sort_keys=False)}---\n",
                                    encoding="utf-8")
    return root


def _fpb_rows(shared_data, n=6):
    rows = []
    for i, line in enumerate((shared_data / "fpb/Sentences_50Agree.train.txt").read_text(encoding="utf-8")
                             .splitlines()[:n]):
        sentence, _, label = line.rpartition("@")
        choices = ["positive", "neutral", "negative"]
        rows.append({"id": f"fpb{i}", "query": f"What is the sentiment of this sentence?\nText: {sentence}\nAnswer:",
                     "answer": label, "text": sentence, "choices": choices, "gold": choices.index(label)})
    return rows


def _ccfraud_rows(shared_data, n=5):
    docs = [d for d in get_task("cra_ccfraud", root=shared_data).all_docs if d.get("split") != "train"]
    docs = sorted(docs, key=lambda d: int(d["id"].rsplit("-", 1)[1]))[:n]
    return [{"id": f"ccfraud{i}", "query": f"Is this client good or bad?\nText: '{d['text']}'\nAnswer:",
             "answer": d["gold"], "text": d["text"], "choices": ["good", "bad"],
             "gold": ["good", "bad"].index(d["gold"])}
            for i, d in enumerate(docs)]


def _arc_rows(shared_data, n=5):
    docs = get_task("arc", root=shared_data).all_docs[:n]
    return [{"id": f"Mercury_{i}", "question": d["question"],
             "choices": {"text": d["choices"], "label": list(LETTERS[: len(d["choices"])])},
             "answerKey": LETTERS[d["gold"]]} for i, d in enumerate(docs)]


def _mmlu_rows(shared_data, n=4):
    docs = get_task("mmlu", root=shared_data).splits["unseen"][:n]
    return [{"question": d["question"], "subject": d["subject"].replace(" ", "_"), "choices": d["choices"],
             "answer": d["gold"]} for d in docs]


def _nq_rows(shared_data):
    lines = (shared_data / "nq_open/NQ-open.dev.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:5]], [json.loads(line) for line in lines[5:8]]


@pytest.fixture(scope="module")
def mirror(shared_data, tmp_path_factory):
    """The mirror folder and the real rows written into it."""
    root = tmp_path_factory.mktemp("hub-mirror")
    nq_validation, nq_train = _nq_rows(shared_data)
    cfa = json.loads((shared_data / "cfa/CFA_Easy.json").read_text(encoding="utf-8"))[:4]  # already FinBen layout
    rows = {"FPB": _fpb_rows(shared_data), "CRA-CCFraud": _ccfraud_rows(shared_data), "CFA-Easy": cfa,
            "ARC-Easy": _arc_rows(shared_data), "mmlu": _mmlu_rows(shared_data), "nq_validation": nq_validation}
    write_hub_dataset(root, "Salesforce/FinEval", {c: {"test": rows[c]} for c in ("FPB", "CRA-CCFraud", "CFA-Easy")})
    write_hub_dataset(root, "allenai/ai2_arc", {"ARC-Easy": {"test": rows["ARC-Easy"], "train": rows["ARC-Easy"][:2]}})
    write_hub_dataset(root, "cais/mmlu", {"all": {"test": rows["mmlu"]}})
    write_hub_dataset(root, "google-research-datasets/nq_open",
                      {"nq_open": {"train": nq_train, "validation": nq_validation}})
    return root, rows


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and a private datasets cache: both libraries' offline switches, set the way a user sets them
    (environment) and in the already-imported modules (which read the environment once, at import)."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    with hub_offline():
        yield tmp_path / "datasets-cache"


@pytest.fixture
def mirrored(mirror, offline, monkeypatch):
    root, rows = mirror
    monkeypatch.setenv(HUB_MIRROR_ENV, str(root))
    return rows


def hub_task(name, shared_data, **spec_update) -> Task:
    spec = get_task(name).spec
    return Task(spec.model_copy(update=spec_update) if spec_update else spec, root=shared_data, prefer="hub")


def test_yaml_hub_configs_are_the_hubs():
    used = {s.name: hub_target(s) for s in all_specs().values() if s.hub is not None}
    fineval = {name: t[1] for name, t in used.items() if t and t[0] == "Salesforce/FinEval"}
    assert len(fineval) == 24 and set(fineval.values()) <= FINEVAL_CONFIGS, set(fineval.values()) - FINEVAL_CONFIGS
    assert used["nq_open"] == ("google-research-datasets/nq_open", None, "validation")
    assert used["arc"] == ("allenai/ai2_arc", "ARC-Easy", "test")


def test_fpb_style_classification_through_fineval_hub(shared_data, mirrored):
    docs = hub_task("fpb", shared_data).all_docs
    assert [d["text"] for d in docs] == [r["text"] for r in mirrored["FPB"]]
    assert [d["gold"] for d in docs] == [r["answer"] for r in mirrored["FPB"]]
    assert [d["id"] for d in docs] == [r["id"] for r in mirrored["FPB"]]
    task = hub_task("fpb", shared_data)
    assert task.user_message(task.all_docs[0], "direct").endswith("Reply with one of: positive, neutral, negative.")


def test_cra_ccfraud_hub_rows_score_like_the_local_rows(shared_data, mirrored):
    hub = hub_task("cra_ccfraud", shared_data)
    assert [(d["text"], d["gold"]) for d in hub.all_docs] == [(r["text"], r["answer"]) for r in mirrored["CRA-CCFraud"]]
    local = get_task("cra_ccfraud", root=shared_data)
    doc = next(d for d in local.all_docs if d["text"] == hub.all_docs[0]["text"])
    # one YAML, one prompt: the same row renders the same message from either source
    assert hub.user_message(hub.all_docs[0], "direct") == local.user_message(doc, "direct")
    # the hub's test split is carved into dev / unseen like the local test file
    assert len(hub.splits["dev"]) + len(hub.splits["unseen"]) == 5 and not hub.splits["train"]


def test_cfa_multiple_choice_through_fineval_hub(shared_data, mirrored):
    docs = hub_task("cfa_easy", shared_data).all_docs
    assert len(docs) == 4
    assert [d["gold"] for d in docs] == [r["gold"] for r in mirrored["CFA-Easy"]]
    assert all(d["choices"] == list(r["choices"]) for d, r in zip(docs, mirrored["CFA-Easy"]))


def test_hf_mc_arc_reads_nested_choices_and_letter_keys(shared_data, mirrored):
    task = hub_task("arc", shared_data)
    local = get_task("arc", root=shared_data).all_docs[:5]
    assert [(d["question"], d["choices"], d["gold"]) for d in task.all_docs] == [
        (d["question"], d["choices"], d["gold"]) for d in local]  # the test split, not train
    context, continuations = task.mc_requests(task.all_docs[0])
    assert context.startswith("Question: ") and len(continuations) == len(local[0]["choices"])


def test_hf_qa_nq_open_reads_the_validation_split(shared_data, mirrored):
    task = hub_task("nq_open", shared_data)
    docs = task.all_docs
    assert [d["question"] for d in docs] == [r["question"] for r in mirrored["nq_validation"]]
    assert [d["gold"] for d in docs] == [r["answer"] for r in mirrored["nq_validation"]]
    local = {d["question"]: d for d in get_task("nq_open", root=shared_data).all_docs}
    assert all(task.user_message(d, "direct") == get_task("nq_open").user_message(local[d["question"]], "direct")
               for d in docs)


def test_hf_mc_mmlu_reads_the_all_config(shared_data, mirrored):
    task = hub_task("mmlu", shared_data)
    assert [d["gold"] for d in task.all_docs] == [r["answer"] for r in mirrored["mmlu"]]
    context, _ = task.mc_requests(task.all_docs[0])
    assert context.startswith("Question: ")


def test_hf_mc_mmlu_generation_prompt_names_the_subject(shared_data, mirrored):
    # mmlu.yaml's instruction names {subject}: the hub rows must carry it as the local CSV's docs do
    task = hub_task("mmlu", shared_data)
    doc = task.all_docs[0]
    assert doc["subject"] and "_" not in doc["subject"]
    assert doc["subject"] in task.user_message(doc, "direct")


def test_renamed_config_split_or_column_fails(shared_data, mirrored, mirror, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="FPB-renamed"):
        hub_task("fpb", shared_data, hub=get_task("fpb").spec.hub.model_copy(
            update={"args": {"config": "FPB-renamed"}})).all_docs
    nq = get_task("nq_open").spec.hub
    with pytest.raises(ValueError, match="dev"):
        hub_task("nq_open", shared_data, hub=nq.model_copy(update={"args": {**nq.args, "split": "dev"}})).all_docs
    # a mirror whose nq_open column is renamed (answer -> answers): the loader's field is checked, not assumed
    renamed = tmp_path / "renamed"
    rows = [{"question": r["question"], "answers": r["answer"]} for r in mirrored["nq_validation"]]
    write_hub_dataset(renamed, "google-research-datasets/nq_open", {"nq_open": {"validation": rows}})
    monkeypatch.setenv(HUB_MIRROR_ENV, os.pathsep.join([str(renamed), str(mirror[0])]))  # first folder wins
    with pytest.raises(KeyError, match="answer"):
        hub_task("nq_open", shared_data).all_docs


def test_without_a_mirror_the_hub_id_is_read_and_fails_offline(shared_data, offline, monkeypatch):
    monkeypatch.delenv(HUB_MIRROR_ENV, raising=False)
    with pytest.raises(ConnectionError):
        hub_task("fpb", shared_data).all_docs


# ---- availability -------------------------------------------------------------------------------------------
HUB_ONLY_FPB = """name: fpb_hub_only
capability: task
domain: finance
novelty: novel
answer_type: classification
hub: {loader: fineval_hub, args: {config: FPB}}
labels: [positive, neutral, negative]
"""


@pytest.fixture
def hub_only_task(tmp_path, monkeypatch):
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "fpb_hub_only.yaml").write_text(HUB_ONLY_FPB, encoding="utf-8")
    monkeypatch.setenv("FINDAP_TASKS", str(folder))
    return "fpb_hub_only"


def test_availability_on_a_mirror(shared_data, mirrored, mirror, hub_only_task):
    got = task_availability("fpb", prefer="hub", root=shared_data)
    assert got["status"] == "hub mirror found" and got["runnable"]
    assert sum(got["n"].values()) == 6  # FPB is hash-carved, hub rows too
    assert str(mirror[0]) in got["source"] and "Salesforce/FinEval:FPB@test" in got["source"]
    assert task_availability(hub_only_task, prefer="auto", root=shared_data)["status"] == "hub mirror found"
    local = task_availability(hub_only_task, prefer="local", root=shared_data)
    assert not local["runnable"] and "hub mirror found" in local["status"] and "--prefer auto or hub" in local["status"]
    assert task_availability("fpb", prefer="local", root=shared_data)["status"] == "local file found"


def test_availability_from_the_datasets_cache(shared_data, mirror, offline, hub_only_task, monkeypatch):
    """A hub dataset `datasets` has prepared once is read offline from its cache: the cache entry is made by
    loading the mirror and placing its prepared copy where a hub download's goes (<owner>___<snake_name>)."""
    import datasets

    monkeypatch.delenv(HUB_MIRROR_ENV, raising=False)
    missing = task_availability(hub_only_task, prefer="hub", root=shared_data)
    assert not missing["runnable"] and "not in the local Hugging Face cache" in missing["status"]
    datasets.load_dataset(str(mirror[0] / "Salesforce/FinEval"), "FPB", split="test")
    [prepared] = [p for p in glob.glob(str(offline / "fin_eval" / "FPB" / "*" / "*")) if os.path.isdir(p)]
    shutil.copytree(prepared, offline / "Salesforce___fin_eval" / "FPB" / Path(prepared).parent.name /
                    Path(prepared).name)
    got = task_availability(hub_only_task, prefer="hub", root=shared_data)
    assert got["status"] == "hub cached" and got["source"] == "Salesforce/FinEval:FPB@test"
    assert got["n"] == {"dev": 0, "unseen": 6, "train": 0}
    # the same rows through the hub id, as `findap eval --prefer hub` reads them offline
    docs = Task(get_task(hub_only_task).spec, root=shared_data, prefer="hub").all_docs
    assert [d["text"] for d in docs] == [r["text"] for r in _fpb_rows(shared_data)]
    other = task_availability("cra_ccf", prefer="hub", root=shared_data)  # another config: not cached
    assert not other["runnable"]


def test_availability_names_a_hub_file_cache_snapshot(shared_data, mirror, offline, hub_only_task, monkeypatch,
                                                      tmp_path):
    """Files fetched by huggingface_hub alone (`hf download` without a datasets load) are not what `datasets`
    reads offline: the report says where they are and how to use them as a mirror."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.delenv(HUB_MIRROR_ENV, raising=False)
    cache = tmp_path / "hub-cache"
    repo = cache / "datasets--Salesforce--FinEval"
    shutil.copytree(mirror[0] / "Salesforce/FinEval", repo / "snapshots" / ("0" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    got = task_availability(hub_only_task, prefer="hub", root=shared_data)
    assert not got["runnable"] and "huggingface_hub's cache has its files at" in got["status"]
    snapshot = repo / "snapshots" / ("0" * 40)
    assert str(snapshot) in got["status"]
    # and the advice works: that folder as a mirror
    mirror_root = tmp_path / "from-cache"
    shutil.copytree(snapshot, mirror_root / "Salesforce/FinEval")
    monkeypatch.setenv(HUB_MIRROR_ENV, str(mirror_root))
    assert task_availability(hub_only_task, prefer="hub", root=shared_data)["status"] == "hub mirror found"
