"""findap.align: stage 2 training, DPO + NLL on preference pairs (Iterative RPO).

encode.py     pairs -> token ids (chat template, common-prefix split)
packing.py    pairs -> packed rows, prompt shared by both responses, 4-D cross-document mask
logprobs.py   response log-probs through the LM head chunk by chunk (hand-written backward)
loss.py       DPO(beta) + alpha * NLL(chosen), per-example or token-mean NLL
reference.py  reference log-probs, one pass before training, cached under a key of their inputs
schedule.py   token-budget steps
loop.py       alignment's task for the shared loop (findap.training.loop): the DPO+NLL loss of a packed row,
              dev metrics, step-0 evaluation
stage.py      `findap align`
"""
