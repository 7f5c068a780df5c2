"""Recipes: validation errors name the field path, the value and what is allowed; overrides; run dirs."""
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from findap.cli import app
from findap.recipe import RecipeError, load_recipe
from findap.runs import StageContext, is_done, read_done


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_valid_recipe_and_overrides(tmp_path):
    p = write(tmp_path, "name: t\nseed: 1\n")
    r = load_recipe(p, ["seed=7", "precision=fp32", "runs_dir=" + str(tmp_path)])
    assert (r.seed, r.precision, r.run_dir) == (7, "fp32", tmp_path / "t")


def test_errors_name_path_value_and_allowed(tmp_path):
    p = write(tmp_path, "name: t\nprecision: bf17\ntrain:\n  no_such_field: 3\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert "precision" in msg and "'bf17'" in msg and "'bf16'" in msg
    assert "train.no_such_field" in msg and "unknown field" in msg


def test_fp16_is_refused_for_training_stages_only(tmp_path):
    with pytest.raises(RecipeError, match=r"fp16 cannot train \(train, align"):
        load_recipe(write(tmp_path, "name: t\nprecision: fp16\n"))
    r = load_recipe(write(tmp_path, "name: t\nprecision: fp16\nstages: [eval, report]\n"))  # inference only
    assert r.precision == "fp16"


def test_yaml_syntax_error_has_line(tmp_path):
    p = write(tmp_path, "name: t\nseed: [1, 2\n")
    with pytest.raises(RecipeError, match=r"r.yaml:\d+: invalid YAML"):
        load_recipe(p)


def test_bad_override_syntax(tmp_path):
    with pytest.raises(RecipeError, match="key.path=value"):
        load_recipe(write(tmp_path, "name: t\n"), ["seed"])


DEMO = Path(__file__).parents[1] / "recipes" / "demo.yaml"


def test_override_indexes_list_items():
    # used to fail with "'groups' is a value, not a section": no group's learning rate could be set
    r = load_recipe(DEMO, ["train.groups.1.lr=2e-5", "train.groups.0.train=[a.jsonl, b.jsonl]", "eval.tasks.0=fpb"])
    assert [g.lr for g in r.train.groups] == [5e-5, 2e-5]
    assert r.train.groups[0].train == ["a.jsonl", "b.jsonl"] and r.eval.tasks[0] == "fpb"


def test_override_star_sets_every_item():
    r = load_recipe(DEMO, ["train.groups.*.lr=1e-5", "train.groups.*.warmup=0.2"])
    assert [(g.name, g.lr, g.warmup) for g in r.train.groups] == [("group1", 1e-5, 0.2), ("group2", 1e-5, 0.2)]


def test_override_reaches_default_lists_and_sections(tmp_path):
    from findap.curate.config import CurateConfig

    # no train:/curate: section in the file: the default lists are filled in, then indexed
    # (group 2 without `extends` has finance IT only: the pool's own finance share, or it would be empty)
    r = load_recipe(write(tmp_path, "name: t\n"), ["train.groups.*.lr=3e-5", "curate.groups.1.extends=null",
                                                    "curate.mixture.it_domain_share=null",
                                                    "eval.judge.engine.model=gpt-x", "eval.models.mine=/m",
                                                    "eval.judge.engine.base_url=http://127.0.0.1:8000/v1"])
    assert [g.lr for g in r.train.groups] == [3e-5]
    default = CurateConfig().groups
    assert [(g.name, g.sources) for g in r.curate.groups] == [(g.name, g.sources) for g in default]
    assert default[1].extends is not None and r.curate.groups[1].extends is None
    assert (r.eval.judge.engine.model, r.eval.models) == ("gpt-x", {"mine": "/m"})


def test_override_values_are_yaml(tmp_path):
    r = load_recipe(DEMO, ["train.groups=[{name: only, lr: 1e-4}]", "stages=[train, eval]", "seed=0x10",
                           "eval.limit=null"])
    assert [(g.name, g.lr) for g in r.train.groups] == [("only", 1e-4)]
    assert (r.stages, r.seed, r.eval.limit) == (["train", "eval"], 16, None)


@pytest.mark.parametrize("override, message", [
    ("train.groups.7.lr=1e-5", "train.groups.7: only 2 groups; to add one, set the whole list: train.groups=[...]"),
    ("train.groups.x.lr=1e-5", "train.groups.x: train.groups is a list of 2 groups: index it with 0..1 or *"),
    ("train.groups.0.lrr=1e-5", "train.groups.0.lrr: unknown field; train.groups.0 has: name, train, dev, lr"),
    ("train.nope=1", "train.nope: unknown field; train has: "),
    ("nope=1", "nope: unknown field; a recipe has: name, model"),
    ("seed.x=1", "seed is a value (0), not a section or list: nothing to find at 'x'"),
    ("train.*.lr=1", "train.*: '*' selects every item of a list, and train is a section"),
    ("train.groups.0=", "train.groups.0: Input should be a valid dictionary"),
])
def test_override_errors_name_the_path_and_what_exists(override, message):
    with pytest.raises(RecipeError) as e:
        load_recipe(DEMO, [override])
    assert message in str(e.value)
    if override.startswith("train.nope"):
        assert {"groups", "seq_len", "micro_batch_tokens"} <= set(str(e.value).split(" has: ")[1].split(", "))


def test_override_fills_an_empty_section_and_refuses_bad_yaml(tmp_path):
    p = write(tmp_path, "name: t\ntrain:\neval:\n  judge: null\n")  # `train:` with nothing under it is None
    r = load_recipe(p, ["train.groups.0.lr=1e-5", "eval.judge.engine.model=x", "eval.judge.engine.kind=hf"])
    assert (r.train.groups[0].lr, r.eval.judge.engine.model) == (1e-5, "x")
    with pytest.raises(RecipeError, match=r"override 'eval.tasks=\[a,': the value is not valid YAML"):
        load_recipe(p, ["eval.tasks=[a,"])


def test_override_on_an_empty_list_says_so(tmp_path):
    with pytest.raises(RecipeError, match=r"train.groups.0.dev.0: no dev \(an empty list\)"):
        load_recipe(write(tmp_path, "name: t\n"), ["train.groups.0.dev.0=x.jsonl"])


def test_done_marker_is_atomic_and_last(tmp_path):
    ctx = StageContext(run_dir=tmp_path / "run", name="train")
    ctx.log_metrics({"step": 1, "loss": 2.0})
    assert not ctx.is_done()
    summary = ctx.mark_done({"tokens": 10})
    assert is_done(ctx.dir) and read_done(ctx.dir)["tokens"] == 10 and summary["stage"] == "train"
    assert sorted(p.name for p in ctx.dir.iterdir()) == ["DONE", "elapsed.json", "metrics.jsonl"]
    assert json.loads((ctx.dir / "metrics.jsonl").read_text())["loss"] == 2.0


def test_a_resumed_stage_counts_the_wall_time_of_its_killed_processes(tmp_path):
    """Two processes die after logging (each leaves elapsed.json behind), the third finishes: DONE's wall_s is
    the sum of the three, `processes` says 3. A cleared stage (no elapsed.json) starts from zero again."""
    for pretend_s in (100.0, 50.0):
        killed = StageContext(run_dir=tmp_path / "run", name="align")
        killed.begin()
        killed.started -= pretend_s  # as if this process had run pretend_s seconds before its last record
        killed.log_metrics({"step": 1})
    last = StageContext(run_dir=tmp_path / "run", name="align")
    last.begin()
    done = last.mark_done({})
    assert done["processes"] == 3 and 150.0 <= done["wall_s"] < 160.0
    (last.dir / "elapsed.json").unlink()  # what clear_stage does with every file but the request caches
    (last.dir / "DONE").unlink()
    fresh = StageContext(run_dir=tmp_path / "run", name="align")
    fresh.begin()
    assert "processes" not in fresh.mark_done({}) and fresh.elapsed()["wall_s"] < 10.0


def test_cli_help_lists_every_stage():
    out = CliRunner().invoke(app, ["--help"]).output
    for cmd in ("curate", "train", "distill", "align", "eval", "report", "run", "chat", "serve"):
        assert cmd in out


def test_cli_reports_recipe_errors(tmp_path):
    p = write(tmp_path, "name: t\nseed: many\n")
    res = CliRunner().invoke(app, ["run", str(p)])
    assert res.exit_code == 2 and "seed" in res.output


def test_cli_chat_answers_with_a_local_model(tiny_model_dir):
    """The random tiny model's greedy answer is only newlines, so this samples (seeded: the same answer twice). On
    stdout alone: transformers' loading bar on stderr once made an empty answer look like output."""
    args = ["chat", "--model", tiny_model_dir, "--max-new-tokens", "6", "--temperature", "1", "What is a bond?"]
    first, second = CliRunner().invoke(app, args), CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.strip(), "chat printed no answer"
    assert first.stdout == second.stdout


def test_cli_eval_lists_groups_and_where_each_task_runs():
    res = CliRunner().invoke(app, ["eval", "--list"])
    assert res.exit_code == 0 and "fineval-similar" in res.output and "fpb" in res.output
    rows = {line.split()[0]: line for line in res.output.splitlines() if line.strip()}
    assert "local file found" in rows["nq_open"] and "nq_open" in rows["nq_open"].split("(")[-1]
    assert "unavailable" in rows["fiqa_sa"]  # hub-only, not cached here
    assert re.search(r"^\d+ of \d+ tasks runnable here", res.output, re.M)


def test_recipe_base_merges_sections_and_detects_cycles(tmp_path):
    (tmp_path / "parent.yaml").write_text("name: parent\nseed: 3\ntrain:\n  seq_len: 512\n  micro_batch_tokens: 1024\n"
                                          "  tokens_per_step: 2048\n")
    child = write(tmp_path, "base: parent.yaml\nname: child\ntrain:\n  finetune: lora\n")
    r = load_recipe(child)
    assert (r.name, r.seed, r.train.seq_len, r.train.finetune) == ("child", 3, 512, "lora")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")


def test_shipped_recipes_are_valid():
    from pathlib import Path

    recipes = sorted((Path(__file__).parents[1] / "recipes").rglob("*.yaml"))
    assert len(recipes) >= 8
    for path in recipes:
        load_recipe(path)
    paper = load_recipe(Path(__file__).parents[1] / "recipes" / "llama-fin.yaml")
    assert paper.train.seq_len == 8000 and paper.train.tokens_per_step == 128000
    assert [(g.lr, g.warmup) for g in paper.train.groups] == [(5e-6, 0.1), (5e-6, 0.5)]
    assert (paper.train.weight_decay, tuple(paper.train.betas)) == (0.1, (0.9, 0.95))
    assert (paper.align.lr, paper.align.warmup, paper.align.tokens_per_step, paper.align.alpha) == (5e-7, 0.1, 32768, 1.0)
    assert (paper.curate.mixture.cpt_share, paper.curate.mixture.cpt_domain_share,
            paper.curate.mixture.it_domain_share) == (0.5, 0.5, 0.2)
