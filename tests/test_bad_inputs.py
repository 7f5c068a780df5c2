"""The bad-input corpus: every expected failure a user meets in their first hour, driven through the real CLI.

Each case runs `python -m findap ...` as a subprocess in a scratch folder (so `runs/` is the scratch folder's) and
checks the error contract (findap.errors): the exit code (2 for usage and input errors, 1 for runtime
failures), no Python traceback, a short message (at most 3 lines) that names the culprit (the flag, the recipe
field or file:line), and nothing under `runs/` created or changed. These failures happen before any model loads,
so every case takes seconds.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = str(REPO / "src")


# ---- the scratch world every case runs in ------------------------------------------------------------------------
def _task_yaml(name: str, data: Path) -> dict:
    return {"name": name, "capability": "task", "domain": "finance", "novelty": "similar",
            "answer_type": "classification", "labels": ["positive", "negative"],
            "source": {"loader": "jsonl", "args": {"path": str(data)}}, "metrics": ["acc"]}


GOOD_ROW = '{"text": "Profits rose.", "label": "positive"}\n'
SENTIMENT_ROW = '{"id": "s1", "sentence": "Profits rose sharply.", "label": "positive"}\n'


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model_dir) -> dict:
    root = tmp_path_factory.mktemp("world")
    demo = yaml.safe_load((REPO / "recipes" / "demo.yaml").read_text())
    (root / "demo.yaml").write_text(yaml.safe_dump(demo))  # runs_dir "runs": the scratch folder's runs/

    def recipe(file: str, **changes) -> None:
        (root / f"{file}.yaml").write_text(yaml.safe_dump({**demo, "name": file, **changes}))

    sources = demo["curate"]["sources"]
    recipe("typo", curate={**demo["curate"], "sources": [
        {**s, "path": "demo:sentimnt"} if s["name"] == "demo_sentiment" else s for s in sources]})
    recipe("mismatch", curate={**demo["curate"], "sources": [
        {**s, "path": "demo:stance"} if s["name"] == "demo_sentiment" else s for s in sources]})
    recipe("dotdot", name="..")
    recipe("missingtrain", stages=["train"], train={"groups": [{"name": "g", "train": ["missing.jsonl"]}]})
    (root / "badyaml.yaml").write_text("name: demo\ntrain: [unclosed\n")
    (root / "unknownfield.yaml").write_text("name: uf\ntrian: {lr: 1.0e-5}\n")
    (root / "alist.yaml").write_text("- a\n- b\n")
    (root / "selfbase.yaml").write_text("base: selfbase.yaml\nname: sb\n")
    (root / "latin1.yaml").write_bytes(b"name: latin1\n# r\xe9sum\xe9 of the run\n")
    # recipes reading the real datasets under the data root (findap.data_root)
    (root / "fin.yaml").write_text(f"base: {REPO / 'recipes' / 'smollm2-fin.yaml'}\nname: fin\n")
    (root / "finroot.yaml").write_text("base: fin.yaml\nname: finroot\ndata_root: no_data_here\n")
    (root / "oldroot.yaml").write_text("base: fin.yaml\nname: oldroot\ncurate: {data_root: ../shared/data}\n")

    # local task files (the generic jsonl format) with one problem each, and their task YAMLs
    data = root / "data"
    data.mkdir()
    files = {
        "badjson": GOOD_ROW + '{"text": "Costs fell.", "label": \n',
        "nolabel": GOOD_ROW + '{"text": "Costs fell."}\n',
        "empty": "",
    }
    for name, text in files.items():
        (data / f"{name}.jsonl").write_text(text)
        (root / f"t_{name}.yaml").write_text(yaml.safe_dump(_task_yaml(f"t_{name}", data / f"{name}.jsonl")))
    (data / "binary.jsonl").write_bytes(GOOD_ROW.encode() + b'{"text": "Co\xfbts fell.", "label": "negative"}\n')
    (root / "t_binary.yaml").write_text(yaml.safe_dump(_task_yaml("t_binary", data / "binary.jsonl")))

    # a FINDAP_TASKS folder with one good task and one broken YAML
    tasks = root / "tasks"
    tasks.mkdir()
    (data / "good.jsonl").write_text(GOOD_ROW * 3)
    (tasks / "good_task.yaml").write_text(yaml.safe_dump(_task_yaml("good_task", data / "good.jsonl")))
    broken = _task_yaml("broken_task", data / "good.jsonl")
    del broken["answer_type"]
    (tasks / "broken_task.yaml").write_text(yaml.safe_dump(broken))

    # demo-format files for `findap demo check`
    (data / "s_badjson.jsonl").write_text(SENTIMENT_ROW + '{"id": "s2", "sentence": \n')
    (data / "s_nolabel.jsonl").write_text(SENTIMENT_ROW + '{"id": "s2", "sentence": "Costs fell."}\n')
    (data / "s_empty.jsonl").write_text("")
    (data / "s_dupid.jsonl").write_text(SENTIMENT_ROW + SENTIMENT_ROW.replace("Profits rose", "Sales grew"))
    (data / "s_binary.jsonl").write_bytes(SENTIMENT_ROW.encode() + b'{"id": "s2", "sentence": "Co\xfbts fell.", '
                                          b'"label": "negative"}\n')
    export = root / "exported"
    export.mkdir()
    (export / "sentiment.jsonl").write_text(SENTIMENT_ROW)

    # report inputs: an empty folder, a folder with one result, a folder with a broken result file
    (root / "empty_dir").mkdir()
    result = {"task": "fpb", "model": "base", "mode": "direct", "scores": {"acc": 0.5}, "tags": {
        "capability": "task", "domain": "finance", "novelty": "similar", "role": "unseen",
        "answer_type": "classification"}}
    (root / "results" / "base").mkdir(parents=True)
    (root / "results" / "base" / "fpb.direct.json").write_text(json.dumps(result))
    (root / "badresults").mkdir()
    (root / "badresults" / "fpb.direct.json").write_text('{"task": "fpb",\n "scores": }\n')

    # an existing run the failing commands must leave alone
    (root / "runs" / "demo" / "curate").mkdir(parents=True)
    (root / "runs" / "demo" / "curate" / "log.txt").write_text("an earlier run\n")
    return {"root": root, "tiny": tiny_model_dir}


@pytest.fixture(scope="module")
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield s.getsockname()[1]


def findap(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("FINDAP_DEBUG", "FINDAP_TASKS")}
    full_env.update({"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1",
                     "COLUMNS": "200", **(env or {})})
    return subprocess.run([sys.executable, "-m", "findap", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


# ---- the corpus ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]  # {root} {tiny} {port} are filled in
    code: int
    names: tuple[str, ...]  # what the message must name (all of them)
    env: dict = field(default_factory=dict)


def C(id: str, args: str | list[str], code: int, *names: str, env: dict | None = None) -> Case:
    return Case(id, tuple(args.split() if isinstance(args, str) else args), code, names, env or {})


CASES = [
    # recipes and overrides
    C("name-traversal", "run demo.yaml --set name=../../x", 2, "name", "../../x"),
    C("name-empty", "run demo.yaml --set name=", 2, "name"),
    C("name-slash", "train demo.yaml --set name=a/b", 2, "name", "a/b"),
    C("name-dotdot-in-file", "run dotdot.yaml", 2, "name", "'..'"),
    C("demo-source-typo", "curate typo.yaml", 2, "demo:sentimnt", "sentiment"),
    C("demo-source-typo-dry-run", "curate typo.yaml --dry-run", 2, "demo:sentimnt", "sentiment"),
    C("demo-source-other-set", "curate mismatch.yaml", 2, "demo:stance", "demo_sentiment"),
    C("recipe-missing", "run nope.yaml", 2, "nope.yaml"),
    C("recipe-bad-yaml", "run badyaml.yaml", 2, "badyaml.yaml:"),
    C("recipe-unknown-field", "run unknownfield.yaml", 2, "trian"),
    C("recipe-not-a-mapping", "run alist.yaml", 2, "alist.yaml", "mapping"),
    C("recipe-base-cycle", "run selfbase.yaml", 2, "selfbase.yaml", "cycle"),
    C("recipe-not-utf8", "run latin1.yaml", 2, "latin1.yaml:2", "byte"),
    C("recipe-is-a-folder", "run data", 2, "data"),
    C("override-bad-yaml-value", ["run", "demo.yaml", "--set", "train.lr=[1"], 2, "train.lr"),
    C("override-index-not-a-number", "run demo.yaml --set train.groups.x.lr=1e-5", 2, "train.groups.x"),
    C("override-demo-path-typo", "curate demo.yaml --set curate.sources.0.path=demo:finance_text", 2,
      "curate.sources.0.path", "demo:finance_texts"),
    C("override-no-equals", "run demo.yaml --set seed", 2, "seed"),
    C("override-bad-value", "train demo.yaml --set train.lr=-1", 2, "train.lr"),
    C("override-not-a-number", "run demo.yaml --set seed=abc", 2, "seed", "abc"),
    C("override-unknown-field", "run demo.yaml --set train.lrr=1", 2, "train.lrr"),
    C("override-bad-index", "run demo.yaml --set train.groups.5.lr=1e-5", 2, "train.groups.5"),
    C("override-unknown-stage", ["run", "demo.yaml", "--set", "stages=[trian]"], 2, "stages"),
    C("override-batch-mismatch", "train demo.yaml --set train.micro_batch_tokens=1000", 2, "micro_batch_tokens"),
    C("fp16-cannot-train", "run demo.yaml --set precision=fp16", 2, "fp16"),
    C("only-unknown-stage", "run demo.yaml --only trian", 2, "--only", "trian", "did you mean --only train"),
    C("unknown-command", "trian demo.yaml", 2, "trian"),
    C("unknown-flag", "run demo.yaml --no-such-flag", 2, "--no-such-flag"),
    C("dry-run-missing-file", "run missingtrain.yaml --dry-run", 2, "missing.jsonl"),
    C("sweep-missing-folder", "sweep nope/", 2, "nope"),
    # the data root (findap.data_root): missing, one line for all the datasets under it
    C("data-root-missing-env", "run fin.yaml", 2, "{root}/no_data", "FINDAP_DATA", "data_root",
      env={"FINDAP_DATA": "{root}/no_data"}),
    C("data-root-missing-env-dry-run", "run fin.yaml --dry-run", 2, "{root}/no_data", "FINDAP_DATA",
      env={"FINDAP_DATA": "{root}/no_data"}),
    C("data-root-missing-in-recipe", "curate finroot.yaml", 2, "{root}/no_data_here", "recipe data_root"),
    C("data-root-missing-eval", "eval --model {tiny} --tasks fpb --out evalout", 2, "{root}/no_data",
      "FINDAP_DATA", env={"FINDAP_DATA": "{root}/no_data"}),
    C("data-root-old-place", "run oldroot.yaml", 2, "oldroot.yaml", "curate.data_root", "top of the recipe"),
    C("data-root-old-place-override", "run demo.yaml --set curate.data_root=x", 2, "curate.data_root",
      "--set data_root"),
    # tasks: names, FINDAP_TASKS folders, local task files
    C("unknown-task", "eval demo.yaml --dry-run --tasks demo_sentimnt", 2, "demo_sentimnt", "demo_sentiment"),
    C("unknown-task-in-recipe", ["run", "demo.yaml", "--dry-run", "--set", "eval.tasks=[fpbb]"], 2, "fpbb", "fpb"),
    C("task-set-not-in-recipe-tasks", ["run", "demo.yaml", "--dry-run", "--set", "eval.task_sets={fin: [fpb]}"], 2,
      "eval.task_sets.fin", "fpb", "eval.tasks"),
    C("tasks-folder-missing", "run demo.yaml --dry-run", 2, "FINDAP_TASKS", "no_such_folder",
      env={"FINDAP_TASKS": "{root}/no_such_folder"}),
    C("broken-task-yaml-used", "eval demo.yaml --dry-run --tasks broken_task", 2, "broken_task.yaml", "answer_type",
      env={"FINDAP_TASKS": "{root}/tasks"}),
    C("broken-task-yaml-listed", "eval --list", 2, "broken_task.yaml", "answer_type",
      env={"FINDAP_TASKS": "{root}/tasks"}),
    C("task-file-bad-json", "eval --model {tiny} --tasks t_badjson.yaml --limit 1 --out evalout", 2,
      "badjson.jsonl:2"),
    C("task-file-missing-label", "eval --model {tiny} --tasks t_nolabel.yaml --limit 1 --out evalout", 2,
      "nolabel.jsonl:2", "label"),
    C("task-file-empty", "eval --model {tiny} --tasks t_empty.yaml --limit 1 --out evalout", 2, "empty.jsonl",
      "empty"),
    C("task-file-not-utf8", "eval --model {tiny} --tasks t_binary.yaml --limit 1 --out evalout", 2,
      "binary.jsonl:2", "byte"),
    C("eval-unknown-task-with-model", "eval --model {tiny} --tasks demo_sentimnt --out evalout", 2, "demo_sentimnt",
      "demo_sentiment"),
    C("eval-no-model", "eval", 2, "--model"),
    C("eval-recipe-given-as-task", "eval --model {tiny} --tasks demo.yaml --limit 1 --out evalout", 2, "demo.yaml",
      "recipe", "findap eval demo.yaml"),
    C("eval-bad-mode", "eval demo.yaml --mode bogus", 2, "--mode"),
    # demo files
    C("demo-check-bad-json", "demo check sentiment data/s_badjson.jsonl", 2, "s_badjson.jsonl:2"),
    C("demo-check-missing-label", "demo check sentiment data/s_nolabel.jsonl", 2, "s_nolabel.jsonl:2", "label"),
    C("demo-check-empty", "demo check sentiment data/s_empty.jsonl", 2, "s_empty.jsonl", "empty"),
    C("demo-check-not-utf8", "demo check sentiment data/s_binary.jsonl", 2, "s_binary.jsonl:2", "byte"),
    C("demo-check-unknown-set", "demo check sentimnt data/s_nolabel.jsonl", 2, "sentimnt", "sentiment"),
    C("demo-check-missing-file", "demo check sentiment data/nope.jsonl", 2, "nope.jsonl"),
    C("demo-check-folder", "demo check sentiment data", 2, "data"),
    C("demo-check-duplicate-id", "demo check sentiment data/s_dupid.jsonl", 2, "s_dupid.jsonl:2", "id"),
    C("demo-export-overwrite", "demo export exported", 2, "sentiment.jsonl", "--overwrite"),
    # serve, chat
    C("serve-busy-port", "serve --model {tiny} --port {port}", 2, "{port}", "--port"),
    C("serve-bad-port", "serve --model {tiny} --port 70000", 2, "--port", "70000"),
    C("chat-empty-message", ["chat", "", "--model", "{tiny}"], 2, "empty message"),
    C("chat-blank-message", ["chat", "   ", "--model", "{tiny}"], 2, "empty message"),
    C("chat-zero-tokens", "chat hi --model {tiny} --max-new-tokens 0", 2, "--max-new-tokens"),
    C("chat-negative-temperature", "chat hi --model {tiny} --temperature -1", 2, "--temperature"),
    C("chat-missing-model-dir", "chat hi --model ./no_such_model", 2, "--model", "no_such_model"),
    C("chat-model-is-a-file", "chat hi --model demo.yaml", 2, "--model", "demo.yaml"),
    C("serve-unknown-host", "serve --model {tiny} --host no-such-host.invalid --port 8000", 2, "--host"),
    C("serve-unknown-option", "serve --model {tiny} --bogus 1", 2, "--bogus"),
    # report
    C("report-empty-folder", "report empty_dir --out runs/report", 2, "empty_dir"),
    C("report-missing-folder", "report no_such_run --out runs/report", 2, "no_such_run"),
    C("report-unknown-base", "report results --out runs/report --base tuned", 2, "--base", "tuned", "base"),
    C("report-unknown-task-in-set", "report results --out runs/report --task-set fin=fpb,fpbb", 2, "--task-set",
      "fpbb"),
    C("report-bad-task-set", "report results --out runs/report --task-set fin", 2, "--task-set"),
    C("report-task-set-not-scored", "report results --out runs/report --task-set fin=fpb,fomc", 2, "--task-set fin",
      "fomc", "fpb"),
    C("report-broken-result", "report badresults --out runs/report", 2, "fpb.direct.json:2"),
    C("report-unknown-adjustment", "report results --out runs/report --adjust bonferroni", 2, "--adjust",
      "bonferroni"),
    # evaluation and run flags
    C("eval-limit-zero", "eval --model {tiny} --tasks fpb --limit 0 --out evalout", 2, "--limit"),
    C("eval-same-model-twice", "eval --model {tiny} --model {tiny} --tasks fpb --out evalout", 2, "--model",
      "twice"),
    C("eval-unknown-engine", "eval --model {tiny} --tasks fpb --engine foo --out evalout", 2, "--engine", "foo"),
    C("eval-unknown-split", "eval --model {tiny} --tasks fpb --split test --out evalout", 2, "--split", "test"),
    C("eval-unknown-prefer", "eval --model {tiny} --tasks fpb --prefer cloud --out evalout", 2, "--prefer", "cloud"),
    C("eval-unknown-mode-in-list", "eval --model {tiny} --tasks fpb --mode direct,plain --out evalout", 2, "--mode",
      "plain"),
    C("run-force-unknown-stage", "run demo.yaml --force trian", 2, "--force", "trian"),
    C("recipe-model-missing", "run demo.yaml --set model=./no_such_model --dry-run", 2, "model", "no_such_model"),
    C("recipe-model-folder-without-weights", "run demo.yaml --set model=data --dry-run", 2, "model", "config.json"),
    C("eval-model-missing", "eval --model ./no_such_model --tasks fpb --out evalout", 2, "--model", "no_such_model"),
    C("eval-model-folder-without-weights", "eval --model data --tasks fpb --out evalout", 2, "--model",
      "config.json"),
    C("eval-tasks-name-nothing", ["eval", "--model", "{tiny}", "--tasks", " ,", "--out", "evalout"], 2, "--tasks"),
    C("eval-out-not-a-folder", "eval --model {tiny} --tasks fpb --limit 1 --out demo.yaml/x", 2, "--out",
      "demo.yaml"),
    C("eval-openai-without-url", "eval --model {tiny} --tasks fpb --engine openai --limit 1 --out evalout", 2,
      "--base-url"),
    C("recipe-eval-without-tasks", ["run", "demo.yaml", "--dry-run", "--set", "eval.tasks=[]"], 2, "eval.tasks"),
    C("recipe-device-unknown", "run demo.yaml --dry-run --set device=tpu", 2, "device", "tpu"),
    C("recipe-device-not-here", "run demo.yaml --dry-run --set device=cuda:99", 2, "device", "cuda:99"),
    C("runs-dir-under-a-file", "run demo.yaml --set runs_dir=demo.yaml/x", 2, "runs_dir", "demo.yaml"),
    C("demo-export-into-a-file", "demo export demo.yaml", 2, "demo.yaml", "file"),
    C("train-before-curate", "train demo.yaml", 2, "curate", "findap curate"),
    C("align-before-distill", "align demo.yaml", 2, "distill", "findap distill"),
]
# cases that depend on a change outside this file's owners (see the final report): expected to fail until then
def _fill(text: str, world: dict, port: int) -> str:
    return text.replace("{root}", str(world["root"])).replace("{tiny}", str(world["tiny"])).replace(
        "{port}", str(port))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input(case: Case, world, busy_port):
    root = world["root"]
    args = [_fill(a, world, busy_port) for a in case.args]
    env = {k: _fill(v, world, busy_port) for k, v in case.env.items()}
    before = snapshot(root / "runs")
    res = findap(args, root, env)
    out = (res.stdout + res.stderr).strip()
    assert "Traceback" not in out, out[-3000:]
    assert res.returncode == case.code, f"exit {res.returncode}, expected {case.code}:\n{out[-3000:]}"
    lines = [line for line in out.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, f"{len(lines)} lines:\n{out}"
    for name in case.names:
        assert _fill(name, world, busy_port) in out, f"the message does not name {name!r}:\n{out}"
    assert snapshot(root / "runs") == before, "a failed command changed runs/"


def test_a_broken_task_yaml_does_not_stop_commands_that_do_not_use_it(world):
    res = findap(["run", "demo.yaml", "--dry-run"], world["root"], {"FINDAP_TASKS": str(world["root"] / "tasks")})
    assert res.returncode == 0 and "nothing started" in res.stdout, res.stdout + res.stderr
    res = findap(["eval", "demo.yaml", "--dry-run", "--tasks", "good_task,fpb"], world["root"],
                 {"FINDAP_TASKS": str(world["root"] / "tasks")})
    assert res.returncode == 0 and "nothing started" in res.stdout, res.stdout + res.stderr


# ---- Ctrl-C, bugs and the debug switch ---------------------------------------------------------------------------
def _driven(code: str, args: list[str], cwd: Path, env: dict | None = None, **kw) -> subprocess.Popen:
    """`findap ARGS` through findap.cli.main after `code` has patched a module (a stand-in for minutes of work)."""
    script = f"import sys\n{code}\nfrom findap.cli import main\nsys.argv = ['findap', *{args!r}]\nmain()\n"
    full_env = {k: v for k, v in os.environ.items() if k not in ("FINDAP_DEBUG", "FINDAP_TASKS")}
    full_env.update({"PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})})
    # a shell's background job ignores SIGINT, and a child inherits that: give it Ctrl-C's default back, as a
    # terminal's foreground command has it
    return subprocess.Popen([sys.executable, "-c", script], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


def test_ctrl_c_names_the_stage_and_the_command_that_resumes(world):
    marker = world["root"] / "stage-started"
    marker.unlink(missing_ok=True)
    slow_stage = ("import time, findap.pipeline as p\n"
                  "def slow(recipe, stage, force=False):\n"
                  f"    open({str(marker)!r}, 'w').close()\n"
                  "    time.sleep(120)\n"
                  "p.run_stage_in_child = slow")
    proc = _driven(slow_stage, ["run", "demo.yaml"], world["root"])
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    last = (out + err).strip().splitlines()[-1]
    assert "interrupted in stage curate" in last and "runs/demo" in last and "findap run demo.yaml" in last, last


def test_a_bug_keeps_its_traceback_and_says_it_is_a_bug(world):
    boom = "import findap.pipeline as p\ndef boom(*a, **k):\n    raise RuntimeError('boom')\np.run_recipe = boom"
    proc = _driven(boom, ["run", "demo.yaml"], world["root"])
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "Traceback" in err and "RuntimeError: boom" in err
    last = err.strip().splitlines()[-1]
    assert "bug" in last and "RuntimeError: boom" in last, last


@pytest.mark.parametrize("how", ["env", "flag-before", "flag-after"])
def test_debug_shows_the_traceback_of_an_expected_failure(world, how):
    args = ["demo", "check", "sentiment", "data/s_nolabel.jsonl"]
    args = ["--debug", *args] if how == "flag-before" else [*args, "--debug"] if how == "flag-after" else args
    res = findap(args, world["root"], {"FINDAP_DEBUG": "1"} if how == "env" else {})
    assert res.returncode == 2
    assert "Traceback" in res.stderr and "DataError" in res.stderr
    assert "s_nolabel.jsonl:2: field 'label'" in res.stderr.strip().splitlines()[-1]


# ---- item checks in process: section overrides reach every group, curation's bad bytes obey on_bad_row ---------
@pytest.mark.parametrize("overrides, expected", [
    ([], [5e-5, 5e-5]),  # the groups' own values (recipes/demo.yaml)
    (["train.lr=1e-5"], [1e-5, 1e-5]),  # a section-level override reaches every group
    (["train.lr=1e-5", "train.groups.1.lr=2e-5"], [1e-5, 2e-5]),  # a later group override still wins
    (["train.groups.1.lr=2e-5", "train.lr=1e-5"], [1e-5, 1e-5]),  # in order: the section value comes last
])
def test_section_lr_override_is_what_every_group_trains_with(tmp_path, monkeypatch, overrides, expected):
    """The learning rate each phase of stage 1 actually gets (train.stage.build_phases, what the loop runs)."""
    from findap.recipe import load_recipe
    from findap.train import stage
    from findap.train.tokenize import TokenizeStats

    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text('{"kind": "cpt", "text": "x"}\n')
    files = [f"train.groups.{i}.train=[{tmp_path / name}.jsonl]" for i, name in enumerate("ab")]
    recipe = load_recipe(REPO / "recipes" / "demo.yaml", [*files, *overrides])
    monkeypatch.setattr(stage, "load_docs", lambda files, *a, **k: [{"kind": "cpt", "input_ids": [1]}])
    phases = stage.build_phases(recipe.train, None, None, tmp_path, TokenizeStats())
    assert [p.lr for p in phases] == pytest.approx(expected)
    warm = load_recipe(REPO / "recipes" / "demo.yaml", [*files, "train.warmup=0.2", "train.epochs=3"])
    assert [(p.warmup, p.epochs) for p in stage.build_phases(warm.train, None, None, tmp_path, TokenizeStats())] \
        == [(0.2, 3.0), (0.2, 3.0)]


BAD_BYTES = b"\xff\xfe"


@pytest.mark.parametrize("converter, good, bad", [
    ("gsm8k", b'{"question": "1+1?", "answer": "2\\n#### 2"}\n', b'{"question": "x\xff?", "answer": "#### 1"}\n'),
    ("fpb", b"Profits rose sharply this year .@positive\n", b"Co\xffts fell .@negative\n"),
    ("records_text", b'{"text": "Profits rose sharply this year."}\n', b'{"text": "Co\xffts fell."}\n'),
])
def test_curation_treats_bytes_that_are_not_utf8_as_bad_rows(tmp_path, converter, good, bad):
    from findap.curate.config import CurateConfig, SourceConfig
    from findap.curate.sources import SourceError, load_source

    path = tmp_path / f"src.{'txt' if converter == 'fpb' else 'jsonl'}"
    path.write_bytes(good + bad + good)
    cfg = CurateConfig(data_root=str(tmp_path), eval_holdout=0.0)
    spec = SourceConfig(name="s", converter=converter, path=str(path))
    examples, report = load_source(spec, cfg)
    offset = len(good) + bad.index(b"\xff")
    if converter == "records_text":  # read whole by findap.io: the file is one bad row
        assert examples == [] and len(report.bad_rows) == 1
    else:  # line by line: the bad line is skipped, the others kept
        assert len(examples) == 2 and len(report.bad_rows) == 1
    assert f"{path}:2:" in report.bad_rows[0] and f"byte offset {offset}" in report.bad_rows[0]
    with pytest.raises(SourceError, match=rf"{path.name}:2:.*not UTF-8.*byte offset {offset}"):
        load_source(spec, cfg.model_copy(update={"on_bad_row": "fail"}))


def test_task_files_name_file_line_and_field(tmp_path):
    """The generic task loader, in process: each problem is a DataError naming file:line (and the field)."""
    from findap.eval.registry import load_spec
    from findap.eval.task import Task
    from findap.io import DataError

    cases = {
        "badjson": (GOOD_ROW.encode() + b'{"text": \n', r"badjson\.jsonl:2: invalid JSON"),
        "nolabel": (GOOD_ROW.encode() + b'{"text": "x"}\n', r"nolabel\.jsonl:2: field 'label': missing"),
        "badlabel": (GOOD_ROW.encode() + b'{"text": "x", "label": "up"}\n', r"badlabel\.jsonl:2: field 'label'"),
        "empty": (b"\n\n", r"empty\.jsonl: the file is empty"),
        "binary": (GOOD_ROW.encode() + b'{"text": "\xc3(", "label": "negative"}\n',
                   rf"binary\.jsonl:2: not UTF-8 text: byte 0xc3 at byte offset {len(GOOD_ROW) + 10} \(column 11\)"),
    }
    for name, (content, expected) in cases.items():
        (tmp_path / f"{name}.jsonl").write_bytes(content)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(_task_yaml(name, tmp_path / f"{name}.jsonl")))
        with pytest.raises(DataError, match=expected):
            Task(load_spec(tmp_path / f"{name}.yaml"), root=tmp_path).all_docs


def test_one_broken_task_yaml_fails_only_where_it_is_used(tmp_path, monkeypatch):
    from findap.errors import UnknownName, UsageError
    from findap.eval import registry
    from findap.io import DataError

    (tmp_path / "good.jsonl").write_text(GOOD_ROW)
    (tmp_path / "good_task.yaml").write_text(yaml.safe_dump(_task_yaml("good_task", tmp_path / "good.jsonl")))
    broken = _task_yaml("broken_task", tmp_path / "good.jsonl")
    broken["answer_type"] = "essay"
    (tmp_path / "broken_file.yaml").write_text(yaml.safe_dump(broken))
    monkeypatch.setenv("FINDAP_TASKS", str(tmp_path))
    assert registry.check_task_names(["good_task", "fpb"]) == ["good_task", "fpb"]
    assert any("good_task" in members for members in registry.groups().values())
    assert "good_task" in registry.all_specs() and "broken_task" not in registry.all_specs()
    for name in ("broken_task", "broken_file"):  # by its `name:` or its file name
        with pytest.raises(DataError, match=r"broken_file\.yaml: field 'answer_type'"):
            registry.check_task_names([name])
    with pytest.raises(DataError, match=r"broken_file\.yaml: field 'answer_type'"):
        registry.groups(strict=True)  # what a listing (`findap eval --list`) calls
    with pytest.raises(UnknownName, match="did you mean good_task"):
        registry.check_task_names(["good_tsk"])
    monkeypatch.setenv("FINDAP_TASKS", str(tmp_path / "nope"))
    with pytest.raises(UsageError, match=r"FINDAP_TASKS: .*nope does not exist"):
        registry.check_task_names(["fpb"])
