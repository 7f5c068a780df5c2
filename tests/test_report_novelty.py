"""Trained / similar / novel decided from what a run's curation trained on (findap.report.novelty), with the real
task specs (fpb, fomc, flare_german, ner, cfa_easy, arc, fiqa_sa) and small hand-made curation manifests."""
import json
from pathlib import Path

import pytest
import yaml

from findap.eval.registry import all_specs
from findap.report.build import build_report
from findap.report.novelty import (
    CuratedSource, curated_sources, relate_results, run_curation, same_dataset, task_relation, task_type,
)

DATA_ROOT = "../shared/data"
# source name -> (converter, kind, location as the curate stage records it: resolved against the data root)
SOURCES = {
    "fpb": ("fpb", "it", f"{DATA_ROOT}/fpb/Sentences_50Agree.train.txt"),
    "fomc": ("fomc", "it", f"{DATA_ROOT}/fomc/lab-manual-split-combine-train-5768.xlsx"),
    "finer": ("finer", "it", f"{DATA_ROOT}/finer/FIN5.train.conll"),
    "german_credit": ("credit", "it", f"{DATA_ROOT}/credit/german.data"),
    "cfa": ("cfa", "it", f"{DATA_ROOT}/cfa/CFA_Easy.json"),
    "ectsum_transcripts": ("ectsum_transcripts", "cpt", f"{DATA_ROOT}/ectsum/train"),
    "self_instruct": ("self_instruct", "it", f"{DATA_ROOT}/general_it/self_instruct_seed_tasks.jsonl"),
}


def spec(name: str):
    return all_specs()[name]


def sources(*names: str) -> list[CuratedSource]:
    from findap.curate.sources import CONVERTERS

    return [CuratedSource(n, SOURCES[n][0], SOURCES[n][1], SOURCES[n][2], DATA_ROOT, 1000,
                          CONVERTERS[SOURCES[n][0]].holdout_key) for n in names]


def relation(task: str, curated) -> str:
    return task_relation(spec(task), curated).relation


# ---- the rule ----------------------------------------------------------------------------------------------------
def test_a_curated_dataset_is_trained_its_task_type_similar_the_rest_novel():
    only_fpb = sources("fpb")
    assert relation("fpb", only_fpb) == "trained"
    fiqa = task_relation(spec("fiqa_sa"), only_fpb)
    assert fiqa.relation == "similar" and fiqa.derived
    assert fiqa.reason == "task type of curated fpb (task / finance / classification: negative, neutral, positive)"
    arc = task_relation(spec("arc"), only_fpb)
    assert arc.relation == "novel" and "concept / general / multiple_choice" in arc.reason
    # FOMC is a classification too, but over other labels (a stance, not a sentiment): not the same task type
    assert relation("fomc", only_fpb) == "novel"
    assert task_type(spec("fomc")) != task_type(spec("fpb")) and task_type(spec("fiqa_sa")) == task_type(spec("fpb"))


def test_german_credit_is_trained_when_the_credit_source_was_curated():
    """The YAML tags flare_german novel; a recipe curating the UCI file (under any source name) trains on it."""
    got = task_relation(spec("flare_german"), sources("fpb", "german_credit"))
    assert got.text() == "trained: curated source german_credit (dataset key credit); the YAML says novel"
    assert relation("flare_german", sources("fpb")) == "novel"
    # a converter that declares no dataset key is matched by where it read from: the task's own file
    own = CuratedSource("my_credit", "my_records", "it", f"{DATA_ROOT}/credit/german.data", DATA_ROOT)
    assert same_dataset(spec("flare_german"), own) == "credit/german.data in dataset folder credit"
    assert relation("flare_german", [own]) == "trained"


