"""DPO + NLL loss: hand-computed values, TRL 1.16's DPOTrainer on the same inputs, and a tiny overfit run."""
import math

import pytest
import torch

from findap.align.config import AlignConfig
from findap.align.encode import tokenize_pair
from findap.align.loop import evaluate, train
from findap.align.loss import dpo_nll_loss
from findap.align.packing import pack_pairs
from findap.align.reference import reference_logprobs
from findap.models import tiny_llama

PAIRS = [
    {"id": "p1", "prompt": [{"role": "user", "content": "Simple interest on 2,000 at 5% for 3 years?"}],
     "chosen": "Step 1: 2,000 * 0.05 = 100 per year.\nStep 2: 100 * 3 = 300.\nAnswer: 300",
     "rejected": "Step 1: 2,000 * 5 = 10,000.\nAnswer: 10000"},
    {"id": "p2", "prompt": [{"role": "user", "content": "Which premium explains a higher yield on illiquid bonds?"}],
     "chosen": "Step 1: Illiquid bonds are hard to sell.\nAnswer: liquidity premium",
     "rejected": "Answer: maturity premium because the bonds are long and the curve is steep"},
]


def logp_by_hand(model, prompt_ids, response_ids) -> float:
    """Full-vocabulary log_softmax over one unpacked sequence."""
    x = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].double(), -1)
    return sum(logp[len(prompt_ids) - 1 + i, t].item() for i, t in enumerate(response_ids))


def test_loss_formula_by_hand():
    terms = dpo_nll_loss(torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]),
                         torch.tensor([-11.0]), torch.tensor([5]), beta=0.1, alpha=1.0)
    # logits = (-10 + 11) - (-12 + 11) = 2; DPO = log(1 + e^-0.2); NLL = 10 / 5
    assert terms.loss.item() == pytest.approx(math.log1p(math.exp(-0.2)) + 2.0, rel=1e-6)
    token_mean = dpo_nll_loss(torch.tensor([-10.0, -3.0]), torch.tensor([-12.0, -1.0]),
                              torch.tensor([-11.0, -3.0]), torch.tensor([-11.0, -1.0]),
                              torch.tensor([5, 1]), beta=0.5, alpha=2.0, nll_norm="token_mean")
    dpo = (math.log1p(math.exp(-1.0)) + math.log(2)) / 2
    assert token_mean.loss.item() == pytest.approx(dpo + 2.0 * 13.0 / 6.0, rel=1e-6)


@pytest.fixture(scope="module")
def models():
    policy, tok = tiny_llama(seed=0)
    ref, _ = tiny_llama(seed=1)
    return policy, ref, tok


@pytest.mark.parametrize("nll_norm", ["per_example", "token_mean"])
def test_pipeline_loss_equals_hand_computed(models, nll_norm):
    policy, ref_model, tok = models
    pairs = [tokenize_pair(tok, p, 512) for p in PAIRS]
    cfg = AlignConfig(beta=0.3, alpha=0.7, nll_norm=nll_norm, loss_chunk_tokens=5)
    ref = reference_logprobs(ref_model, pairs, row_tokens=4096, precision="fp32", progress=False)
    ours = evaluate(policy, pack_pairs(pairs, 4096), ref, cfg, {p.id: p for p in pairs}, "fp32")["loss"]

    dpo, nll, chosen_tokens = 0.0, 0.0, 0
    for p in pairs:
        pc, pr = logp_by_hand(policy, p.prompt_ids, p.chosen_ids), logp_by_hand(policy, p.prompt_ids, p.rejected_ids)
        rc, rr = logp_by_hand(ref_model, p.prompt_ids, p.chosen_ids), logp_by_hand(ref_model, p.prompt_ids, p.rejected_ids)
        dpo += math.log1p(math.exp(-0.3 * ((pc - rc) - (pr - rr)))) / len(pairs)
        nll += -pc / len(p.chosen_ids) / len(pairs) if nll_norm == "per_example" else -pc
        chosen_tokens += len(p.chosen_ids)
    if nll_norm == "token_mean":
        nll /= chosen_tokens
    assert ours == pytest.approx(dpo + 0.7 * nll, rel=1e-4)


def test_equals_trl_dpo_sigmoid_plus_sft(models):
    """TRL's 'sft' term is a token mean over the batch's chosen tokens: our nll_norm='token_mean'."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    policy, ref_model, tok = models
    beta, alpha = 0.2, 1.5
    args = DPOConfig(output_dir="/tmp/findap-trl-test", loss_type=["sigmoid", "sft"], loss_weights=[1.0, alpha],
                     beta=beta, per_device_train_batch_size=len(PAIRS), max_length=512, report_to=[],
                     use_cpu=True, bf16=False, dataset_num_proc=None, logging_steps=1)
    data = Dataset.from_list([{"prompt": p["prompt"], "chosen": [{"role": "assistant", "content": p["chosen"]}],
                               "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in PAIRS])
    trainer = DPOTrainer(model=policy, ref_model=ref_model, args=args, train_dataset=data, processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        trl_loss = trainer.compute_loss(trainer.model.eval(), batch).item()

    pairs = [tokenize_pair(tok, p, 512) for p in PAIRS]
    cfg = AlignConfig(beta=beta, alpha=alpha, nll_norm="token_mean")
    ref = reference_logprobs(ref_model, pairs, row_tokens=4096, precision="fp32", progress=False)
    ours = evaluate(policy, pack_pairs(pairs, 4096), ref, cfg, {p.id: p for p in pairs}, "fp32")["loss"]
    assert ours == pytest.approx(trl_loss, rel=1e-4)


def test_overfit_raises_margin_and_chosen_logp():
    policy, tok = tiny_llama(seed=3)
    pairs = [tokenize_pair(tok, p, 512) for p in PAIRS]
    by_id = {p.id: p for p in pairs}
    cfg = AlignConfig(lr=3e-3, warmup=0.0, tokens_per_step=64, row_tokens=512, epochs=12, eval_every=1000,
                      checkpoint_every=1000, beta=0.1, alpha=1.0)
    ref = reference_logprobs(policy, pairs, row_tokens=512, precision="fp32", progress=False)
    rows = pack_pairs(pairs, 512)
    before = evaluate(policy, rows, ref, cfg, by_id, "fp32")
    assert before["margin"] == pytest.approx(0.0, abs=1e-4)  # policy == reference at the start
    assert before["dpo"] == pytest.approx(math.log(2), abs=1e-4)
    summary = train(policy, pairs, [], ref, cfg, seed=0, precision="fp32", progress=False)
    after = evaluate(policy, rows, ref, cfg, by_id, "fp32")
    assert summary["steps"] == 12 * len(rows)  # every row holds >64 tokens, so each row is one step
    assert after["margin"] > 0.5 and after["accuracy"] == 1.0
    assert after["dpo"] < math.log(2) - 0.1
    assert after["chosen_reward"] > 0  # the NLL term keeps the chosen log-prob rising
