"""Two CPU processes (gloo) share the micro-batches of a step: same loss and gradients as one process.

Replicas (sharding: none) and FSDP2 FULL_SHARD (each rank holds half of the parameters) are both tested."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from findap.models import load_model, load_tokenizer, save_tiny_llama
from findap.train.config import TrainConfig
from findap.train.loop import micro_batches, plan_steps, train_step
from findap.training.parallel import FullyShard, Replicated, SingleProcess, start, use_full_shard
from helpers.crash import Crash, crashing_after
from helpers.sample_data import ectsum_texts, fpb_conversations
from findap.train.tokenize import tokenize_examples

CFG = TrainConfig(seq_len=64, micro_batch_tokens=128, tokens_per_step=512)


def one_step(model_dir, dist=None):
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, device="cpu", attn_implementation="sdpa")
    docs = tokenize_examples(fpb_conversations(10) + ectsum_texts(1), tok, 64)[:40]
    batches = micro_batches(plan_steps(docs, CFG, seed=0)[0], CFG, "sdpa", tok.pad_token_id)
    loss, _ = train_step(model, batches, "sdpa", "cpu", "fp32", chunk=256, parallel=dist)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters()}


def worker(rank, model_dir, port, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist = start("none", "full")
    assert (dist.rank, dist.world) == (rank, 2) and type(dist) is Replicated
    loss, grads = one_step(model_dir, dist)
    if rank == 0:
        torch.save({"loss": loss, "grads": grads}, out)
    torch.distributed.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_pair(fn, args_for_port):
    """fn(rank, *args_for_port(port)) in 2 processes. The free port is released before rank 0 binds it, so another
    process can take it in between: then once more with a new port (only for that error)."""
    for attempt in range(2):
        try:
            mp.spawn(fn, args=args_for_port(free_port()), nprocs=2, join=True)
            return
        except mp.ProcessRaisedException as e:
            if attempt or "address already in use" not in str(e).lower():
                raise


@pytest.mark.slow  # spawns Python processes (~30-100 s on the shared 2-core machine)
def test_two_processes_match_one(tmp_path):
    model_dir = save_tiny_llama(tmp_path / "tiny", seed=9)
    spawn_pair(worker, lambda port: (model_dir, port, tmp_path / "rank0.pt"))
    got = torch.load(tmp_path / "rank0.pt", weights_only=True)
    loss, grads = one_step(model_dir)
    assert abs(got["loss"] - loss) < 1e-6
    for n, g in grads.items():
        torch.testing.assert_close(got["grads"][n], g, atol=1e-6 * float(g.abs().max()) + 1e-9, rtol=1e-5, msg=n)


# ---- FSDP FULL_SHARD: 2 gloo processes, each holding half of the parameters --------------------------------------
# One spawn runs every sharded scenario; the tests below read its results (module fixture `fsdp`).
FSDP = TrainConfig(seq_len=128, micro_batch_tokens=256, tokens_per_step=768, loss_chunk_tokens=256, eval_every=2,
                   checkpoint_every=1, patience=10, tensorboard=False, progress=False)  # 3 micro-batches per full step
# The uninterrupted run (and its 1-process reference) also selects on FinEval dev tasks, scored on the sharded model
# at steps 2 and 4: a multiple-choice task (decoder + tied LM head read outside model.forward) and a classification
# task (generation: the ranks decode in lockstep), 4 items each.
SELECTING = FSDP.model_copy(update={"select_on": "fineval", "fineval_tasks": ["cfa_easy", "fpb"],
                                    "fineval_limit": 4})


def fsdp_data(tok):
    docs = tokenize_examples(fpb_conversations(30) + ectsum_texts(1), tok, 128)
    cpt, it = [d for d in docs if d["kind"] == "cpt"], [d for d in docs if d["kind"] == "it"]
    return cpt[:8] + it[:12], cpt[16:18] + it[20:24]  # train: steps of 3, 3, 3 and 1 micro-batches; dev


def run_phase(model_dir, out, parallel=None, *, crash_after=None, cfg=FSDP):
    """Train the phase; with `crash_after=N` the run dies in step N + 1 (checkpoints of steps 1..N on disk)."""
    from findap.train.attention import hf_implementation
    from findap.train.loop import Phase, train_phase
    from findap.train.select import FinEvalScorer

    parallel = parallel or SingleProcess()
    tok = load_tokenizer(model_dir)
    train, dev = fsdp_data(tok)
    model = load_model(model_dir, device="cpu", attn_implementation=hf_implementation("varlen"))
    model = parallel.wrap(model, device="cpu", precision="fp32", checkpointing=cfg.gradient_checkpointing)
    phase = Phase("g1", train, dev, lr=2e-3, warmup=0.25, out_dir=out)
    scorer = FinEvalScorer.from_config(cfg, tok, device="cpu", precision="fp32")
    if crash_after is not None:
        parallel = crashing_after(parallel, crash_after)
    try:
        result = train_phase(model, phase, cfg, backend="varlen", device="cpu", precision="fp32", seed=0,
                             pad_id=tok.pad_token_id, parallel=parallel, fineval=scorer)
    except Crash:
        return model, tok, None
    return model, tok, result


def final_weights(out):
    """The weights of the newest checkpoint (written at the last step)."""
    from safetensors.torch import load_file

    from findap.training.checkpoint import latest_checkpoint

    return load_file(str(latest_checkpoint(out / "ckpt") / "model.safetensors"))


def fsdp_worker(rank, model_dir, port, tmp):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import shutil

    import torch.distributed as td

    from torch.distributed.fsdp import FSDPModule

    dist = start("auto", "full")
    # (e) rank-dependent measurements (rank 1 off in the last digits, NaN, ...): every rank gets rank 0's
    measured = {"dev_loss": 2.5 + 1e-7 * rank, "dev_loss_it": [3.0, float("nan")][rank], "fineval_mean": 0.25 * rank}
    agreed = [None, None]
    td.all_gather_object(agreed, dist.same_on_all_ranks(measured))
    # (a)-(c) uninterrupted, activation checkpointing on (the single-process reference runs without it), FinEval
    # selection on the sharded model
    checkpointed = SELECTING.model_copy(update={"gradient_checkpointing": True})
    model, tok, result = run_phase(model_dir, tmp / "fsdp", dist, cfg=checkpointed)
    params = list(model.parameters())
    shard = {"sharded": isinstance(model, FSDPModule) and type(dist) is FullyShard, "dtensor": all(type(p).__name__ == "DTensor" for p in params),
             "local": sum(p.to_local().numel() for p in params), "total": sum(p.numel() for p in params),
             "checkpointing": all(layer.gradient_checkpointing for layer in model.model.layers)}
    shards = [None, None]
    td.all_gather_object(shards, shard)
    dist.save_model_dir(model, tok, tmp / "fsdp" / "model")
    # (d) a stop after step 2 (as a kill would), then fresh models resume from the checkpoint on disk
    run_phase(model_dir, tmp / "resume", dist, crash_after=2)
    if rank == 0:
        shutil.copytree(tmp / "resume" / "ckpt", tmp / "from-fsdp" / "ckpt")  # for a single process to resume
    run_phase(model_dir, tmp / "resume", dist)
    run_phase(model_dir, tmp / "from-single", dist)  # a single-process checkpoint, resumed sharded
    if rank == 0:
        torch.save({"history": result.history, "best_step": result.best_step, "shards": shards, "agreed": agreed},
                   tmp / "fsdp.pt")
    td.destroy_process_group()


@pytest.fixture(scope="module")
def fsdp(tmp_path_factory, tiny_model_dir, one_torch_thread):
    tmp = tmp_path_factory.mktemp("fsdp")
    single = run_phase(tiny_model_dir, tmp / "single", cfg=SELECTING)[2]
    run_phase(tiny_model_dir, tmp / "from-single", crash_after=2)
    spawn_pair(fsdp_worker, lambda port: (tiny_model_dir, port, tmp))
    run_phase(tiny_model_dir, tmp / "from-fsdp")  # resumes the sharded run's step-2 checkpoint in one process
    return {"tmp": tmp, "single": single.history, "single_best_step": single.best_step,
            **torch.load(tmp / "fsdp.pt", weights_only=False)}


def assert_same_weights(got, want, atol=1e-5):  # Adam moved weights by ~6e-3; AVG instead of SUM: ~3e-3 off
    assert sorted(got) == sorted(want)  # same file layout (the tied embedding stored once)
    for name, w in want.items():
        torch.testing.assert_close(got[name], w, atol=atol, rtol=1e-4, msg=name)


@pytest.mark.slow  # one spawn of 2 processes for the six FSDP tests (~30-50 s on the shared 2-core machine)
def test_fsdp_full_shard_matches_one_process(fsdp):
    """(a) Same per-step loss, gradient norm and dev loss as one process; same final and best weights; the model
    directory gathered from the shards is the single-process model."""
    got, want = fsdp["history"], fsdp["single"]
    assert [r["step"] for r in got] == [r["step"] for r in want] == [1, 2, 3, 4]
    for g, w in zip(got, want):
        assert abs(g["loss"] - w["loss"]) < 1e-5 * w["loss"], (g, w)
        assert abs(g["grad_norm"] - w["grad_norm"]) < 1e-4 * w["grad_norm"], (g, w)
        assert ("dev_loss" in g) == ("dev_loss" in w) and abs(g.get("dev_loss", 0) - w.get("dev_loss", 0)) < 1e-5
    tmp = fsdp["tmp"]
    single = final_weights(tmp / "single")
    assert_same_weights(final_weights(tmp / "fsdp"), single)
    from safetensors.torch import load_file

    assert_same_weights(load_file(str(tmp / "fsdp" / "best" / "model.safetensors")),
                        load_file(str(tmp / "single" / "best" / "model.safetensors")))
    saved = load_model(tmp / "fsdp" / "model", device="cpu")  # the model directory, gathered from the shards
    assert saved.lm_head.weight is saved.model.embed_tokens.weight
    state = saved.state_dict()
    assert_same_weights({k: state[k] for k in single}, single)


@pytest.mark.slow
def test_fsdp_fineval_selection_matches_one_process(fsdp):
    """(a') FinEval dev scoring on the sharded model (every rank scores, rank 0's numbers win): the same scores at
    every evaluation as one process, down to each option's log-likelihood and each generated answer, and the
    same selected step."""
    import json

    got, want = fsdp["history"], fsdp["single"]
    keys = ["fineval_cfa_easy", "fineval_fpb", "fineval_mean"]
    assert [r["step"] for r in got if "fineval_mean" in r] == [r["step"] for r in want if "fineval_mean" in r] == [2, 4]
    for g, w in zip(got, want):
        assert {k: g.get(k) for k in keys} == {k: w.get(k) for k in keys}, (g, w)
    assert fsdp["best_step"] == fsdp["single_best_step"] is not None
    tmp = fsdp["tmp"]
    for step in (2, 4):
        for task in ("cfa_easy", "fpb"):
            sharded, single = (json.loads((tmp / run / "fineval" / f"step-{step:06d}" / f"{task}.direct.json")
                                          .read_text())["samples"] for run in ("fsdp", "single"))
            assert len(sharded) == len(single) == 4
            for a, b in zip(sharded, single):
                assert a["prediction"] == b["prediction"] and a.get("output") == b.get("output"), (task, step)
                if task == "cfa_easy":
                    assert a["logprobs"] == pytest.approx(b["logprobs"], abs=1e-4), (step, a["id"])


@pytest.mark.slow
def test_ranks_decide_on_rank_zero_measurements(fsdp):
    """(e) same_on_all_ranks: rank 1 measured other numbers (last digits, a NaN, 0.25 instead of 0); both ranks
    end with rank 0's, bit for bit."""
    rank0 = {"dev_loss": 2.5, "dev_loss_it": 3.0, "fineval_mean": 0.0}
    assert fsdp["agreed"] == [rank0, rank0]