@pytest.mark.parametrize("task, curated, expected", [
    ("ner", ("finer",), "trained"),
    ("fomc", ("fomc",), "trained"),
    ("cfa_easy", ("cfa",), "trained"),
    ("cfa_challenge", ("cfa",), "similar"),  # CFA exam questions of another level: the same task type
    ("cfa_easy", ("fpb", "finer"), "novel"),
    ("ectsum", ("ectsum_transcripts",), "trained"),  # CPT text of the same dataset (ectsum/train vs ectsum/val)
    ("edtsum", ("ectsum_transcripts",), "novel"),  # CPT text teaches no task type
    ("mt_bench", ("self_instruct",), "novel"),  # on no FinEval task's dataset: no task type to compare
])
def test_relations_of_the_real_tasks(task, curated, expected):
    assert relation(task, sources(*curated)) == expected


def test_demo_and_hub_locations_are_datasets_too():
    demo = CuratedSource("demo_sentiment", "demo_sentiment", "it", "demo:sentiment")
    assert relation("demo_sentiment", [demo]) == "trained"
    assert relation("fpb", [demo]) == "similar" and relation("demo_stance", [demo]) == "novel"
    hub = CuratedSource("fiqa", "records_chat", "it", "hf:Salesforce/FinEval:FIQASA@train")
    assert relation("fiqa_sa", [hub]) == "trained" and relation("fpb", [hub]) == "similar"
    assert relation("fiqa_sa", [CuratedSource("fpb_hub", "records_chat", "it", "hf:Salesforce/FinEval:FPB")]) \
        == "similar"


def test_without_a_curation_the_yaml_tag_decides_and_says_so():
    got = task_relation(spec("flare_german"), None)
    assert (got.relation, got.derived) == ("novel", False) and got.reason == "YAML tag (no curation manifest)"
    assert task_relation(spec("fpb"), None, why_not="run x has no curation manifest").text() == \
        "similar: YAML tag (run x has no curation manifest)"


# ---- what a run trained on: the manifest, its groups and kinds -----------------------------------------------------
def manifest(groups: dict[str, list[str]]) -> dict:
    """A curation manifest in curate()'s layout: every source with 10 training documents in its groups."""
    used = dict.fromkeys(n for names in groups.values() for n in names)
    return {
        "sources": {n: {"name": n, "kind": SOURCES[n][1], "location": SOURCES[n][2], "examples": 12,
                        "reserved_for_eval": 5, "bad_rows": [], "empty_rows": 0} for n in used},
        "groups": {g: {"sources": names, "train": {"docs": 10 * len(names), "sources": {
            n: {"kind": SOURCES[n][1], "domain": "finance", "capability": "task", "docs": 10, "tokens": 500}
            for n in names}}} for g, names in groups.items()},
    }


def write_run(run: Path, groups: dict[str, list[str]] | None, train: dict | None = None) -> Path:
    """A run directory with a curate stage (manifest + resolved recipe) unless `groups` is None, and a train
    config when `train` is given."""
    if groups is not None:
        (run / "curate").mkdir(parents=True)
        (run / "curate" / "manifest.json").write_text(json.dumps(manifest(groups)))
        names = dict.fromkeys(n for group in groups.values() for n in group)
        config = {"curate": {"data_root": DATA_ROOT, "sources": [{"name": n, "converter": SOURCES[n][0]}
                                                                  for n in names]}}
        (run / "curate" / "config.yaml").write_text(yaml.safe_dump(config))
    if train is not None:
        (run / "train").mkdir(parents=True)
        (run / "train" / "config.yaml").write_text(yaml.safe_dump({"train": train}))
    return run


