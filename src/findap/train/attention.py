"""Cross-document isolation for packed rows, one way per attention backend.

Every backend must give a packed row exactly the logits its documents would get one at a time:

* varlen (ours, any device): the micro-batch is one padding-free stream (1, T); a registered attention function
  runs causal SDPA on each document's slice. No T x T mask is built and no masked block is computed, which on CPU
  is the fastest correct choice (attention over a 2048 row of ~20 short documents costs ~1/20 of a dense mask).
  The same implementation serves padded batches (no cu_seq_lens: plain SDPA with its mask), so a model loaded
  for training can be scored or generate from without changing its attention implementation.
* sdpa / eager: a 4-D block-diagonal causal mask (bool for sdpa, additive float for eager).
* flex_attention: a BlockMask from a document mask_mod.
* flash_attention_2: padding-free stream with cu_seq_lens_q/k and max_length_q/k (GPU only; transformers imports
  flash_attn lazily when the model is loaded with it).
* position_ids: restarting position_ids with attention_mask=None and use_cache=False, from which transformers 5.x
  derives the document boundaries itself. Kept as a backend so the tests notice if a library release stops doing so.

Tests compare packed and per-document logits for every backend available, plus a negative control (a 2-D mask of
ones) that must leak.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from findap.train.packing import cu_seqlens

VARLEN = "findap_varlen"
FLAT_BACKENDS = ("varlen", "flash_attention_2")  # backends fed a padding-free (1, T) stream
_registered = False


def varlen_sdpa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers attention function: causal SDPA per document of a (1, T) stream, bounds from cu_seq_lens_q.

    Without cu_seq_lens_q the call is an ordinary padded batch (generation or scoring on the model being trained,
    e.g. FinEval checkpoint selection): it runs transformers' own SDPA attention with the mask `varlen_mask` built,
    so nobody has to switch the live model's attention implementation to score it.
    """
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if query.shape[0] != 1:
        raise ValueError("varlen attention needs a (1, T) stream with cu_seq_lens_q "
                         "(build the inputs with findap.train.attention.model_inputs)")
    bounds = bounds.tolist()
    lens = [e - s for s, e in zip(bounds[:-1], bounds[1:])]
    if key.shape[1] != query.shape[1]:
        # Grouped-query attention: repeat the key/value heads once for the whole stream. The CPU SDPA kernel's own
        # GQA path (enable_gqa) measured ~6% slower than plain heads on 2048-token documents.
        rep = query.shape[1] // key.shape[1]
        key, value = (x.repeat_interleave(rep, dim=1) for x in (key, value))
    # torch.split, not slicing: the backward of a slice zero-fills a full-size gradient per document (O(docs x T)
    # memory traffic per layer); split's backward is one concatenation.
    outs = [
        F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout, scale=scaling)
        for q, k, v in zip(query.split(lens, 2), key.split(lens, 2), value.split(lens, 2))
    ]
    out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
    return out.transpose(1, 2).contiguous(), None


