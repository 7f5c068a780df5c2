"""Checkpoint selection on FinEval dev tasks during stage 1 (train.select_on / fineval_tasks)."""
import json

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

import findap.train.loop as loop
from findap.io import write_parquet
from findap.train.attention import hf_implementation
from findap.train.config import TrainConfig
from findap.train.loop import Phase, train_phase
from helpers.sample_data import ectsum_texts, fpb_conversations
from findap.train.select import FinEvalScorer, resume_selection
from findap.training.parallel import Replicated, SingleProcess
from helpers.crash import Crash, crashing_after

TASKS = ["cfa_easy", "mmlu_finance"]  # cheap multiple-choice finance tasks with local dev splits
TINY = dict(seq_len=64, micro_batch_tokens=128, tokens_per_step=128, progress=False, tensorboard=False)


@pytest.fixture(scope="module")
def data(one_torch_thread, tiny_train_set):
    global fresh_model  # the tests below call fresh_model() for a copy of the module's tiny model
    fresh_model, tok, docs = tiny_train_set
    return tok, docs


class Scripted(FinEvalScorer):
    """A real scorer (task checks, due(), rank handling) whose scores come from a script; it snapshots the
    weights it scored so tests can check which ones were kept as best."""

    def __init__(self, tok, means, every=1):
        super().__init__(["cfa_easy"], tok, limit=2, every=every)
        self.means, self.calls, self.snapshots = iter(means), [], {}

    def _score(self, model, out_dir, parallel=None):
        mean = next(self.means)
        self.calls.append(out_dir.name)
        self.snapshots[out_dir.name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {"fineval_cfa_easy": mean, "fineval_mean": mean}


def scripted_dev_loss(monkeypatch, losses):
    it = iter(losses)
    monkeypatch.setattr(loop, "dev_loss", lambda *a, **k: {"dev_loss": next(it)})


def run_phase(data, tmp, cfg, scorer, max_steps=None, **kw):
    tok, docs = data
    phase = Phase(name="p", train_docs=docs, dev_docs=docs[:2], lr=1e-3, warmup=0.0, max_steps=max_steps,
                  out_dir=tmp)
    return train_phase(fresh_model(), phase, cfg, backend="varlen", device="cpu", precision="fp32",
                       pad_id=tok.pad_token_id, fineval=scorer, **kw)


def first_argmax(history, key="fineval_mean"):
    scored = [h for h in history if key in h]
    return max(scored, key=lambda h: (h[key], -h["step"]))["step"]


# ---- (a) the logged scores are what `findap eval` gives for the saved model ----------------------------------
def full_rows(rows):
    return [{"text": None, "messages": None, **r} for r in rows]


def test_logged_fineval_equals_findap_eval_of_selected_model(tiny_model_dir, shared_data, tmp_path, one_torch_thread):
    from findap.eval.stage import evaluate_models
    from findap.train.stage import train_model

    write_parquet(tmp_path / "train.parquet", full_rows(fpb_conversations(24) + ectsum_texts(1)))
    write_parquet(tmp_path / "dev.parquet", full_rows(fpb_conversations(2, offset=900)))
    cfg = TrainConfig(**{**TINY, "seq_len": 128, "micro_batch_tokens": 256, "tokens_per_step": 256},
                      eval_every=1, patience=10, select_on="fineval", fineval_tasks=TASKS, fineval_limit=6,
                      groups=[{"name": "g", "lr": 3e-3, "warmup": 0.0, "max_steps": 4,
                               "train": [str(tmp_path / "train.parquet")], "dev": [str(tmp_path / "dev.parquet")]}])
    records = []
    summary = train_model(tiny_model_dir, cfg, tmp_path / "train", device="cpu", precision="fp32",
                          log=records.append)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:  # every evaluation logs the dev loss and each task's score
        assert {"dev_loss", "fineval_cfa_easy", "fineval_mmlu_finance", "fineval_mean"} <= set(r)
        assert r["fineval_mean"] == pytest.approx((r["fineval_cfa_easy"] + r["fineval_mmlu_finance"]) / 2)
    # (b) on a real run: the selected step is the first argmax of the logged mean, and DONE says so
    done = summary["phases"]["g"]
    best = first_argmax(records)
    assert done["best_step"] == best and done["select_on"] == "fineval" and summary["select_on"] == "fineval"
    best_record = records[best - 1]
    assert done["best_score"] == best_record["fineval_mean"] == summary["best_score"]
    assert done["best_dev_loss"] == pytest.approx(best_record["dev_loss"], abs=1e-6)

    # the independent path: `findap eval --split dev --limit 6` on the exported (selected) model
    results = evaluate_models([summary["model_dir"]], tasks=TASKS, limit=6, role="dev", device="cpu",
                              precision="fp32", out_dir=tmp_path / "eval")
    [(_, by_mode)] = results.items()
    for task in TASKS:
        assert by_mode["direct"]["results"][task]["acc"] == best_record[f"fineval_{task}"], task
        # not only the accuracies: every option's log-likelihood is the one computed during training
        during = json.loads((tmp_path / "train/groups/g/fineval" / f"step-{best:06d}" / f"{task}.direct.json")
                            .read_text())
        [after_path] = (tmp_path / "eval").glob(f"*/{task}.direct.json")
        after = json.loads(after_path.read_text())
        assert during["settings"]["role"] == "dev" and during["n"] == 6
        assert [s["id"] for s in during["samples"]] == [s["id"] for s in after["samples"]]
        for a, b in zip(during["samples"], after["samples"]):
            assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-4), a["id"]