def test_the_sources_are_those_of_the_groups_and_kinds_the_run_trains_on(tmp_path):
    groups = {"group1": ["ectsum_transcripts", "fpb", "german_credit"], "group2": ["ectsum_transcripts", "fpb",
                                                                                   "german_credit", "cfa"]}
    data = manifest(groups)
    config = {"curate": {"data_root": DATA_ROOT, "sources": [{"name": "german_credit", "converter": "credit"}]}}
    every = curated_sources(data, config)
    assert [s.name for s in every] == ["ectsum_transcripts", "fpb", "german_credit", "cfa"]
    credit = next(s for s in every if s.name == "german_credit")
    assert (credit.converter, credit.holdout_key, credit.kind, credit.tokens) == ("credit", "credit", "it", 500)
    assert [s.name for s in curated_sources(data, config, groups=["group1"])] == ["ectsum_transcripts", "fpb",
                                                                                 "german_credit"]
    assert [s.name for s in curated_sources(data, config, kinds=["cpt"])] == ["ectsum_transcripts"]
    with pytest.raises(ValueError, match="not a curation manifest"):
        curated_sources({"groups": ["g1"]})

    # a run training group1 only never saw the CFA exercises of group2; its CPT-only sibling saw no FPB at all
    one = run_curation(write_run(tmp_path / "g1", groups, {"groups": [{"name": "group1"}]}))
    assert [s.name for s in one.sources] == ["ectsum_transcripts", "fpb", "german_credit"]
    assert relation("cfa_easy", one.sources) == "novel" and relation("flare_german", one.sources) == "trained"
    cpt = run_curation(write_run(tmp_path / "cpt", groups, {"kinds": ["cpt"]}))
    assert [s.name for s in cpt.sources] == ["ectsum_transcripts"] and relation("fpb", cpt.sources) == "novel"
    missing = run_curation(write_run(tmp_path / "eval-only", None))
    assert missing.sources is None and missing.why == "run eval-only has no curation manifest"


def test_a_sweep_recipe_reads_the_shared_curation_its_train_groups_name(tmp_path):
    owner = write_run(tmp_path / "sweep" / "joint", {"group1": ["fpb", "german_credit"]})
    other = write_run(tmp_path / "sweep" / "it-only", None,
                      {"groups": [{"name": "group1", "train": [str(owner / "curate" / "group1" / "train.parquet")]}],
                       "kinds": ["it"]})
    found = run_curation(other)
    assert found.manifest == str(owner / "curate" / "manifest.json")
    assert [s.name for s in found.sources] == ["fpb", "german_credit"]
    # written relative to another working directory: the owner is still found beside the run
    (other / "train" / "config.yaml").write_text(yaml.safe_dump({"train": {"groups": [
        {"name": "group1", "train": ["elsewhere/sweep/joint/curate/group1/train.parquet"]}]}}))
    assert run_curation(other).manifest == str(owner / "curate" / "manifest.json")


