"""The shared training loop (findap.training.loop) against a plain PyTorch loop written out here: for stage 1 and
alignment, the same planned steps give the same step losses and the same weights, with dev evaluations (which
must not disturb training) and the LR schedule, clipping and AdamW applied in the textbook order."""
import json

import pytest
import torch

from findap.align.config import AlignConfig
from findap.align.encode import tokenize_pair
from findap.align.logprobs import row_logprobs
from findap.align.loop import align_trainer
from findap.align.loss import dpo_nll_loss
from findap.align.reference import reference_logprobs
from findap.train.attention import model_inputs
from findap.train.config import TrainConfig
from findap.train.loop import Phase, micro_batches, plan_steps, train_phase
from findap.train.loss import token_loss_sum
from findap.train.packing import trained_tokens
from findap.training.optim import optimizer_for

QUESTIONS = [("What is 10% of 90?", "9", "90"), ("Add 17 and 25.", "42", "32"), ("Half of 64?", "32", "128"),
             ("3 times 14?", "42", "17"), ("100 minus 37?", "63", "73"), ("Double 21?", "42", "23")]


@pytest.fixture(scope="module")
def data(tiny_train_set):
    fresh_model, tok, docs = tiny_train_set
    return fresh_model, tok, docs


def plain_update(model, optimizer, scheduler, grad_clip: float) -> None:
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], grad_clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def assert_same_weights(a, b):
    for (name, x), y in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-7, msg=name)


def test_stage_one_equals_plain_loop(data, tmp_path):
    fresh_model, tok, docs = data
    cfg = TrainConfig(seq_len=64, micro_batch_tokens=128, tokens_per_step=256, eval_every=2, patience=None,
                      progress=False, tensorboard=False)
    phase = Phase(name="p", train_docs=docs, dev_docs=docs[:4], lr=1e-3, warmup=0.25, max_steps=5, out_dir=tmp_path)
    model = fresh_model()
    result = train_phase(model, phase, cfg, backend="varlen", device="cpu", precision="fp32", seed=3,
                         pad_id=tok.pad_token_id)

    plain = fresh_model()
    steps = plan_steps(docs, cfg, seed=3)[:5]
    optimizer, scheduler = optimizer_for(plain, cfg, phase.lr, phase.warmup, len(steps))
    losses = []
    for rows in steps:
        batches = micro_batches(rows, cfg, "varlen", tok.pad_token_id)
        window = sum(trained_tokens(b) for b in batches)
        total = 0.0
        for batch in batches:
            loss_sum, _ = token_loss_sum(plain, model_inputs(batch, "varlen", "cpu"), batch["labels"],
                                         chunk=cfg.loss_chunk_tokens)
            (loss_sum / window).backward()
            total += float(loss_sum.detach())
        losses.append(total / window)
        plain_update(plain, optimizer, scheduler, cfg.grad_clip)

    assert [r["step"] for r in result.history] == [1, 2, 3, 4, 5]
    assert [r["loss"] for r in result.history] == pytest.approx(losses, abs=2e-6)
    assert [r["step"] for r in result.history if "dev_loss" in r] == [2, 4, 5]
    assert result.best_step in (2, 4, 5) and (tmp_path / "best" / "model.safetensors").exists()
    assert_same_weights(model, plain)


def test_alignment_equals_plain_loop(data, tmp_path):
    fresh_model, tok, _ = data
    pairs = [tokenize_pair(tok, {"id": f"q{i}", "prompt": [{"role": "user", "content": q}],
                                 "chosen": f"Step 1: compute it.\nAnswer: {good}", "rejected": f"Answer: {bad}"}, 256)
             for i, (q, good, bad) in enumerate(QUESTIONS)]
    train_pairs, dev_pairs = pairs[:4], pairs[4:]
    cfg = AlignConfig(lr=1e-3, tokens_per_step=64, row_tokens=256, eval_every=2, epochs=6, max_steps=5,
                      progress=False, tensorboard=False)
    model = fresh_model()
    ref = reference_logprobs(model, pairs, row_tokens=cfg.row_tokens, progress=False)
    saved = []
    log = []
    trainer = align_trainer(model, train_pairs, dev_pairs, ref, cfg, seed=1, precision="fp32",
                            checkpoint_dir=tmp_path / "checkpoint", log=log.append,
                            save_best=lambda m: saved.append(len(log)))
    fitted = trainer.fit()

    plain = fresh_model()
    task = trainer.task
    steps = task.plan()
    optimizer, scheduler = optimizer_for(plain, cfg, cfg.lr, cfg.warmup, len(steps))
    losses = []
    for indices in steps:
        rows = [task.rows[i] for i in indices]
        n_pairs = sum(len(r.pair_ids) for r in rows)
        n_chosen = sum(len(task.by_id[pid].chosen_ids) for r in rows for pid in r.pair_ids)
        total = 0.0
        for row in rows:
            logps, n_tokens = row_logprobs(plain, row, cfg.loss_chunk_tokens)
            refs = torch.tensor([ref[pid] for pid in row.pair_ids])
            terms = dpo_nll_loss(logps[0::2], logps[1::2], refs[:, 0], refs[:, 1], n_tokens[0::2], beta=cfg.beta,
                                 alpha=cfg.alpha, nll_norm=cfg.nll_norm, n_pairs=n_pairs, n_chosen_tokens=n_chosen)
            terms.loss.backward()
            total += float(terms.loss.detach())
        losses.append(total)
        plain_update(plain, optimizer, scheduler, cfg.grad_clip)

    step_records = [r for r in log if "lr" in r]
    assert fitted.state.step == len(steps) == 5
    assert [r["loss"] for r in step_records] == pytest.approx(losses, abs=2e-6)
    assert [r["step"] for r in log if "dev_loss" in r] == [0, 2, 4, 5]  # the starting weights are evaluated too
    assert saved  # the best model was handed to save_best at least once (step 0 is the first best)
    assert_same_weights(model, plain)
    latest = json.loads((tmp_path / "checkpoint" / "ckpt-000005" / "state.json").read_text())
    assert latest["step"] == 5 and latest["tokens"] == fitted.state.tokens
