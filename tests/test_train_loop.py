"""Loss normalisation, optimiser groups, LR schedule and the NaN guard of the training loop."""
import math

import pytest
import torch

from findap.train.config import TrainConfig
from findap.train.loop import Phase, TrainingDiverged, train_phase
from findap.training.checkpoint import latest_checkpoint
from findap.training.optim import build_optimizer, lr_factor, param_groups
from findap.training.parallel import SingleProcess
from helpers.crash import Crash, crashing_after


@pytest.fixture(scope="module")
def data(tiny_train_set):
    global fresh_model  # the tests below call fresh_model() for a copy of the module's tiny model
    fresh_model, tok, docs = tiny_train_set
    return tok, docs


def run(docs, tok, tmp, *, micro_rows, steps=2, **kw):
    model = fresh_model()
    cfg = TrainConfig(seq_len=64, micro_batch_tokens=64 * micro_rows, tokens_per_step=64 * 8, progress=False,
                      tensorboard=False, **kw)
    phase = Phase(name="p", train_docs=docs, dev_docs=[], lr=1e-3, warmup=0.0, max_steps=steps, out_dir=tmp)
    res = train_phase(model, phase, cfg, backend=kw.get("attention", "varlen"), device="cpu", precision="fp32",
                      pad_id=tok.pad_token_id)
    return model, res


def window_grads(docs, tok, micro_rows, backend):
    from findap.train.loop import micro_batches, plan_steps, train_step

    model = fresh_model()
    cfg = TrainConfig(seq_len=64, micro_batch_tokens=64 * micro_rows, tokens_per_step=64 * 8)
    batches = micro_batches(plan_steps(docs, cfg, seed=0)[0], cfg, backend, tok.pad_token_id)
    assert len(batches) == 8 // micro_rows
    loss, _ = train_step(model, batches, backend, "cpu", "fp32", chunk=64)
    return loss, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("backend", ["varlen", "sdpa"])
def test_one_by_eight_equals_four_by_two(data, backend):
    tok, docs = data
    loss1, g1 = window_grads(docs, tok, 8, backend)
    loss4, g4 = window_grads(docs, tok, 2, backend)
    assert loss1 == pytest.approx(loss4, abs=1e-6)
    for n in g1:
        torch.testing.assert_close(g1[n], g4[n], atol=1e-6 * float(g1[n].abs().max()) + 1e-9, rtol=1e-5, msg=n)


def test_micro_batching_gives_same_training_run(data, tmp_path):
    tok, docs = data
    m1, r1 = run(docs, tok, tmp_path / "a", micro_rows=8)
    m4, r4 = run(docs, tok, tmp_path / "b", micro_rows=2)
    assert [h["loss"] for h in r1.history] == pytest.approx([h["loss"] for h in r4.history], abs=1e-5)
    # AdamW's first steps are ~lr * sign(grad): a rounding-level gradient difference moves a weight by < 2 lr.
    for (n, a), (_, b) in zip(m1.named_parameters(), m4.named_parameters()):
        assert float((a - b).detach().abs().max()) < 2e-3, n


def test_step_loss_is_token_mean_over_the_window(data, tmp_path):
    """Reference: Hugging Face's per-document mean losses re-weighted by token counts, before any update."""
    tok, docs = data
    model, res = run(docs, tok, tmp_path, micro_rows=2, steps=1)
    from findap.train.loop import plan_steps

    cfg = TrainConfig(seq_len=64, micro_batch_tokens=128, tokens_per_step=512)
    first = [d for row in plan_steps(docs, cfg, seed=0)[0] for d in row]
    fresh = fresh_model()
    total, count = 0.0, 0
    with torch.no_grad():
        for d in first:
            n = sum(l != -100 for l in d["labels"][1:])
            if n:
                out = fresh(input_ids=torch.tensor([d["input_ids"]]), labels=torch.tensor([d["labels"]]))
                total, count = total + float(out.loss) * n, count + n
    assert res.history[0]["loss"] == pytest.approx(total / count, abs=1e-5)


