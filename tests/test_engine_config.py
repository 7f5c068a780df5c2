"""One engine configuration (findap.engines.config): every recipe section that generates holds an EngineConfig, the
engine flags of `findap eval`, `chat` and `serve` (and `python -m findap.engines.server`) are made from its fields,
and the old flat spellings in a recipe fail with one line naming the new one."""
import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from findap.cli import app
from findap.curate.config import CurateJudgeEngine, JudgeConfig
from findap.distill.config import DistillConfig
from findap.engines import server
from findap.engines.config import EngineConfig, EngineSpec
from findap.engines.options import CHAT_FLAGS, SERVE_FLAGS
from findap.eval.config import EVAL_ENGINE_FLAGS, EVAL_JUDGE_FLAGS, EvalConfig, EvalJudgeConfig, EvalJudgeEngine
from findap.recipe import Recipe, RecipeError, load_recipe

COMMAND_FLAGS = {"eval": {**EVAL_ENGINE_FLAGS, **EVAL_JUDGE_FLAGS}, "chat": CHAT_FLAGS, "serve": SERVE_FLAGS}
ENGINE_FIELDS = set(EngineConfig.model_fields)


def command(name):
    return get_command(app).commands[name]


def recipe_default(param: str, field: str):
    """The value a recipe gets when it leaves the field out: eval.engine's, or a configured judge's."""
    if param.startswith("judge_"):
        judge = EvalJudgeConfig(engine={"model": "any", "base_url": "http://x/v1"}).engine
        return judge.model_dump()[field] if field not in ("model", "base_url") else None
    return Recipe(name="t").eval.engine.model_dump()[field]


@pytest.mark.parametrize("name", sorted(COMMAND_FLAGS))
def test_every_cli_engine_default_is_the_config_default(name):
    params = {p.name: p for p in command(name).params}
    table = COMMAND_FLAGS[name]
    for param, flag in table.items():
        info = flag.config.model_fields[flag.name]
        assert params[param].default == (None if info.is_required() else info.default), f"{name} --{param}"
        assert flag.flag in params[param].opts
    # no engine flag of these commands is declared by hand, outside the tables
    # (--model is the command's own: eval's models to score, chat's and serve's model to load)
    by_hand = {p for p in params if p not in table and p != "model"
               and (p.removeprefix("judge_") in ENGINE_FIELDS or p in ("engine", "judge_engine", "judge_key_env"))}
    assert by_hand == set()


def test_eval_flags_default_to_what_a_recipe_gets():
    params = {p.name: p for p in command("eval").params}
    for param, flag in {**EVAL_ENGINE_FLAGS, **EVAL_JUDGE_FLAGS}.items():
        assert params[param].default == recipe_default(param, flag.name), param
    # the tables name the very classes the recipe sections hold
    assert EvalConfig.model_fields["engine"].annotation is EngineConfig
    assert EvalJudgeConfig.model_fields["engine"].annotation is EvalJudgeEngine


def test_server_module_flags_default_to_the_config(monkeypatch):
    built = []
    monkeypatch.setattr(server, "serve", lambda spec, host, port, name: built.append((spec, host, port, name)))
    server.main(["--model", "m"])
    res = CliRunner().invoke(app, ["serve"])  # the same defaults through `findap serve`
    assert res.exit_code == 0, res.output
    (module_spec, *address), (cli_spec, *_) = built
    assert module_spec == EngineConfig(kind="hf").resolve(model="m") and address == ["127.0.0.1", 8000, None]
    assert cli_spec == EngineConfig(kind="hf").resolve(model="smollm2-135m-instruct")
    server.main(["--model", "m", "--batch-size", "3", "--max-batch-tokens", "none", "--precision", "fp32"])
    assert (built[-1][0].batch_size, built[-1][0].max_batch_tokens, built[-1][0].precision) == (3, None, "fp32")


@pytest.mark.parametrize("args, flag", [
    (["serve", "--precision", "fp8"], "--precision"),
    (["chat", "hi", "--precision", "fp8"], "--precision"),
    (["eval", "--model", "smollm2-135m-instruct", "--precision", "fp8"], "--precision"),
])
def test_a_value_the_config_refuses_is_a_usage_error_naming_the_flag(args, flag):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and flag in res.output and "fp8" in res.output, res.output


def test_chat_builds_its_engine_from_the_config(monkeypatch):
    import findap.engines

    built = []

    class Answering:
        def generate(self, requests, progress=True):
            return ["an answer"] * len(requests)

    monkeypatch.setattr(findap.engines, "make_engine", lambda spec: built.append(spec) or Answering())
    res = CliRunner().invoke(app, ["chat", "hi", "--device", "cpu", "--max-length", "512"])
    assert res.exit_code == 0 and "an answer" in res.output, res.output
    assert built == [EngineConfig(kind="hf", batch_size=1, device="cpu", max_length=512)
                     .resolve(model="smollm2-135m-instruct")]


