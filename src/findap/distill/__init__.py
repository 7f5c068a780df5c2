"""findap.distill: stage 2 data, preference pairs from the policy's own solutions.

prompts.py       reasoning prompts with gold answers (demo exercises, CFA-Easy, GSM8K, TAT-QA, any JSONL)
trajectories.py  the policy prompt, steps, answer extraction and the exact check
judges.py        GenORM / GenPRM judge prompts and parsers (first erroneous step + correction)
genorm.py        sampling N solutions and outcome labels (judge / check / both)
genprm.py        first-error correction and continuation of the corrected prefix
pairs.py         pair records and the pair policy
driver.py        batches of prompts, per-prompt appends, resume, stats
stage.py         `findap distill`
"""
