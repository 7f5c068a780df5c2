"""Alignment on the shared parallel layer: two CPU processes (gloo) with FSDP2 FULL_SHARD (each rank holds half of
the parameters) give the losses, dev losses and weights of one process, and write the same checkpoint files."""
import os

import pytest
import torch
from safetensors.torch import load_file

from findap.align.config import AlignConfig
from findap.align.encode import tokenize_pair
from findap.align.loop import align_trainer
from findap.align.reference import reference_logprobs
from findap.models import load_model, load_tokenizer, save_tiny_llama
from findap.training.checkpoint import latest_checkpoint
from findap.training.parallel import FullyShard, SingleProcess, start

QUESTIONS = [("What is 10% of 90?", "9", "90"), ("Add 17 and 25.", "42", "32"), ("Half of 64?", "32", "128"),
             ("3 times 14?", "42", "17"), ("100 minus 37?", "63", "73"), ("Double 21?", "42", "23")]
# short rows, several per step: the ranks split each step's rows (FSDP pads an uneven split with a zero-weight pass)
CFG = AlignConfig(lr=1e-3, tokens_per_step=192, row_tokens=64, eval_every=2, checkpoint_every=2, epochs=3,
                  max_steps=3, progress=False, tensorboard=False)


def align(model_dir, out, parallel):
    """Align the tiny model under `parallel`; (logged records, full final weights in the writing process)."""
    tok = load_tokenizer(model_dir)
    pairs = [tokenize_pair(tok, {"id": f"q{i}", "prompt": [{"role": "user", "content": q}],
                                 "chosen": f"Answer: {good}", "rejected": f"Answer: {bad}"}, 64)
             for i, (q, good, bad) in enumerate(QUESTIONS)]
    model = load_model(model_dir, device="cpu")
    ref = reference_logprobs(model, pairs, row_tokens=CFG.row_tokens, progress=False)
    model = parallel.wrap(model, device="cpu", precision="fp32")
    log = []
    trainer = align_trainer(model, pairs[:4], pairs[4:], ref, CFG, seed=0, precision="fp32",
                            checkpoint_dir=out / "checkpoint", log=log.append, parallel=parallel,
                            save_best=lambda m: parallel.save_weights(m, out / "best.safetensors"))
    trainer.fit()
    full = parallel.full_model(model)
    return log, None if full is None else {n: p.detach().clone() for n, p in full.named_parameters()}


def worker(rank, model_dir, port, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    parallel = start("auto", "full")  # what the align stage starts for full fine-tuning
    assert type(parallel) is FullyShard
    log, weights = align(model_dir, out, parallel)
    if rank == 0:
        torch.save({"log": log, "weights": weights}, out / "rank0.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow  # spawns 2 Python processes (~30-60 s on the shared 2-core machine)
def test_fsdp_alignment_matches_one_process(tmp_path):
    from test_train_distributed import spawn_pair

    model_dir = save_tiny_llama(tmp_path / "tiny", seed=4)
    spawn_pair(worker, lambda port: (model_dir, port, tmp_path / "fsdp"))
    sharded = torch.load(tmp_path / "fsdp" / "rank0.pt", weights_only=False)
    log, weights = align(model_dir, tmp_path / "one", SingleProcess())

    assert [r["step"] for r in sharded["log"]] == [r["step"] for r in log] == [0, 1, 2, 2, 3, 3]
    for got, want in zip(sharded["log"], log):
        for key in ("loss", "dev_loss", "dev_margin", "lr"):
            if key in want:
                assert got[key] == pytest.approx(want[key], abs=1e-5), (want["step"], key)
    for name, value in weights.items():
        torch.testing.assert_close(sharded["weights"][name], value, atol=2e-5, rtol=1e-4, msg=name)
    got_ckpt = latest_checkpoint(tmp_path / "fsdp" / "checkpoint")
    want_ckpt = latest_checkpoint(tmp_path / "one" / "checkpoint")
    assert got_ckpt.name == want_ckpt.name == "ckpt-000003"
    got_file, want_file = load_file(got_ckpt / "model.safetensors"), load_file(want_ckpt / "model.safetensors")
    assert got_file.keys() == want_file.keys()  # the full model in the single-process format
    assert (tmp_path / "fsdp" / "best.safetensors").exists()