# ---- the report --------------------------------------------------------------------------------------------------
def write_result(path: Path, task: str, model: str, value: float) -> None:
    """A per-task result in the eval runner's layout (tags from the task YAML, its spec under settings)."""
    s = spec(task)
    metric = "acc" if s.answer_type == "multiple_choice" else "f1_weighted"
    record = {"task": task, "mode": "direct", "model": model, "n": 50,
              "tags": {"capability": s.capability.value, "domain": s.domain.value, "novelty": s.novelty.value,
                       "answer_type": s.answer_type, "role": "unseen"},
              "scores": {metric: value}, "settings": {"spec": s.model_dump(mode="json", exclude={"description"})}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


TASKS = {"fpb": (0.5, 0.8), "fiqa_sa": (0.5, 0.7), "flare_german": (0.6, 0.62), "arc": (0.4, 0.41)}


def test_the_report_groups_and_labels_tasks_by_what_the_run_trained_on(tmp_path):
    run = write_run(tmp_path / "runs" / "fin", {"group1": ["fpb", "german_credit"]})
    for task, values in TASKS.items():
        for model, value in zip(("base", "cpt_it"), values):
            write_result(run / "eval" / model / f"{task}.direct.json", task, model, value)
    paths = build_report([run], tmp_path / "out", base="base", n_boot=200)
    board = json.loads(Path(paths["json"]).read_text())
    rows = {r["label"]: r for r in board["rows"] if r["kind"] == "task"}
    assert {t: rows[t]["novelty"] for t in TASKS} == {"fpb": "trained", "flare_german": "trained",
                                                     "fiqa_sa": "similar", "arc": "novel"}
    credit = "trained: curated source german_credit (dataset key credit); the YAML says novel"
    assert rows["flare_german"]["relations"] == {"base": credit, "cpt_it": credit}
    cells = [(c["capability"], c["domain"], c["novelty"], c["tasks"]) for c in board["capabilities"]]
    assert cells == [("concept", "general", "novel", ["arc"]), ("task", "finance", "trained", ["flare_german", "fpb"]),
                     ("task", "finance", "similar", ["fiqa_sa"])]
    assert board["curations"][0]["sources"] == ["fpb", "german_credit"] and board["curations"][0]["derived"]
    # the result files keep the YAML tag; the leaderboard's copy of them carries the relation it derived
    assert json.loads((run / "eval" / "base" / "flare_german.direct.json").read_text())["tags"]["novelty"] == "novel"

    md = Path(paths["markdown"]).read_text()
    assert "- `trained/similar/novel`: what the run trained on" in md
    assert f"Relations of run fin: from {run / 'curate' / 'manifest.json'}, 2 curated sources trained on " \
           "(fpb, german_credit)." in md
    trained = md.split("## Unseen - trained", 1)[1].split("\n## ", 1)[0]
    assert "| n | relation |" in trained
    line = next(x for x in trained.splitlines() if "| flare_german |" in x)
    assert line.endswith("| trained: curated source german_credit (dataset key credit); the YAML says novel |")
    assert "| fpb |" in trained and "| fiqa_sa |" not in trained
    similar = md.split("## Unseen - similar", 1)[1].split("\n## ", 1)[0]
    assert "task type of curated fpb (task / finance / classification: negative, neutral, positive)" in similar
    assert "| arc |" in md.split("## Unseen - novel", 1)[1]
    fincap = md.split("## FinCap capabilities - unseen", 1)[1].split("\n## ", 1)[0]
    assert "| Task | finance | trained |" in fincap
    page = Path(paths["html"]).read_text()
    assert "<td class='rel'>trained: curated source fpb (dataset key fpb)</td>" in page
    assert "<h2>Unseen - trained</h2>" in page


def test_runs_that_disagree_show_each_and_the_base_run_groups(tmp_path):
    """Run `fin` curated FPB, run `demo` only the demo sentiment set: FPB is trained for one, similar for the other.
    The row sits under the base model's run's relation and names each model's."""
    fin = write_run(tmp_path / "runs" / "fin", {"group1": ["fpb"]})
    demo = tmp_path / "runs" / "demo"
    (demo / "curate").mkdir(parents=True)
    (demo / "curate" / "manifest.json").write_text(json.dumps({
        "sources": {"demo_sentiment": {"name": "demo_sentiment", "kind": "it", "location": "demo:sentiment"}},
        "groups": {"group1": {"train": {"sources": {"demo_sentiment": {"kind": "it", "docs": 80, "tokens": 7000}}}}}}))
    write_result(fin / "eval" / "base" / "fpb.direct.json", "fpb", "base", 0.5)
    write_result(fin / "eval" / "cpt_it" / "fpb.direct.json", "fpb", "cpt_it", 0.7)
    write_result(demo / "eval" / "demo_cpt_it" / "fpb.direct.json", "fpb", "demo_cpt_it", 0.6)
    board = json.loads(Path(build_report([fin, demo], tmp_path / "out", base="base", n_boot=200)["json"]).read_text())
    [row] = [r for r in board["rows"] if r["kind"] == "task"]
    assert row["novelty"] == "trained"
    assert row["relations"]["demo_cpt_it"].startswith("similar: task type of curated demo_sentiment")
    md = Path(build_report([fin, demo], tmp_path / "out2", base="base", n_boot=200)["markdown"]).read_text()
    line = next(x for x in md.splitlines() if x.startswith("| Task / finance | fpb |"))
    assert "| base, cpt_it: trained: curated source fpb (dataset key fpb); demo_cpt_it: similar: task type of " \
           "curated demo_sentiment" in line


def test_results_without_a_curation_keep_the_yaml_tags_and_the_report_says_so(tmp_path):
    run = tmp_path / "runs" / "eval-only"
    for task in ("fpb", "flare_german"):
        write_result(run / "eval" / "m" / f"{task}.direct.json", task, "m", 0.5)
    (tmp_path / "runs" / "broken" / "curate").mkdir(parents=True)
    (tmp_path / "runs" / "broken" / "curate" / "manifest.json").write_text(json.dumps({"groups": ["g1"]}))
    write_result(tmp_path / "runs" / "broken" / "eval" / "b" / "fomc.direct.json", "fomc", "b", 0.5)
    paths = build_report([tmp_path / "runs"], tmp_path / "out", n_boot=200)
    rows = {r["label"]: r for r in json.loads(Path(paths["json"]).read_text())["rows"] if r["kind"] == "task"}
    assert {t: r["novelty"] for t, r in rows.items()} == {"fpb": "similar", "flare_german": "novel", "fomc": "similar"}
    assert rows["flare_german"]["relations"] == {"m": "novel: YAML tag (run eval-only has no curation manifest)"}
    assert rows["fomc"]["relations"]["b"].startswith("similar: YAML tag (") and "is unreadable" in \
        rows["fomc"]["relations"]["b"]
    md = Path(paths["markdown"]).read_text()
    assert "Relations of run eval-only: the task YAMLs' similar/novel tags (run eval-only has no curation " \
           "manifest)." in md
    # no run's relations were derived: the sections are the YAML's, and no column repeats "YAML tag" on every row
    assert "## Unseen - trained" not in md and "| n | relation |" not in md


def test_relate_results_prefers_a_derived_relation_over_the_base_runs_yaml_tag(tmp_path):
    """The base evaluated outside any run (no curation), the tuned model in a run that curated German credit:
    the row follows the run that knows what was trained."""
    from findap.report.collect import load_results

    write_result(tmp_path / "evals" / "base" / "flare_german.direct.json", "flare_german", "base", 0.5)
    run = write_run(tmp_path / "runs" / "fin", {"group1": ["german_credit"]})
    write_result(run / "eval" / "cpt_it" / "flare_german.direct.json", "flare_german", "cpt_it", 0.6)
    related, curations = relate_results(load_results([tmp_path / "evals", run]), base="base")
    assert {r.model: r.novelty for r in related} == {"base": "trained", "cpt_it": "trained"}
    by_model = {r.model: r.relation for r in related}
    assert by_model["base"] == "novel: YAML tag (results outside a run directory)"
    assert by_model["cpt_it"].startswith("trained: curated source german_credit")
    assert sorted(c.run for c in curations) == ["", "fin"]


def test_the_demo_curations_manifest_trains_the_demo_tasks():
    """curate()'s own manifest of recipes/demo.yaml (the streamed-curation golden): every demo task the recipe
    evaluates is on a curated demo set, so each is trained; the YAML tags them similar."""
    golden = json.loads((Path(__file__).parent / "data" / "curate_demo_golden.json").read_text())["manifest"]
    found = curated_sources(golden)
    assert sorted(s.name for s in found) == ["demo_concepts_mc", "demo_exercises", "demo_finance_texts",
                                             "demo_general_it", "demo_sentiment", "demo_stance"]
    assert {s.name: s.kind for s in found}["demo_finance_texts"] == "cpt"
    for task in ("demo_sentiment", "demo_stance", "demo_concepts", "demo_exercises"):
        assert relation(task, found) == "trained", task
    assert relation("demo_exercises_fresh", found) == "similar"  # generated anew: the exercises' task type
    assert relation("fpb", found) == "similar" and relation("fomc", found) == "similar"
    assert relation("sm_acl", found) == "novel"
    assert [s.name for s in curated_sources(golden, groups=["group1"]) if s.name == "demo_exercises"] == []