def test_no_weight_decay_on_norms_and_biases(data):
    model = fresh_model()
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim == 2 for p in decay["params"]) and decay["weight_decay"] == 0.1
    assert {names[id(p)].rsplit(".", 1)[0].split(".")[-1] for p in no_decay["params"]} == {
        "input_layernorm", "post_attention_layernorm", "norm"}
    assert no_decay["weight_decay"] == 0.0


def test_fused_adamw_update_equals_reference_adamw(data):
    """build_optimizer picks the fused kernel on CPU; its update must equal torch's reference (for-loop) AdamW."""
    model = fresh_model()
    ref_model = fresh_model()
    ours = build_optimizer(model, 1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    assert ours.defaults["fused"] is True
    ref = torch.optim.AdamW(param_groups(ref_model, 0.1), lr=1e-3, betas=(0.9, 0.95), foreach=False)
    for _ in range(3):
        for m in (model, ref_model):
            for i, p in enumerate(m.parameters()):
                g = torch.Generator().manual_seed(i)
                p.grad = torch.randn(p.shape, generator=g) * 1e-2
        ours.step()
        ref.step()
    for (name, a), b in zip(model.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert not torch.equal(next(model.parameters()), next(fresh_model().parameters()))  # it did train


def test_lr_schedule_hand_values():
    f = [lr_factor(s, 10, 2, "linear") for s in range(10)]
    assert f[:3] == [0.5, 1.0, 1.0] and f[6] == pytest.approx(0.5) and f[9] == pytest.approx(1 / 8)
    assert lr_factor(6, 10, 2, "cosine") == pytest.approx(0.5)
    assert lr_factor(10, 10, 2, "cosine", min_ratio=0.1) == pytest.approx(0.1)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(data, tmp_path):
    tok, docs = data
    model = fresh_model()
    cfg = TrainConfig(seq_len=64, micro_batch_tokens=128, tokens_per_step=256, checkpoint_every=1, progress=False,
                      tensorboard=False)
    phase = Phase(name="p", train_docs=docs, dev_docs=[], lr=1e-3, warmup=0.0, out_dir=tmp_path)
    with pytest.raises(Crash):
        train_phase(model, phase, cfg, backend="varlen", device="cpu", precision="fp32",
                    parallel=crashing_after(SingleProcess(), 2))
    good = {n: p.detach().clone() for n, p in model.named_parameters()}
    model.model.norm.register_forward_hook(lambda mod, inp, out: out * float("nan"))
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 3.*ckpt-000002"):
        train_phase(model, phase, cfg, backend="varlen", device="cpu", precision="fp32")
    assert latest_checkpoint(tmp_path / "ckpt").name == "ckpt-000002"
    for n, p in model.named_parameters():  # the failed step changed nothing
        assert torch.equal(p, good[n]), n
        assert not math.isnan(float(p.sum()))


def test_patience_stops_and_keeps_best_weights(data, tmp_path, monkeypatch):
    """Scripted dev losses 3.0, 2.5, 2.7, 2.8: best at step 2, stop after two evaluations without improvement."""
    import findap.train.loop as loop
    from safetensors.torch import load_file

    tok, docs = data
    scripted = iter([3.0, 2.5, 2.7, 2.8, 1.0])
    snapshots = {}

    def fake_dev_loss(model, *args, **kwargs):
        snapshots[len(snapshots) + 1] = {n: p.detach().clone() for n, p in model.state_dict().items()}
        return {"dev_loss": next(scripted)}

    monkeypatch.setattr(loop, "dev_loss", fake_dev_loss)
    model = fresh_model()
    cfg = TrainConfig(seq_len=64, micro_batch_tokens=128, tokens_per_step=128, eval_every=1, patience=2,
                      progress=False, tensorboard=False)
    phase = Phase(name="p", train_docs=docs, dev_docs=docs[:2], lr=1e-3, warmup=0.0, out_dir=tmp_path)
    res = train_phase(model, phase, cfg, backend="varlen", device="cpu", precision="fp32")
    assert res.stopped_early and res.steps == 4 and res.best_step == 2 and res.best_dev_loss == 2.5
    best = load_file(tmp_path / "best" / "model.safetensors")
    for k, v in best.items():
        assert torch.equal(v, snapshots[2][k]), k
