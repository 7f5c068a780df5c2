"""`findap align`: DPO + NLL on the distilled preference pairs, from the CPT+IT checkpoint.

Inputs: `ctx.inputs["model"]` (policy; default the train stage's model) and `ctx.inputs["pairs"]` (the distill
stage directory, or a pairs JSONL). Outputs in the stage directory: `model/` (the best-dev model, a Hugging Face
directory), `ref_logps.json` (keyed: findap.align.reference), `checkpoint/` (resume state: findap.training's
`ckpt-NNNNNN/` + LATEST), `metrics.jsonl`, `tensorboard/`.
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from findap.align.config import AlignConfig
from findap.align.encode import TokenizedPair, tokenize_pair
from findap.align.loop import align_trainer, summarize
from findap.align.reference import cached_reference_logprobs, reference_key
from findap.io import DataError, read_records
from findap.models import describe_precision, load_model, load_tokenizer, pick_device
from findap.training import parallel as parallel_layouts
from findap.training.lora import apply_lora

PAIR_FIELDS = ("id", "prompt", "chosen", "rejected")


def resolve_pair_files(cfg: AlignConfig, pairs_input) -> tuple[Path, Path | None]:
    """(train pairs, dev pairs or None) from the config, else from the distill stage directory."""
    if cfg.pairs:
        train_path = Path(cfg.pairs)
    elif pairs_input is not None and Path(pairs_input).is_dir():
        train_path = Path(pairs_input) / "pairs.jsonl"
    elif pairs_input is not None:
        train_path = Path(pairs_input)
    else:
        raise ValueError("align: no preference pairs; set align.pairs or run the distill stage first")
    dev_path = Path(cfg.dev_pairs) if cfg.dev_pairs else train_path.with_name("dev_pairs.jsonl")
    return train_path, (dev_path if dev_path.exists() else None)


def load_pairs(path: Path) -> list[dict]:
    rows = read_records(path, required=PAIR_FIELDS)
    for i, row in enumerate(rows, start=1):
        for side in ("chosen", "rejected"):
            if not isinstance(row[side], str) or not row[side].strip():
                raise DataError(path, i, side, "must be a non-empty string")
        if not isinstance(row["prompt"], (str, list)):
            raise DataError(path, i, "prompt", "must be a list of chat messages or a string")
    return rows


def encode_all(tokenizer, rows: list[dict], max_length: int) -> tuple[list[TokenizedPair], int]:
    encoded = [tokenize_pair(tokenizer, row, max_length) for row in rows]
    kept = [p for p in encoded if p is not None]
    return kept, len(encoded) - len(kept)


def split_dev(pairs: list[TokenizedPair], fraction: float, seed: int):
    """Hold out a seeded share of the PROMPTS, with all their pairs, for dev loss when distill wrote no dev file
    (at least one prompt when there are two or more): a prompt's pairs never sit on both sides."""
    by_prompt: dict[tuple, list[TokenizedPair]] = {}
    for pair in pairs:
        by_prompt.setdefault(tuple(pair.prompt_ids), []).append(pair)
    prompts = list(by_prompt)
    if fraction <= 0 or len(prompts) < 2:
        return pairs, []
    random.Random(seed).shuffle(prompts)
    dev_prompts = set(prompts[:max(1, round(len(prompts) * fraction))])
    return ([p for p in pairs if tuple(p.prompt_ids) not in dev_prompts],
            [p for p in pairs if tuple(p.prompt_ids) in dev_prompts])


def drop_stale_gguf_marker(model):
    """Clear a leftover GGUF `quantization_config` from a model whose weights are plain fp32.

    The embedded SmolLM2 is converted from a GGUF file and its cached config still names the GGUF quantizer
    (reported to the models owner); transformers then refuses `save_pretrained` ("quantized with gguf and not
    serializable") and Trainer refuses to train it, although the weights are already dequantised. Only a GGUF
    marker is cleared: any other quantization is real and left alone.
    """
    qc = getattr(model.config, "quantization_config", None)
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    if qc is not None and str(getattr(method, "value", method)) == "gguf":
        del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False
    return model


def reference_logps(ctx, model_name: str, tokenizer, model, pairs: list[TokenizedPair], cfg: AlignConfig,
                    precision: str, parallel) -> dict[str, tuple[float, float]]:
    """The frozen reference's log-probs of every pair (cached under a key of their inputs): rank 0 computes and
    writes them, the other ranks read its file, so every rank trains against the same numbers."""
    settings = dict(row_tokens=cfg.row_tokens, share_prompt=cfg.share_prompt, chunk=cfg.loss_chunk_tokens,
                    precision=precision)
    key = reference_key(model_name, tokenizer, pairs, max_length=cfg.max_length, **settings)
    ref = parallel.on_main(cached_reference_logprobs, ctx.path("ref_logps.json"), key, model, pairs, **settings)
    parallel.barrier()
    return ref if ref is not None else cached_reference_logprobs(ctx.path("ref_logps.json"), key, model, pairs,
                                                                 **settings)


def run(recipe, ctx) -> dict:
    cfg: AlignConfig = recipe.align
    seed = cfg.seed if cfg.seed is not None else recipe.seed
    model_name = cfg.model or str(ctx.inputs.get("model") or recipe.model)
    train_path, dev_path = resolve_pair_files(cfg, ctx.inputs.get("pairs"))
    log = ctx.logger()
    tokenizer = load_tokenizer(model_name)
    train_pairs, dropped = encode_all(tokenizer, load_pairs(train_path), cfg.max_length)
    if dev_path is not None:
        dev_pairs, dev_dropped = encode_all(tokenizer, load_pairs(dev_path), cfg.max_length)
        dropped += dev_dropped
    else:
        train_pairs, dev_pairs = split_dev(train_pairs, cfg.dev_fraction, seed)
    if not train_pairs:
        raise ValueError(f"align: {train_path} has no usable pairs ({dropped} dropped: prompt over max_length)")
    log.info("align: %d train pairs, %d dev pairs, %d dropped, policy %s", len(train_pairs), len(dev_pairs),
             dropped, model_name)

    # the process layout first (it picks this rank's GPU): FSDP2 for full fine-tuning over several processes,
    # replicas for LoRA, one process otherwise (findap.training.parallel)
    parallel = parallel_layouts.start("auto", cfg.finetune)
    device = parallel.device(pick_device(recipe.device))
    log.info("align: precision %s", describe_precision(device, recipe.precision, training=True))
    torch.manual_seed(seed)  # LoRA initialisation and dropout: a rerun (or a resumed run) repeats the same run
    model = drop_stale_gguf_marker(load_model(model_name, device=device))
    ref = reference_logps(ctx, model_name, tokenizer, model, train_pairs + dev_pairs, cfg, recipe.precision,
                          parallel)
    if cfg.finetune == "lora":
        model = apply_lora(model, cfg)
    model = parallel.wrap(model, device=device, precision=recipe.precision)
    trainer = align_trainer(
        model, train_pairs, dev_pairs, ref, cfg, seed=seed, precision=recipe.precision,
        checkpoint_dir=ctx.path("checkpoint"),
        save_best=lambda m: parallel.save_model_dir(m, tokenizer, ctx.path("model")),
        log=ctx.log_metrics, parallel=parallel,
    )
    summary = summarize(trainer.fit(), train_pairs, dev_pairs)
    return {**summary, "dropped_pairs": dropped, "model": str(ctx.path("model")), "policy": model_name}
