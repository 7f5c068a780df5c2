"""The curate recipe section: defaults describe the paper's mixtures; bad recipes fail with the field named."""
from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from findap.curate.config import CurateConfig
from findap.recipe import RecipeError, load_recipe


def test_defaults_are_the_paper_recipe():
    cfg = CurateConfig()
    assert (cfg.mixture.cpt_domain_share, cfg.mixture.it_domain_share, cfg.mixture.cpt_share) == (0.5, 0.2, 0.5)
    assert cfg.group_sources("group2") == cfg.group_sources("group1") + ["cfa"]
    assert "cfa" not in cfg.group_sources("group1")


@pytest.mark.parametrize("data, message", [
    ({"sources": [{"name": "fpb"}, {"name": "fpb"}], "groups": []}, "duplicate source names"),
    ({"sources": [{"name": "fpb"}], "groups": [{"name": "g", "sources": ["fomc"]}]}, "unknown sources"),
    ({"sources": [{"name": "fpb"}], "groups": [{"name": "g", "extends": "g0", "sources": []}]}, "not an earlier"),
    ({"judge": {"threshold": 7}}, "less than or equal to 5"),
    ({"mixture": {"colour": 1}}, "Extra inputs"),
])
def test_invalid_sections_are_rejected(data, message):
    with pytest.raises(ValidationError, match=message):
        CurateConfig.model_validate(data)


def test_recipe_yaml_error_names_the_field(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\ncurate:\n  mixture:\n    it_domain_share: 1.5\n")
    with pytest.raises(RecipeError, match="it_domain_share"):
        load_recipe(path)
    path.write_text("name: x\ncurate:\n  limit_per_source: 10\n")
    assert load_recipe(path, ["curate.judge.sample_size=8"]).curate.judge.sample_size == 8


def _recipe(tmp_path, text: str):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return load_recipe(path)


def test_eval_holdout_below_the_fineval_carve_is_rejected_at_load(tmp_path):
    """FinEval's hash-carved tasks score dev 0.1 + unseen 0.2 of FPB, FOMC, ...: a holdout of 0.1 would train on
    the rows scored as unseen, so the recipe fails to load, naming the field, its value, the tasks and the fix."""
    with pytest.raises(RecipeError) as err:
        _recipe(tmp_path, "name: x\ncurate:\n  eval_holdout: 0.1\n")
    message = str(err.value)
    assert "curate.eval_holdout is 0.1" in message and "curate.eval_holdout: 0.3" in message
    for task in ("fpb (dataset fpb", "ner (dataset finer", "flare_german (dataset credit", "tatqa", "cfa_easy",
                 "gsm8k", "fomc"):
        assert task in message
    assert _recipe(tmp_path, "name: x\ncurate:\n  eval_holdout: 0.3\n").curate.eval_holdout == 0.3
    assert _recipe(tmp_path, "name: x\ncurate:\n  eval_holdout: 0.4\n").curate.eval_holdout == 0.4  # reserves more


DEMO_ONLY = """name: x
curate:
  eval_holdout: 0.1
  mixture: {it_domain_share: null}
  sources: [{name: demo_sentiment, path: "demo:sentiment"}]
  groups: [{name: group1, sources: [demo_sentiment]}]
distill: {sources: [{kind: exercises}]}
eval: {tasks: [demo_sentiment]}
"""


def test_eval_holdout_is_checked_against_what_the_recipe_uses(tmp_path):
    """Only tasks whose datasets the recipe curates, distills from or scores count: a recipe on the demo data
    alone may set any holdout, one that scores FPB or distills GSM8K prompts may not go below their carve."""
    assert _recipe(tmp_path, DEMO_ONLY).curate.eval_holdout == 0.1
    with pytest.raises(RecipeError, match=r"fpb \(dataset fpb: carve dev 0.1 \+ unseen 0.2 = 0.3\)") as err:
        _recipe(tmp_path, DEMO_ONLY.replace("tasks: [demo_sentiment]", "tasks: [demo_sentiment, fpb]"))
    assert "gsm8k" not in str(err.value)
    with pytest.raises(RecipeError, match=r"gsm8k \(dataset gsm8k") as err:
        _recipe(tmp_path, DEMO_ONLY.replace("kind: exercises", "kind: gsm8k, path: train.jsonl"))
    assert "fpb" not in str(err.value)


def test_a_task_carving_more_than_the_holdout_is_named(tmp_path):
    """The carve is read from the task YAML, not assumed: an FPB task scoring dev 0.2 + unseen 0.3 needs a holdout
    of 0.5, even with the default 0.3."""
    from findap.eval.registry import TASKS_DIR

    wide = yaml.safe_load((TASKS_DIR / "fpb.yaml").read_text())
    wide["name"] = "fpb_wide"
    wide["carve"].update(train=0.5, dev=0.2, unseen=0.3)
    task_path = tmp_path / "fpb_wide.yaml"
    task_path.write_text(yaml.safe_dump(wide))
    recipe = DEMO_ONLY.replace("eval_holdout: 0.1", "eval_holdout: 0.3").replace(
        "tasks: [demo_sentiment]", f"tasks: [fpb, {task_path}]")
    with pytest.raises(RecipeError, match=r"fpb_wide \(dataset fpb: .* = 0.5\).*curate.eval_holdout: 0.5") as err:
        _recipe(tmp_path, recipe)
    assert "fpb (dataset" not in str(err.value)


def test_curate_checks_the_holdout_before_reading_any_source(shared_data, tmp_path):
    from findap.curate.curation import curate

    cfg = CurateConfig(data_root=str(shared_data), eval_holdout=0.2)
    with pytest.raises(ValueError, match="curate.eval_holdout is 0.2.*fpb"):
        curate(cfg, tmp_path / "out", model="unused-model")
    assert not (tmp_path / "out").exists()


def test_a_share_the_group_cannot_meet_is_refused_before_curation(tmp_path):
    """A finance IT share below 1 for a group whose IT sources are all finance leaves no mix that keeps the
    share but the empty one: the recipe is refused when it loads (naming the field, the group and the fixes), not
    after a curation that writes an empty group. The pool's own share (null) or a share of 1 takes it as it is."""
    finance_only = DEMO_ONLY.replace("  mixture: {it_domain_share: null}\n", "  mixture: {it_domain_share: 0.6}\n")
    with pytest.raises(RecipeError, match=r"curate.mixture.it_domain_share is 0.6, but every IT source of group "
                                          r"group1 is finance.*set it to 1 \(or null.*add a general IT source"):
        _recipe(tmp_path, finance_only)
    for share in ("1", "null"):
        _recipe(tmp_path, finance_only.replace("it_domain_share: 0.6", f"it_domain_share: {share}"))
    general_only = finance_only.replace('sources: [{name: demo_sentiment, path: "demo:sentiment"}]',
                                        'sources: [{name: demo_sentiment, path: "demo:sentiment", domain: general}]')
    with pytest.raises(RecipeError, match=r"every IT source of group group1 is general.*set it to 0"):
        _recipe(tmp_path, general_only)
