"""The curate recipe section: defaults describe the paper's mixtures; bad recipes fail with the field named."""
from __future__ import annotations

import pytest
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
