"""Pack preference pairs into rows for one forward pass, with cross-document masking.

With `share_prompt=True` a pair is one block: the prompt once, then the chosen response, then the rejected one.
Both responses continue the prompt (their positions restart where the prompt ends), and the rejected tokens never
see the chosen ones. For a prompt P=p1 p2, chosen C=c1 c2, rejected R=r1 r2 (x = may attend):

          p1 p2 c1 c2 r1 r2        position_ids: 0 1 2 3 2 3
      p1  x                        targets: c1 <- p2, c2 <- c1, r1 <- p2, r2 <- r1
      p2  x  x
      c1  x  x  x
      c2  x  x  x  x
      r1  x  x        x
      r2  x  x        x  x

The prompt is computed once instead of twice. With `share_prompt=False` a pair is two documents (P+C, P+R), the
stage-1 layout. Blocks from different pairs never attend to each other (block-diagonal mask). Because the token
that predicts r1 is not the one just before it, targets are given as (source position, target id) lists rather
than a shifted label row; that is also what lets us project only the response positions through the LM head.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from findap.align.encode import TokenizedPair


@dataclass
class PackedRow:
    input_ids: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    # Attention rule per block: (start, length, rejected_start, rejected_end, chosen_start, chosen_end) in row
    # coordinates; rejected tokens may not attend to the chosen span. Empty spans for plain documents.
    blocks: list[tuple[int, int, int, int, int, int]] = field(default_factory=list)
    sources: list[int] = field(default_factory=list)  # row position whose hidden state predicts the target
    targets: list[int] = field(default_factory=list)  # target token id
    seq_index: list[int] = field(default_factory=list)  # 2*k: chosen of local pair k, 2*k+1: its rejected
    pair_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)

    def _add_targets(self, first_source: int, span_start: int, ids: list[int], seq: int) -> None:
        # The first response token is predicted from the prompt's last token; the others from their predecessor.
        self.sources += [first_source] + list(range(span_start, span_start + len(ids) - 1))
        self.targets += ids
        self.seq_index += [seq] * len(ids)

    def add(self, pair: TokenizedPair, share_prompt: bool) -> None:
        k = len(self.pair_ids)
        self.pair_ids.append(pair.id)
        p, c, r = pair.prompt_ids, pair.chosen_ids, pair.rejected_ids
        o = len(self.input_ids)
        if share_prompt:
            self.input_ids += p + c + r
            self.position_ids += list(range(len(p) + len(c))) + list(range(len(p), len(p) + len(r)))
            c0, r0 = o + len(p), o + len(p) + len(c)
            self.blocks.append((o, len(p) + len(c) + len(r), r0, r0 + len(r), c0, c0 + len(c)))
            self._add_targets(c0 - 1, c0, c, 2 * k)
            self._add_targets(c0 - 1, r0, r, 2 * k + 1)
            return
        for seq, resp in ((2 * k, c), (2 * k + 1, r)):
            o = len(self.input_ids)
            self.input_ids += p + resp
            self.position_ids += list(range(len(p) + len(resp)))
            self.blocks.append((o, len(p) + len(resp), 0, 0, 0, 0))
            self._add_targets(o + len(p) - 1, o + len(p), resp, seq)


def pair_length(pair: TokenizedPair, share_prompt: bool) -> int:
    return pair.n_tokens_shared if share_prompt else pair.n_tokens_separate


def pack_pairs(pairs: list[TokenizedPair], row_tokens: int, share_prompt: bool = True) -> list[PackedRow]:
    """First-fit-decreasing bin packing of pairs into rows of at most `row_tokens` tokens.

    A pair longer than `row_tokens` gets a row of its own (never split: both responses need the whole prompt).
    """
    order = sorted(pairs, key=lambda t: -pair_length(t, share_prompt))
    rows: list[PackedRow] = []
    for pair in order:
        n = pair_length(pair, share_prompt)
        home = next((row for row in rows if len(row) + n <= row_tokens), None)
        if home is None:
            home = PackedRow()
            rows.append(home)
        home.add(pair, share_prompt)
    return rows


def attention_mask(row: PackedRow, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The (1, 1, L, L) mask of a row: True (or 0.0) where a query may attend to a key.

    A bool mask suits sdpa; eager attention adds the mask to the scores, so pass a float dtype there.
    """
    n = len(row)
    allowed = torch.zeros(n, n, dtype=torch.bool)
    for start, length, r0, r1, c0, c1 in row.blocks:
        end = start + length
        allowed[start:end, start:end] = torch.ones(length, length, dtype=torch.bool).tril()
        if r1 > r0:
            allowed[r0:r1, c0:c1] = False
    allowed = allowed[None, None]
    if dtype is None or dtype == torch.bool:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


def row_tensors(row: PackedRow, device: torch.device) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.tensor([row.input_ids], device=device),
        "position_ids": torch.tensor([row.position_ids], device=device),
        "sources": torch.tensor(row.sources, device=device),
        "targets": torch.tensor(row.targets, device=device),
        "seq_index": torch.tensor(row.seq_index, device=device),
    }