# ---- the sections -------------------------------------------------------------------------------------------------
def test_sections_hold_the_engine_with_their_defaults():
    recipe = Recipe(name="t")
    judge = recipe.curate.judge.engine
    assert isinstance(judge, CurateJudgeEngine) and isinstance(judge, EngineConfig)
    assert (judge.kind, judge.batch_size, judge.concurrency, judge.max_batch_tokens) == ("hf", 8, 16, 16384)
    assert recipe.eval.engine == recipe.distill.policy == EngineConfig()  # the plain defaults
    assert (EngineConfig().batch_size, EngineConfig().concurrency, EngineConfig().max_length) == (16, 4, 2048)
    eval_judge = EvalJudgeConfig(engine={"model": "gpt-4o", "base_url": "https://api.openai.com/v1"})
    assert (eval_judge.engine.kind, eval_judge.max_new_tokens) == ("openai", 1024)
    with pytest.raises(ValueError, match="batch_size"):  # a variant keeps the field's bounds
        JudgeConfig(engine={"batch_size": 0})
    with pytest.raises(ValueError, match="model"):  # the eval judge needs a model, and not None
        EvalJudgeConfig(engine={"model": None})


def test_resolve_takes_what_the_config_leaves_to_its_section():
    config = DistillConfig(policy={"batch_size": 4}).policy
    spec = config.resolve(model="trained", device="cpu", precision="fp32", cache_path="c.sqlite")
    assert (spec.model, spec.device, spec.precision, spec.cache_path, spec.batch_size) == (
        "trained", "cpu", "fp32", "c.sqlite", 4)
    own = EngineConfig(model="judge", device="cuda:1", precision="bf16", cache_path="mine.sqlite")
    spec = own.resolve(model="trained", device="cpu", precision="fp32", cache_path="c.sqlite")
    assert (spec.model, spec.device, spec.precision, spec.cache_path) == ("judge", "cuda:1", "bf16", "mine.sqlite")


def test_a_declared_setting_is_not_an_extra_option():
    with pytest.raises(ValueError, match="concurrency: an engine setting"):
        EngineSpec(kind="openai", base_url="http://x/v1", extra={"concurrency": 8})
    assert EngineSpec(kind="openai", base_url="http://x/v1", concurrency=8, extra={"max_retries": 1}).concurrency == 8


def test_an_openai_engine_needs_its_endpoint_when_configured(tmp_path):
    with pytest.raises(RecipeError, match="eval.judge.engine.base_url: the openai engine needs its endpoint"):
        load(tmp_path, {"eval": {"judge": {"engine": {"model": "gpt-4o"}}}})  # the judge's default kind is openai
    res = CliRunner().invoke(app, ["eval", "--model", "smollm2-135m-instruct", "--tasks", "fpb", "--judge-model",
                                   "gpt-4o", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "--judge-base-url: the openai engine needs its endpoint" in res.output, res.output
    assert not list(tmp_path.rglob("*.json"))  # refused before anything was evaluated


def test_the_eval_engine_takes_no_model():
    with pytest.raises(ValueError, match="eval.models.LABEL=x"):
        EvalConfig(engine={"model": "x"})


# ---- the old spellings ----------------------------------------------------------------------------------------------
def load(tmp_path, body: dict, overrides=()):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "r", **body}))
    return load_recipe(path, overrides)


@pytest.mark.parametrize("body, where, says", [
    ({"curate": {"judge": {"engine": "openai", "model": "gpt"}}}, "curate.judge:",
     "engine as engine.kind, model as engine.model"),
    ({"curate": {"judge": {"batch_size": 4, "concurrency": 8}}}, "curate.judge:",
     "batch_size as engine.batch_size, concurrency as engine.concurrency"),
    ({"eval": {"engine": "vllm", "max_length": 512}}, "eval:", "engine as engine.kind, max_length as engine.max_length"),
    ({"eval": {"judge": {"model": "gpt-4o", "base_url": "http://x/v1"}}}, "eval.judge:",
     "model as engine.model, base_url as engine.base_url"),
    ({"distill": {"policy": "hf"}}, "distill.policy:", "write {kind: hf}"),
])
def test_an_old_flat_key_fails_with_one_line_naming_the_new_spelling(tmp_path, body, where, says):
    with pytest.raises(RecipeError) as err:
        load(tmp_path, body)
    lines = str(err.value).splitlines()
    assert "(1 problem)" in lines[0] and len(lines) == 2
    assert lines[1].strip().startswith(where) and all(part in lines[1] for part in says.split(", "))


@pytest.mark.parametrize("override, now", [
    ("eval.batch_size=3", "eval.engine.batch_size"),
    ("eval.judge.model=gpt-4o", "eval.judge.engine.model"),
    ("curate.judge.base_url=http://x/v1", "curate.judge.engine.base_url"),
])
def test_an_old_override_path_names_the_new_one(tmp_path, override, now):
    with pytest.raises(RecipeError, match=f"it is {now} now"):
        load(tmp_path, {}, [override])


def test_the_new_spelling_reaches_the_sections(tmp_path):
    judge = {"kind": "openai", "model": "judge", "base_url": "http://127.0.0.1:8000/v1", "concurrency": 32}
    recipe = load(tmp_path, {"curate": {"judge": {"engine": judge}},
                             "distill": {"judge": {"model": "big", "precision": "bf16"}}},
                  ["eval.engine.batch_size=3", "eval.judge.engine.model=gpt-4o",
                   "eval.judge.engine.base_url=https://api.openai.com/v1"])
    assert (recipe.curate.judge.engine.kind, recipe.curate.judge.engine.concurrency) == ("openai", 32)
    assert recipe.curate.judge.engine.batch_size == 8  # the rest keep the section's defaults
    assert (recipe.distill.judge.model, recipe.distill.judge.precision) == ("big", "bf16")
    assert (recipe.eval.engine.batch_size, recipe.eval.judge.engine.kind) == (3, "openai")
