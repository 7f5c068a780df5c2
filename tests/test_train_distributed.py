"""Two CPU processes (gloo) share the micro-batches of a step: same loss and gradients as one process."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from findap.models import load_model, load_tokenizer, save_tiny_llama
from findap.train.config import TrainConfig
from findap.train.loop import micro_batches, plan_steps, train_step
from findap.train.sample_data import ectsum_texts, fpb_conversations
from findap.train.tokenize import tokenize_examples

CFG = TrainConfig(seq_len=64, micro_batch_tokens=128, tokens_per_step=512)


def one_step(model_dir, dist=None):
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, device="cpu", attn_implementation="sdpa")
    docs = tokenize_examples(fpb_conversations(10) + ectsum_texts(1), tok, 64)[:40]
    batches = micro_batches(plan_steps(docs, CFG, seed=0)[0], CFG, "sdpa", tok.pad_token_id)
    loss, _ = train_step(model, batches, "sdpa", "cpu", "fp32", chunk=256, dist=dist)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters()}


def worker(rank, model_dir, port, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from findap.train.distributed import from_env

    dist = from_env()
    assert (dist.rank, dist.world) == (rank, 2)
    loss, grads = one_step(model_dir, dist)
    if rank == 0:
        torch.save({"loss": loss, "grads": grads}, out)
    torch.distributed.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # spawns Python processes (~30-100 s on the shared 2-core machine)
def test_two_processes_match_one(tmp_path):
    model_dir = save_tiny_llama(tmp_path / "tiny", seed=9)
    mp.spawn(worker, args=(model_dir, free_port(), tmp_path / "rank0.pt"), nprocs=2, join=True)
    got = torch.load(tmp_path / "rank0.pt", weights_only=True)
    loss, grads = one_step(model_dir)
    assert abs(got["loss"] - loss) < 1e-6
    for n, g in grads.items():
        torch.testing.assert_close(got["grads"][n], g, atol=1e-6 * float(g.abs().max()) + 1e-9, rtol=1e-5, msg=n)
