"""findap.training: what both trainers (stage 1 `findap.train`, alignment `findap.align`) are built from.

optim.py       AdamW with no-decay groups, one warmup rule, the warmup-then-decay LR curve
lora.py        LoRA adapters from a config section's lora_* knobs
knobs.py       the config fields both sections share (same names), and the refusal of renamed ones
state.py       the typed training state saved in every checkpoint, and best-checkpoint selection
checkpoint.py  the checkpoint format: atomic ckpt-NNNNNN/ + LATEST, final Hugging Face model directories
parallel.py    one process, replicas or FSDP2 behind one interface (the loops hold no rank branches)
progress.py    rich progress bar + metrics records + TensorBoard
loop.py        the training loop of both stages (a stage supplies its loss and dev metrics as a TrainingTask)
"""