# ---- (b) selection bookkeeping -----------------------------------------------------------------------------
def test_fineval_and_dev_loss_select_different_steps(data, tmp_path, monkeypatch):
    """Dev loss falls every step (it would pick step 4); fineval_mean 0.2, 0.5, 0.5, 0.3 picks step 2 (the tie at
    step 3 keeps the earlier one) and patience 2 stops after step 4."""
    tok, _ = data
    losses, means = [3.0, 2.8, 2.6, 2.4, 2.2], [0.2, 0.5, 0.5, 0.3, 0.9]
    cfg = TrainConfig(**TINY, eval_every=1, patience=2, select_on="fineval", fineval_tasks=["cfa_easy"])
    scripted_dev_loss(monkeypatch, losses)
    scorer = Scripted(tok, means)
    res = run_phase(data, tmp_path / "fineval", cfg, scorer)
    assert res.stopped_early and res.steps == 4 and scorer.calls == [f"step-{s:06d}" for s in (1, 2, 3, 4)]
    assert [h["fineval_mean"] for h in res.history] == means[:4]
    assert [h["dev_loss"] for h in res.history] == losses[:4]  # still computed and logged
    assert res.best_step == 2 == first_argmax(res.history)
    assert res.select_on == "fineval" and res.best_score == 0.5 and res.best_dev_loss == 2.8
    best = load_file(tmp_path / "fineval" / "best" / "model.safetensors")
    for k, v in best.items():
        assert torch.equal(v, scorer.snapshots["step-000002"][k]), k
    state = json.loads((tmp_path / "fineval" / "ckpt" / "ckpt-000004" / "state.json").read_text())
    assert state["best_score"] == 0.5 and state["best_step"] == 2 and state["bad_evals"] == 2

    # the same script, selecting on the dev loss (FinEval only logged): step 4, no early stop
    scripted_dev_loss(monkeypatch, losses)
    cfg = cfg.model_copy(update={"select_on": "dev_loss", "patience": 2})
    res = run_phase(data, tmp_path / "dev", cfg, Scripted(tok, means), max_steps=4)
    assert res.best_step == 4 and res.select_on == "dev_loss" and res.best_score == res.best_dev_loss == 2.4
    assert [h["fineval_mean"] for h in res.history] == means[:4]


def test_fineval_every_scores_every_kth_evaluation(data, tmp_path, monkeypatch):
    """fineval_every=2 with eval_every=1: FinEval at steps 2 and 4 and the last step (5); the evaluations in
    between neither improve nor count against patience."""
    tok, _ = data
    cfg = TrainConfig(**TINY, eval_every=1, fineval_every=2, patience=1, select_on="fineval",
                      fineval_tasks=["cfa_easy"])
    scripted_dev_loss(monkeypatch, [1.0] * 5)
    scorer = Scripted(tok, [0.4, 0.6, 0.1], every=cfg.fineval_every)
    res = run_phase(data, tmp_path, cfg, scorer, max_steps=5)
    assert scorer.calls == ["step-000002", "step-000004", "step-000005"]
    assert res.steps == 5 and res.best_step == 4 and res.best_score == 0.6
    assert [h["step"] for h in res.history if "fineval_mean" in h] == [2, 4, 5]