def varlen_mask(*args, attention_mask=None, **kwargs):
    """Mask function for the varlen implementation: none for the packed training stream (the attention function
    splits it by document, so no T x T mask is ever built), SDPA's mask for a padded batch."""
    if attention_mask is None:
        return None  # packed stream, or an unpadded batch: causal SDPA needs no mask either
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register_varlen() -> None:
    """Register the varlen attention and mask functions with transformers."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(VARLEN, varlen_sdpa_attention)
        AttentionMaskInterface.register(VARLEN, varlen_mask)
        _registered = True


def hf_implementation(backend: str) -> str:
    """The `attn_implementation` name a model must use for a findap backend."""
    if backend == "varlen":
        register_varlen()
        return VARLEN
    if backend == "position_ids":
        return "sdpa"
    return backend


def resolve_backend(backend: str, device: torch.device, precision: str = "auto") -> str:
    """The backend `backend` means on `device` at `precision` ("auto": flash_attention_2 where it can run).

    flash-attn kernels take only fp16/bf16 inputs. transformers casts fp32 queries to the autocast dtype, or, with
    no autocast, to the dtype of the model's Linear weights (integrations/flash_attention.py `get_target_dtype`),
    which are our fp32 master weights: so without a half-precision autocast the first forward would fail inside
    flash_attn ("FlashAttention only support fp16 and bf16 data type"). "auto" therefore picks flash only on CUDA
    with a half-precision autocast, and an explicit flash_attention_2 without one is refused here, before loading.
    """
    from findap.models import autocast_dtype

    half = device.type == "cuda" and autocast_dtype(device, precision, training=True) in (torch.bfloat16,
                                                                                         torch.float16)
    if backend == "flash_attention_2" and not half:
        raise ValueError(f"attention=flash_attention_2 needs a CUDA device and bf16/fp16 autocast "
                         f"(device={device}, precision={precision}); use attention: auto or varlen")
    if backend != "auto":
        return backend
    if half:
        import importlib.util

        if importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
    return "varlen"


def document_ids(doc_lens: list[list[int]], seq_len: int) -> torch.Tensor:
    """(R, seq_len) index of the document each token belongs to (unique per row)."""
    rows = []
    for lens in doc_lens:
        ids = torch.repeat_interleave(torch.arange(len(lens)), torch.tensor(lens))
        rows.append(ids[:seq_len])
    return torch.stack(rows)


def document_attention_mask(doc_lens: list[list[int]], seq_len: int, *, dtype=torch.bool) -> torch.Tensor:
    """(R, 1, L, L) block-diagonal causal mask: True (or 0.0) where a token may attend, False (or -inf) elsewhere."""
    doc = document_ids(doc_lens, seq_len)
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool).tril()
    allowed = (doc[:, :, None] == doc[:, None, :]) & causal
    allowed = allowed[:, None]
    if dtype == torch.bool:
        return allowed
    out = torch.zeros(allowed.shape, dtype=dtype)
    return out.masked_fill_(~allowed, torch.finfo(dtype).min)


def document_block_mask(doc_lens: list[list[int]], seq_len: int, device="cpu"):
    """flex_attention BlockMask: causal within a document, nothing across documents."""
    from torch.nn.attention.flex_attention import create_block_mask

    doc = document_ids(doc_lens, seq_len).to(device)

    def same_document_causal(b, h, q, kv):
        return (doc[b, q] == doc[b, kv]) & (q >= kv)

    return create_block_mask(same_document_causal, B=doc.shape[0], H=None, Q_LEN=seq_len, KV_LEN=seq_len,
                             device=str(device))


def model_inputs(batch: dict, backend: str, device) -> dict:
    """Keyword arguments for `model(**kwargs)` (or its decoder) that isolate the documents of `batch`."""
    ids = batch["input_ids"].to(device)
    pos = batch["position_ids"].to(device)
    kw = {"input_ids": ids, "position_ids": pos, "use_cache": False}
    seq_len = ids.shape[1]
    if backend in FLAT_BACKENDS:
        if ids.shape[0] != 1:
            raise ValueError(f"backend {backend} needs a padding-free (1, T) batch (packing.collate_flat)")
        # Names, dtype and device as transformers' flash path reads them (modeling_flash_attention_utils.py
        # `_flash_attention_forward`: cu_seq_lens_q/k + max_length_q/k, all non-None, select the padding-free
        # varlen branch; flash_attn's varlen kernel requires int32 cu_seqlens on the query's device). position_ids
        # still restart per document: RoPE reads them. max length from the Python lists: no device sync.
        cu = cu_seqlens(batch["doc_lens"], device)
        longest = max(n for row in batch["doc_lens"] for n in row)
        kw.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest, max_length_k=longest)
        if backend == "flash_attention_2":
            kw["attention_mask"] = None
    elif backend == "sdpa":
        kw["attention_mask"] = document_attention_mask(batch["doc_lens"], seq_len).to(device)
    elif backend == "eager":
        kw["attention_mask"] = document_attention_mask(batch["doc_lens"], seq_len, dtype=torch.float32).to(device)
    elif backend == "flex_attention":
        kw["attention_mask"] = document_block_mask(batch["doc_lens"], seq_len, device)
    elif backend == "position_ids":
        kw["attention_mask"] = None
    else:
        raise ValueError(f"unknown attention backend {backend!r}")
    return kw
