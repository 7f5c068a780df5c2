"""The one data-path rule (findap.data_root): curate, distill and eval read their datasets under the same root,
taken from the recipe's `data_root` (relative to the recipe file), else FINDAP_DATA, else the default.

Each test builds a data root of links to the real shared datasets (read by path, never copied) somewhere the
default would not find, runs from an unrelated folder, and checks what each stage's own code resolves and reads.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from findap.curate.sources import CONVERTERS, load_source, resolve_location
from findap.curate.config import CurateConfig, SourceConfig
from findap.data_root import ENV, data_root
from findap.eval.stage import load_task_data
from findap.freshness import input_fingerprints
from findap.pipeline import preflight
from findap.recipe import RecipeError, load_recipe

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("fpb", "gsm8k", "cfa")


def linked_root(folder: Path, shared_data: Path) -> Path:
    folder.mkdir(parents=True)
    for name in DATASETS:
        (folder / name).symlink_to(shared_data / name, target_is_directory=True)
    return folder


def write_recipe(path: Path, **top) -> Path:
    # finance IT only: the pool's own finance share (the default share asks for general IT the group has none of)
    recipe = {"name": "paths", "curate": {"sources": [{"name": "fpb"}], "groups": [{"name": "g", "sources": ["fpb"]}],
                                          "mixture": {"it_domain_share": None}},
              "distill": {"sources": [{"kind": "gsm8k", "path": "gsm8k/train.jsonl", "limit": 2}]},
              "eval": {"tasks": ["fpb"]}, **top}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe))
    return path


def stage_paths(recipe) -> dict[str, Path]:
    """What each stage resolves its dataset paths to, through the stages' own functions."""
    fpb = recipe.curate.sources[0]
    distill = input_fingerprints(recipe, "distill")
    return {"curate": Path(resolve_location(fpb, CONVERTERS[fpb.converter_name], recipe.data_dir.path)),
            "distill_fingerprinted": bool(distill.get("data distill.sources[gsm8k]")),
            "eval": Path(load_task_data(["fpb"], role="unseen", limit=2, root=recipe.data_dir.path)[0].root)}


def test_a_recipe_data_root_is_relative_to_the_recipe_file(tmp_path, shared_data, monkeypatch):
    project = tmp_path / "project"
    root = linked_root(project / "datasets", shared_data)
    recipe_file = write_recipe(project / "recipes" / "fin.yaml", data_root="../datasets")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv(ENV, str(tmp_path / "not_this_one"))  # the recipe's own root wins over the environment

    recipe = load_recipe(recipe_file)
    assert recipe.data_dir.path == root.resolve() and recipe.data_dir.origin == "recipe data_root"
    paths = stage_paths(recipe)
    assert paths["curate"] == root.resolve() / "fpb" / "Sentences_50Agree.train.txt"
    assert paths["distill_fingerprinted"]  # the file exists under the root: its content is an input of distill
    assert paths["eval"] == root.resolve()
    preflight(recipe, ["curate", "distill", "eval"])  # every input found: no PreflightError


def test_findap_data_is_the_root_of_every_stage_and_of_eval_without_a_recipe(tmp_path, shared_data, monkeypatch):
    root = linked_root(tmp_path / "somewhere" / "data", shared_data)
    monkeypatch.setenv(ENV, str(root))
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(write_recipe(tmp_path / "r" / "fin.yaml"))
    assert recipe.data_dir.origin == ENV
    paths = stage_paths(recipe)
    assert paths["curate"].parent.parent == root.resolve() and paths["eval"] == root.resolve()
    # `findap eval` without a recipe: the same root
    [task] = load_task_data(["fpb"], role="unseen", limit=3)
    assert Path(task.root) == root.resolve() and len(task.docs("unseen", 3)) == 3
    # curate's library entry (CurateConfig without data_root) follows the same rule
    rows, report = load_source(SourceConfig(name="fpb", limit=3), CurateConfig())
    assert Path(report.location).is_relative_to(root.resolve()) and len(rows) == 3


def test_a_base_recipe_keeps_its_own_folder_and_set_is_relative_to_the_current_folder(tmp_path, shared_data,
                                                                                        monkeypatch):
    base_root = linked_root(tmp_path / "a" / "data", shared_data)
    write_recipe(tmp_path / "a" / "base.yaml", data_root="data")
    derived = tmp_path / "b" / "derived.yaml"
    derived.parent.mkdir()
    derived.write_text("base: ../a/base.yaml\nname: derived\n")
    monkeypatch.chdir(tmp_path / "b")
    assert load_recipe(derived).data_dir.path == base_root.resolve()
    other = linked_root(tmp_path / "b" / "mine", shared_data)
    assert load_recipe(derived, ["data_root=mine"]).data_dir.path == other.resolve()


def test_the_stage_processes_get_an_absolute_root(tmp_path, shared_data, monkeypatch):
    # stages run in spawned processes from the recipe's JSON: a relative root there would depend on their folder
    linked_root(tmp_path / "data", shared_data)
    recipe = load_recipe(write_recipe(tmp_path / "fin.yaml", data_root="data"))
    assert Path(recipe.model_dump(mode="json")["data_root"]).is_absolute()


def test_the_old_curate_data_root_is_refused_with_the_new_spelling(tmp_path):
    recipe_file = write_recipe(tmp_path / "old.yaml")
    data = yaml.safe_load(recipe_file.read_text())
    data["curate"]["data_root"] = "../shared/data"
    recipe_file.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError, match="top of the recipe"):
        load_recipe(recipe_file)


def test_the_default_root_is_the_shared_data_beside_the_checkout(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    root = data_root(None)
    assert root.path == REPO.parent / "shared" / "data" and root.problem() is None
    assert data_root("/no/such/folder").problem().startswith("data root /no/such/folder (recipe data_root) does not")
