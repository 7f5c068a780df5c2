"""Two formats per task: the generative chat prompts (direct, cot) and the plain log-likelihood form (loglik mode),
on a real tiny Llama (real SmolLM2 tokenizer) through the hf engine. The loglik form scores the same items against
the same gold labels with the same metrics, from plain text with no chat template, into its own result file; its
predictions are checked against log-likelihoods computed here directly with transformers."""
from __future__ import annotations

import json

import pytest

from findap.eval.metrics import score
from findap.eval.registry import get_task
from findap.eval.runner import evaluate, evaluate_task
from helpers.eval_setup import short_task, tiny_engine

LIMIT = 6
CHAT_MARKERS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


@pytest.fixture(scope="module")
def formats_run(tiny_model_dir, shared_data, tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("formats")
    engine = tiny_engine(tiny_model_dir, out / "cache.sqlite")
    fpb, cfa = short_task("fpb", shared_data, max_new_tokens=8), get_task("cfa_easy", root=shared_data)
    direct = evaluate(engine, [fpb, cfa], mode="direct", limit=LIMIT, out_dir=out / "run", progress=False)
    calls = engine.model_calls
    loglik = evaluate(engine, [fpb, cfa], mode="loglik", limit=LIMIT, out_dir=out / "run", progress=False)
    return {"out": out / "run", "cache": out / "cache.sqlite", "engine": engine, "direct": direct, "loglik": loglik,
            "fpb": fpb, "cfa": cfa, "calls_before_loglik": calls}


def _read(folder, name):
    return json.loads((folder / name).read_text())


def test_loglik_scores_fpb_on_the_generative_items_and_gold(formats_run):
    gen = _read(formats_run["out"], "fpb.direct.json")
    ll = _read(formats_run["out"], "fpb.loglik.json")
    assert ll["mode"] == "loglik" and ll["n"] == gen["n"] == LIMIT
    assert [s["id"] for s in ll["samples"]] == [s["id"] for s in gen["samples"]]
    assert [s["gold"] for s in ll["samples"]] == [s["gold"] for s in gen["samples"]]
    labels = formats_run["fpb"].spec.labels
    for s in ll["samples"]:
        assert s["prediction"] in labels and s["prediction_norm"] in labels
        assert s["labels"] == labels and len(s["logprobs"]) == len(labels)
        assert all(lp < 0 for lp in s["logprobs"])
        assert s["prediction"] == labels[max(range(len(labels)), key=s["logprobs"].__getitem__)]
        assert s["prediction_norm"] == labels[max(range(len(labels)),
                                                  key=lambda k: s["logprobs"][k] / len(labels[k]))]


def test_loglik_predictions_are_scored_as_generated_answers_are(formats_run):
    """Same metric list and the same scoring function, fed the picked labels; acc_norm comes on top."""
    spec = formats_run["fpb"].spec
    gen = _read(formats_run["out"], "fpb.direct.json")
    ll = _read(formats_run["out"], "fpb.loglik.json")
    docs = [{"gold": s["gold"]} for s in ll["samples"]]
    as_generated = score([s["prediction"] for s in ll["samples"]], docs, spec, "direct")
    assert {k: v for k, v in ll["scores"].items() if k != "acc_norm"} == pytest.approx(as_generated)
    assert set(ll["scores"]) == set(gen["scores"]) | {"acc_norm"}
    assert {"acc", "f1_weighted", "f1_macro", "mcc", "missing"} <= set(ll["scores"])
    assert ll["scores"]["missing"] == 0.0  # a ranked label is always an answer
    hits = [s["prediction_norm"] == s["gold"] for s in ll["samples"]]
    assert ll["scores"]["acc_norm"] == pytest.approx(sum(hits) / LIMIT)
    assert set(ll["uncertainty"]) >= {"acc", "acc_norm", "f1_weighted"}
    assert ll["uncertainty"]["acc"]["n"] == LIMIT


def test_loglik_requests_are_plain_text(formats_run, tiny_model_dir):
    from findap.models import load_tokenizer

    gen = _read(formats_run["out"], "fpb.direct.json")
    ll = _read(formats_run["out"], "fpb.loglik.json")
    # the generative prompt goes through the chat template, whose markers the plain form must not carry
    tok = load_tokenizer(tiny_model_dir)
    rendered = tok.apply_chat_template(gen["samples"][0]["prompt"], add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>" in rendered
    for s in ll["samples"]:
        assert isinstance(s["prompt"], str)
        assert not any(marker in s["prompt"] for marker in CHAT_MARKERS)
        assert s["prompt"].endswith("\nAnswer:") and "Sentence: " in s["prompt"]
        assert s["continuations"] == [" positive", " neutral", " negative"]
        doc_text = next(d["text"] for d in formats_run["fpb"].docs(limit=LIMIT) if d["id"] == s["id"])
        assert f"Sentence: {doc_text}\nAnswer:" in s["prompt"]


def test_loglik_result_is_its_own_file_with_settings_and_provenance(formats_run):
    out, engine = formats_run["out"], formats_run["engine"]
    gen = _read(out, "fpb.direct.json")
    ll = _read(out, "fpb.loglik.json")
    assert gen["mode"] == "direct" and gen["settings"]["mode"] == "direct"  # not overwritten by the loglik run
    assert ll["settings"]["mode"] == "loglik" and ll["settings"]["limit"] == LIMIT
    assert ll["settings"]["model_fingerprint"] == gen["settings"]["model_fingerprint"] == engine.fingerprint
    assert ll["settings"]["data_hash"] == gen["settings"]["data_hash"]
    assert ll["provenance"]["model_fingerprint"] == engine.fingerprint
    assert ll["provenance"]["data_hash"] == ll["settings"]["data_hash"] and ll["provenance"]["n"] == LIMIT
    # the loglik-only prompt fields decide only loglik results
    assert "loglik_context" in ll["settings"]["spec"]["prompt"]
    assert "loglik_context" not in gen["settings"]["spec"]["prompt"]
    summary = _read(out, "summary.json")
    assert set(summary["results"]["fpb"]) == {"direct", "loglik"}
    assert summary["results"]["fpb"]["loglik"] == ll["scores"] == formats_run["loglik"]["results"]["fpb"]
    assert summary["n"]["fpb"] == {"direct": LIMIT, "loglik": LIMIT}


def test_the_report_reads_loglik_results_back(formats_run):
    """The report recomputes the headline's item statistics from the stored samples: label predictions."""
    from findap.report.collect import parse_result

    path = formats_run["out"] / "fpb.loglik.json"
    result = parse_result(json.loads(path.read_text()), path)
    assert result.mode == "loglik" and result.stats is not None and result.n == LIMIT
    assert result.stats.scores()[result.metric] == pytest.approx(result.scores[result.metric])


def test_multiple_choice_loglik_is_the_direct_scoring(formats_run):
    """Multiple choice in direct mode is already the plain log-likelihood form: loglik mode asks the same
    requests (all answered by the cache) and gets the same picks."""
    gen = _read(formats_run["out"], "cfa_easy.direct.json")
    ll = _read(formats_run["out"], "cfa_easy.loglik.json")
    assert [s["prompt"] for s in ll["samples"]] == [s["prompt"] for s in gen["samples"]]
    assert [s["prediction"] for s in ll["samples"]] == [s["prediction"] for s in gen["samples"]]
    assert ll["scores"] == gen["scores"] and ll["settings"]["mode"] == "loglik"
    # the fpb label requests were new; no cfa_easy request was
    fresh = tiny_engine(formats_run["engine"].spec.model, formats_run["cache"])
    (formats_run["out"] / "cfa_easy.loglik.json").unlink()
    evaluate(fresh, [formats_run["cfa"]], mode="loglik", limit=LIMIT, out_dir=formats_run["out"], progress=False)
    assert fresh.model_calls == 0
    assert _read(formats_run["out"], "cfa_easy.loglik.json")["scores"] == gen["scores"]


def test_loglik_resumes_and_rescores_from_stored_samples(formats_run):
    out = formats_run["out"]
    fresh = tiny_engine(formats_run["engine"].spec.model, formats_run["cache"])
    path = out / "fpb.loglik.json"
    record = json.loads(path.read_text())
    tampered = {**record, "scores": {**record["scores"], "acc": -1.0, "acc_norm": -1.0}}
    path.write_text(json.dumps(tampered))  # as if written by an older metric: rescored, not re-asked
    again = evaluate(fresh, [formats_run["fpb"]], mode="loglik", limit=LIMIT, out_dir=out, progress=False)
    assert fresh.model_calls == 0
    assert again["results"]["fpb"] == pytest.approx(record["scores"])
    assert json.loads(path.read_text())["scores"] == pytest.approx(record["scores"])
    path.unlink()  # killed before writing: the request cache answers every label
    evaluate(fresh, [formats_run["fpb"]], mode="loglik", limit=LIMIT, out_dir=out, progress=False)
    assert fresh.model_calls == 0
    assert json.loads(path.read_text())["scores"] == pytest.approx(record["scores"])


def test_tasks_without_a_loglik_form_are_skipped_not_failed(formats_run, shared_data):
    from findap.eval.stage import skipped_tasks

    out = formats_run["out"]
    tasks = [get_task(name, root=shared_data) for name in ("ner", "tatqa", "ectsum", "mt_bench")]
    res = evaluate(formats_run["engine"], tasks, mode="loglik", limit=2, out_dir=out, progress=False)
    assert res["results"] == {}
    assert set(res["skipped"]) == set(res["no_form"]) == {"ner", "tatqa", "ectsum", "mt_bench"}
    assert all(why.startswith("no log-likelihood form") for why in res["skipped"].values())
    assert not any((out / f"{t.name}.loglik.json").exists() for t in tasks)
    assert skipped_tasks({"m": {"loglik": res}}) == {}  # by design, so never a reason to fail the stage
    summary = _read(out, "summary.json")
    assert summary["no_form"]["ner"] == {"loglik": res["skipped"]["ner"]}
    assert "ner" not in summary["skipped"]
    assert set(summary["results"]["fpb"]) == {"direct", "loglik"}  # earlier results kept
    with pytest.raises(ValueError, match="no log-likelihood form"):
        evaluate_task(formats_run["engine"], tasks[0], mode="loglik", limit=2, out_dir=out, model_name="m")
    with pytest.raises(ValueError, match="loglik"):
        evaluate(formats_run["engine"], tasks, mode="plain", out_dir=out, progress=False)


def test_prediction_is_the_argmax_of_independently_computed_loglikelihoods(formats_run, tiny_model_dir):
    """Sum of the continuation tokens' log-probabilities from one transformers forward pass per label,
    with no engine code involved."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, torch_dtype=torch.float32).eval()
    ll = _read(formats_run["out"], "fpb.loglik.json")
    labels = formats_run["fpb"].spec.labels
    for s in ll["samples"][:3]:
        mine = []
        for label in labels:
            context_ids = tok(s["prompt"], add_special_tokens=False)["input_ids"]
            whole = tok(s["prompt"] + " " + label, add_special_tokens=False)["input_ids"]
            assert whole[:len(context_ids)] == context_ids
            with torch.no_grad():
                logits = model(torch.tensor([whole])).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            mine.append(sum(float(logprobs[pos - 1, whole[pos]]) for pos in range(len(context_ids), len(whole))))
        assert s["logprobs"] == pytest.approx(mine, abs=1e-3)
        assert s["prediction"] == labels[max(range(len(labels)), key=mine.__getitem__)]


def test_recipe_field_and_evaluate_models_select_the_format(tiny_model_dir, tmp_path, one_torch_thread):
    import pydantic

    from findap.eval import stage
    from findap.eval.config import EvalConfig
    from findap.recipe import Recipe
    from findap.runs import StageContext

    assert EvalConfig().modes == ["direct"]  # today's behaviour unless asked
    with pytest.raises(pydantic.ValidationError):
        EvalConfig(modes=["plain"])
    assert stage.parse_modes("loglik") == ["loglik"]
    assert stage.parse_modes("direct,loglik") == ["direct", "loglik"]
    assert stage.parse_modes("both") == ["direct", "cot"]
    assert stage.parse_modes("all") == ["direct", "cot", "loglik"]
    assert stage.parse_modes(["loglik", "direct", "loglik"]) == ["loglik", "direct"]
    with pytest.raises(ValueError, match="direct,loglik"):
        stage.parse_modes("direct,plain")

    # a recipe asking for the loglik form on a task set with NER: the stage succeeds without allow_skips
    recipe = Recipe(name="t", model=tiny_model_dir, runs_dir=str(tmp_path), device="cpu", precision="fp32",
                    eval=EvalConfig(tasks=["fpb", "ner"], modes=["loglik"], limit=3, engine={"batch_size": 4}))
    ctx = StageContext(run_dir=recipe.run_dir, name="eval", inputs={"models": {"base": tiny_model_dir}})
    summary = stage.run(recipe, ctx)
    assert set(summary["results"]["base"]["loglik"]) == {"fpb"} and summary["skipped_tasks"] == {}
    rec = json.loads((ctx.dir / "base" / "fpb.loglik.json").read_text())
    assert rec["n"] == 3 and rec["settings"]["mode"] == "loglik" and "provenance" in rec
    assert not (ctx.dir / "base" / "fpb.direct.json").exists()

    # findap eval --model ... --mode direct,loglik
    res = stage.evaluate_models([tiny_model_dir], tasks=["fpb"], mode="direct,loglik", limit=2,
                                out_dir=tmp_path / "cli", device="cpu", precision="fp32")
    (label, by_mode), = res.items()
    assert set(by_mode) == {"direct", "loglik"}
    folder = tmp_path / "cli" / label.replace("/", "--")
    assert (folder / "fpb.direct.json").exists() and (folder / "fpb.loglik.json").exists()
