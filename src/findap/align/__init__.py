"""findap.align: stage 2 training, DPO + NLL on preference pairs (Iterative RPO).

encode.py     pairs -> token ids (chat template, common-prefix split)
packing.py    pairs -> packed rows, prompt shared by both responses, 4-D cross-document mask
logprobs.py   response log-probs through the LM head chunk by chunk (hand-written backward)
loss.py       DPO(beta) + alpha * NLL(chosen), per-example or token-mean NLL
reference.py  reference log-probs, one pass before training, cached under a key of their inputs
schedule.py   token-budget steps
loop.py       the training loop with dev-loss selection (optimizer, schedule, state, checkpoints,
              progress: findap.training)
stage.py      `findap align`
"""