@pytest.mark.slow
def test_fsdp_ranks_hold_half_the_parameters(fsdp):
    """(b) FULL_SHARD for real: each rank's parameters are DTensor shards, about half of the model each."""
    shards = fsdp["shards"]
    assert all(s["sharded"] and s["dtensor"] and s["checkpointing"] for s in shards)
    total = shards[0]["total"]
    assert sum(s["local"] for s in shards) == total
    assert all(abs(s["local"] - total / 2) < 0.01 * total for s in shards), shards


@pytest.mark.slow
def test_fsdp_uneven_micro_batches(fsdp, tiny_model_dir):
    """(c) Steps of 3 and 1 micro-batches on 2 ranks: the short rank adds a zero-weight pass, losses still match."""
    tok = load_tokenizer(tiny_model_dir)
    steps = plan_steps(fsdp_data(tok)[0], FSDP, seed=0)
    assert [len(micro_batches(s, FSDP, "varlen", tok.pad_token_id)) for s in steps] == [3, 3, 3, 1]
    for g, w in zip(fsdp["history"], fsdp["single"]):  # every one of these steps is uneven for 2 ranks
        assert abs(g["loss"] - w["loss"]) < 1e-5 * w["loss"]


def test_local_passes_pad_short_ranks():
    """Under FSDP every rank makes ceil(n / world) passes; the extra ones have loss weight 0. Replicas do not pad."""
    passes = {r: FullyShard(r, 2).local_passes(3) for r in (0, 1)}
    assert passes == {0: [(0, 1.0), (2, 1.0)], 1: [(1, 1.0), (2, 0.0)]}
    assert FullyShard(1, 2).local_passes(1) == [(0, 0.0)]
    assert Replicated(1, 2).local_passes(1) == [] and Replicated(1, 2).local_passes(3) == [(1, 1.0)]
    assert SingleProcess().local_passes(3) == [(0, 1.0), (1, 1.0), (2, 1.0)]


@pytest.mark.slow
def test_fsdp_checkpoints_resume(fsdp):
    """(d) A sharded run stopped after step 2 and resumed ends with the uninterrupted run's weights, and checkpoints
    cross between layouts: 1 process resumes a 2-process checkpoint, 2 processes resume a 1-process one."""
    tmp = fsdp["tmp"]
    uninterrupted = final_weights(tmp / "fsdp")
    assert_same_weights(final_weights(tmp / "resume"), uninterrupted)
    single = final_weights(tmp / "single")
    assert_same_weights(final_weights(tmp / "from-fsdp"), single)
    assert_same_weights(final_weights(tmp / "from-single"), single)


def test_sharding_choice():
    """auto shards full fine-tuning with several processes; LoRA and one process keep full replicas."""
    from pydantic import ValidationError

    def shards(cfg, world):
        return use_full_shard(cfg.sharding, cfg.finetune, world)

    assert shards(TrainConfig(), 2) and not shards(TrainConfig(), 1)
    assert not shards(TrainConfig(sharding="none"), 2)
    assert not shards(TrainConfig(finetune="lora"), 2)
    with pytest.raises(ValidationError, match="sharding=full_shard is not supported with finetune=lora"):
        TrainConfig(finetune="lora", sharding="full_shard")
