"""DPO + NLL on the chosen response (Iterative RPO, Pang et al. 2024).

    loss = mean_pairs( -log sigmoid(beta * [(pi_c - ref_c) - (pi_r - ref_r)]) ) + alpha * NLL(chosen)

with pi_* and ref_* the summed response log-probs under the policy and the frozen reference. NLL is either
`per_example` (each chosen response's NLL divided by its token count, averaged over pairs: long answers do not
weigh more; Iterative RPO, LLaMA-Factory, OpenRLHF) or `token_mean` (all chosen tokens of the batch averaged
together: TRL's "sft" loss term). Without the NLL term the chosen log-probs tend to fall along with the rejected.

When one optimizer step accumulates several packed rows, pass the step's totals as `n_pairs` / `n_chosen_tokens`
so that the summed row losses equal the loss of the whole step (no drift with packing or accumulation).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class DPONLLTerms:
    loss: torch.Tensor  # what to backpropagate
    dpo: torch.Tensor  # DPO part (same normalisation as loss)
    nll: torch.Tensor  # NLL part before alpha
    chosen_rewards: torch.Tensor  # beta * (pi_c - ref_c), per pair, detached
    rejected_rewards: torch.Tensor


def dpo_nll_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    chosen_tokens: torch.Tensor,
    *,
    beta: float = 0.1,
    alpha: float = 1.0,
    nll_norm: str = "per_example",
    n_pairs: int | None = None,
    n_chosen_tokens: int | None = None,
) -> DPONLLTerms:
    """All inputs are per pair, shape (P,). Denominators default to this batch's own pair and token counts."""
    n_pairs = n_pairs or policy_chosen.shape[0]
    logits = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    dpo = -F.logsigmoid(beta * logits).sum() / n_pairs
    if nll_norm == "per_example":
        nll = (-policy_chosen / chosen_tokens.clamp(min=1)).sum() / n_pairs
    elif nll_norm == "token_mean":
        n_chosen_tokens = n_chosen_tokens or int(chosen_tokens.sum())
        nll = -policy_chosen.sum() / max(n_chosen_tokens, 1)
    else:
        raise ValueError(f"nll_norm must be 'per_example' or 'token_mean', not {nll_norm!r}")
    return DPONLLTerms(
        loss=dpo + alpha * nll,
        dpo=dpo,
        nll=nll,
        chosen_rewards=(beta * (policy_chosen - ref_chosen)).detach(),
        rejected_rewards=(beta * (policy_rejected - ref_rejected)).detach(),
    )