def test_fineval_without_dev_documents(data, tmp_path):
    """No dev documents: FinEval alone can select; when it only logs, the final weights are the selection."""
    tok, docs = data
    kw = dict(backend="varlen", device="cpu", precision="fp32", pad_id=tok.pad_token_id)
    phase = Phase(name="p", train_docs=docs, dev_docs=[], lr=1e-3, warmup=0.0, max_steps=3, out_dir=tmp_path / "a")
    cfg = TrainConfig(**TINY, eval_every=1, patience=5, select_on="fineval", fineval_tasks=["cfa_easy"])
    res = train_phase(fresh_model(), phase, cfg, fineval=Scripted(tok, [0.1, 0.3, 0.2]), **kw)
    assert res.best_step == 2 and res.best_score == 0.3 and res.best_dev_loss is None
    assert "dev_loss" not in res.history[0] and res.history[0]["fineval_mean"] == 0.1

    phase.out_dir = tmp_path / "b"
    model = fresh_model()
    res = train_phase(model, phase, cfg.model_copy(update={"select_on": "dev_loss"}),
                      fineval=Scripted(tok, [0.1, 0.3, 0.2]), **kw)
    assert res.best_step is None and [h["fineval_mean"] for h in res.history] == [0.1, 0.3, 0.2]
    best = load_file(tmp_path / "b" / "best" / "model.safetensors")
    for k, v in model.state_dict().items():
        if k in best:
            assert torch.equal(best[k], v), k


def test_resume_keeps_the_selection(data, tmp_path, monkeypatch):
    """A run stopped after step 2 and resumed keeps best = step 1 (0.5): 0.3 at step 3 is not an improvement."""
    tok, _ = data
    cfg = TrainConfig(**TINY, eval_every=1, checkpoint_every=1, patience=5, select_on="fineval",
                      fineval_tasks=["cfa_easy"])
    scripted_dev_loss(monkeypatch, [1.0] * 10)
    scorer = Scripted(tok, [0.5, 0.2, 0.3, 0.1])
    docs = data[1]
    phase = Phase(name="p", train_docs=docs, dev_docs=docs[:2], lr=1e-3, warmup=0.0, max_steps=4, out_dir=tmp_path)
    model = fresh_model()
    kw = dict(backend="varlen", device="cpu", precision="fp32", pad_id=tok.pad_token_id, fineval=scorer)
    with pytest.raises(Crash):
        train_phase(model, phase, cfg, parallel=crashing_after(SingleProcess(), 2), **kw)
    first = json.loads((tmp_path / "ckpt" / "ckpt-000002" / "state.json").read_text())
    assert first["step"] == 2 and first["best_step"] == 1
    res = train_phase(model, phase, cfg, **kw)
    assert res.steps == 4 and res.best_step == 1 and res.best_score == 0.5
    assert [h["step"] for h in res.history] == [3, 4]
    # selecting on something else from the same checkpoints would mix two meanings of "best"
    with pytest.raises(ValueError, match="delete the phase's ckpt"):
        train_phase(model, phase, cfg.model_copy(update={"select_on": "dev_loss"}), **kw)


def test_checkpoints_from_before_fineval_selection_resume():
    cfg = TrainConfig(**TINY)
    old = {"global_step": 4, "best_dev_loss": 2.5, "best_step": 2, "bad_evals": 1}
    state = resume_selection(dict(old), cfg, None)
    assert state.select_on == "dev_loss" and state.best_score == 2.5 and state.best_step == 2 and state.step == 4
    with pytest.raises(ValueError, match="selects on"):
        resume_selection(dict(old), TrainConfig(**TINY, select_on="fineval", fineval_tasks=["cfa_easy"]), None)


# ---- the live model is scored in place, freshly every time ---------------------------------------------------
def test_scorer_restores_training_setup_and_never_reuses_results(data, tmp_path, monkeypatch):
    tok, docs = data
    model = fresh_model()
    model.set_attn_implementation(hf_implementation("varlen"))
    model.train()
    scorer = FinEvalScorer(["cfa_easy"], tok, limit=4, every=1, device="cpu", precision="fp32")
    out = tmp_path / "step"

    def no_switch(*args, **kwargs):
        raise AssertionError("the scorer switched the live model's attention implementation")

    monkeypatch.setattr(type(model), "set_attn_implementation", no_switch)  # varlen scores padded batches itself
    scorer(model, out)
    first = json.loads((out / "cfa_easy.direct.json").read_text())["samples"]
    assert model.training and model.config._attn_implementation == "findap_varlen"
    with torch.no_grad():
        model.model.norm.weight.mul_(3.0)  # "the next step": same folder name, different weights
    scorer(model, out)
    second = json.loads((out / "cfa_easy.direct.json").read_text())["samples"]
    assert all(a["logprobs"] != b["logprobs"] for a, b in zip(first, second))
    # the model still trains after scoring (inference-mode scoring left nothing behind)
    from findap.train.loop import micro_batches, plan_steps, train_step

    cfg = TrainConfig(**TINY)
    loss, _ = train_step(model, micro_batches(plan_steps(docs, cfg, seed=0)[0], cfg, "varlen", tok.pad_token_id),
                         "varlen", "cpu", "fp32", chunk=64)
    assert loss > 0 and model.model.norm.weight.grad is not None


