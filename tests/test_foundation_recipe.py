"""Recipes: validation errors name the field path, the value and what is allowed; overrides; run dirs."""
import json

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


def test_done_marker_is_atomic_and_last(tmp_path):
    ctx = StageContext(run_dir=tmp_path / "run", name="train")
    ctx.log_metrics({"step": 1, "loss": 2.0})
    assert not ctx.is_done()
    summary = ctx.mark_done({"tokens": 10})
    assert is_done(ctx.dir) and read_done(ctx.dir)["tokens"] == 10 and summary["stage"] == "train"
    assert sorted(p.name for p in ctx.dir.iterdir()) == ["DONE", "metrics.jsonl"]
    assert json.loads((ctx.dir / "metrics.jsonl").read_text())["loss"] == 2.0


def test_cli_help_lists_every_stage():
    out = CliRunner().invoke(app, ["--help"]).output
    for cmd in ("curate", "train", "distill", "align", "eval", "report", "run", "chat", "serve"):
        assert cmd in out


def test_cli_reports_recipe_errors(tmp_path):
    p = write(tmp_path, "name: t\nseed: many\n")
    res = CliRunner().invoke(app, ["run", str(p)])
    assert res.exit_code == 2 and "seed" in res.output


def test_cli_chat_answers_with_a_local_model(tiny_model_dir):
    res = CliRunner().invoke(app, ["chat", "--model", tiny_model_dir, "--max-new-tokens", "6", "What is a bond?"])
    assert res.exit_code == 0, res.output
    assert res.output.strip(), "chat printed no answer"


def test_cli_eval_lists_groups():
    res = CliRunner().invoke(app, ["eval", "--list"])
    assert res.exit_code == 0 and "fineval-similar" in res.output and "fpb" in res.output


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
    assert (paper.align.lr, paper.align.warmup, paper.align.batch_tokens, paper.align.alpha) == (5e-7, 0.1, 32768, 1.0)
    assert (paper.curate.mixture.cpt_share, paper.curate.mixture.cpt_domain_share,
            paper.curate.mixture.it_domain_share) == (0.5, 0.5, 0.2)