def test_other_ranks_take_rank_zero_scores(data, tmp_path):
    """Rank 1 scores into a temp folder and adopts rank 0's numbers (the all-reduce adds them to its zeros)."""
    tok, _ = data
    rank0 = torch.tensor([0.7, 0.7], dtype=torch.float64)

    class Rank1(Replicated):  # the all-reduce of a 2-process group whose rank 0 measured 0.7
        def _all_reduce(self, tensor):
            tensor.add_(rank0)

    scores = Scripted(tok, [0.1])(fresh_model(), tmp_path / "step-000001", Rank1(1, 2))
    assert scores == {"fineval_cfa_easy": 0.7, "fineval_mean": 0.7}
    assert not (tmp_path / "step-000001").exists()


def test_sharded_generation_decodes_in_lockstep(data):
    """Under FSDP every forward is a collective, so generation must end each row at the same step on every rank:
    the scorer hands the engine `agree_tokens` (rank 0's tokens), and decoding continues with what it returns,
    whatever this rank computed. Here "rank 0" says `word` twice, then ends the longer prompt's row (batch order:
    longest first) and then the other one: 3 then 1 tokens more, 5 steps in all."""
    from findap.engines import EngineSpec, make_engine
    from findap.engines.base import GenerationRequest

    tok, _ = data
    engine = make_engine(EngineSpec(kind="hf", model="t", device="cpu", precision="fp32"), model=fresh_model(),
                         tokenizer=tok)
    word, eos = tok.convert_tokens_to_ids("Ġyes"), tok.eos_token_id
    live = []

    def rank0(tokens):
        live.append(len(tokens))
        step = len(live)
        if step == 3:
            return [eos] + [word] * (len(tokens) - 1)  # the longest prompt's row ends
        return [eos if step == 5 else word] * len(tokens)

    engine.agree_tokens = rank0
    outs = engine.generate_with_tokens([GenerationRequest(prompt="Hi", max_new_tokens=8),
                                        GenerationRequest(prompt="A much longer question, is it?", max_new_tokens=8)],
                                       progress=False)
    assert live == [2, 2, 2, 1, 1]
    assert [ids for _, ids in outs] == [[word] * 4, [word] * 2] and outs[0][0] == " yes" * 4


# ---- (c) configuration errors ------------------------------------------------------------------------------
def test_config_validation():
    with pytest.raises(ValidationError, match="select_on=fineval needs fineval_tasks"):
        TrainConfig(select_on="fineval")
    with pytest.raises(ValidationError, match="fineval_every=3 must be a multiple of eval_every=2"):
        TrainConfig(eval_every=2, fineval_every=3, fineval_tasks=["cfa_easy"])
    ok = TrainConfig(eval_every=2, fineval_every=4, select_on="fineval", fineval_tasks=["demo", "cfa_easy"])
    assert ok.fineval_limit == 100 and TrainConfig().fineval_tasks == [] and TrainConfig().select_on == "dev_loss"


def test_task_names_are_checked_when_training_starts(data):
    """Names are checked against the task registry by the scorer, built before the model loads (the config
    validator does not read the task YAMLs)."""
    tok, _ = data
    for names, error in ((["cfa_easy", "cfa_eazy"], r"unknown FinEval task or group 'cfa_eazy'; tasks: .*cfa_easy.*"
                                                     r"groups: .*finance"),
                         (["mt_bench"], "judge-scored tasks need an LLM judge .*: mt_bench")):
        cfg = TrainConfig(fineval_tasks=names)  # accepted by the config
        with pytest.raises(ValueError, match=error):
            FinEvalScorer.from_config(cfg, tok)


def test_config_validation_does_not_load_the_task_registry():
    import subprocess
    import sys

    code = ("import sys; from findap.train.config import TrainConfig; "
            "TrainConfig(select_on='fineval', fineval_tasks=['cfa_easy', 'finance']); "
            "print(sorted(m for m in sys.modules if m.startswith('findap.eval')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_fineval_selection_needs_a_scorer(data, tmp_path):
    cfg = TrainConfig(**TINY, select_on="fineval", fineval_tasks=["cfa_easy"])
    with pytest.raises(ValueError, match="select_on=fineval needs a FinEval scorer"):
        run_phase(data, tmp_path, cfg, None)
