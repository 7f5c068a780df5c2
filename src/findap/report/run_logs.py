"""What run directories say besides results: each stage's cost (wall time, tokens, peak memory), the training
loss curves, and the curate stage's decontamination note.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from findap.io import DataError, read_jsonl_tolerant


TOKEN_KEYS = ("tokens", "train_tokens", "tokens_seen", "trained_tokens", "n_tokens", "total_tokens",
              "generated_tokens")
LOSS_KEYS = ("loss", "train_loss")
DEV_LOSS_KEYS = ("dev_loss", "eval_loss", "val_loss")


@dataclass
class StageCost:
    run: str
    stage: str
    done: bool
    wall_s: float | None
    tokens: float | None
    peak_rss_gb: float | None = None  # the stage process's VmHWM, or its launcher's workers' when larger

    @property
    def tokens_per_s(self) -> float | None:
        if self.tokens is None or not self.wall_s:
            return None
        return self.tokens / self.wall_s


def _stage_dirs(inputs: Iterable[str | Path]) -> list[Path]:
    """Stage directories of every run under `inputs`: a directory holding DONE or metrics.jsonl."""
    seen, out = set(), []
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            continue
        for marker in sorted([*p.rglob("DONE"), *p.rglob("metrics.jsonl")]):
            d = marker.parent
            if d not in seen:
                seen.add(d)
                out.append(d)
    # a stage's own sub-phases (train/groups/group1/DONE) belong to that stage's row, not rows of their own
    return sorted(d for d in out if not any(a in seen for a in d.parents))


def _read_json_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(path, err.lineno, None, f"invalid JSON: {err.msg}") from None
    if not isinstance(data, dict):
        raise DataError(path, None, None, "expected a JSON object (a stage summary)")
    return data


def _number(record: dict, keys: Sequence[str]) -> float | None:
    for k in keys:
        v = record.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def stage_costs(inputs: Iterable[str | Path]) -> list[StageCost]:
    """Wall time and tokens per stage (the DONE summary first, then the last metrics.jsonl record) and its peak
    resident memory from DONE (findap.host_memory.peak_memory: the larger of its own and its workers' peak)."""
    costs = []
    for d in _stage_dirs(inputs):
        done = _read_json_file(d / "DONE") if (d / "DONE").exists() else {}
        metrics = read_jsonl_tolerant(d / "metrics.jsonl")
        last = metrics[-1] if metrics else {}
        wall = _number(done, ("wall_s", "wall_time_s", "elapsed_s")) or _number(last, ("time", "wall_s"))
        # A resumed stage's wall_s counts its killed processes only up to their last metrics record (findap.runs;
        # older DONE files count only the last process), so its training time summed over every process
        # (train_wall_s, kept in the checkpoints) can be longer; its tokens were processed over all of that, and
        # tokens / wall_s would overstate the speed.
        resumed = _number(done, ("train_wall_s",))
        if resumed is not None and (wall is None or resumed > wall):
            wall = resumed
        tokens = _number(done, TOKEN_KEYS)
        if tokens is None:
            tokens = _number(last, TOKEN_KEYS)
        peaks = [p for p in (_number(done, ("peak_rss_gb",)), _number(done, ("peak_rss_children_gb",)))
                 if p is not None]
        costs.append(StageCost(run=d.parent.name, stage=d.name, done=bool(done), wall_s=wall, tokens=tokens,
                               peak_rss_gb=max(peaks) if peaks else None))
    return costs


@dataclass
class LossCurve:
    """One stage's losses in one curriculum phase (a train group; None for a stage that logs no `phase`).

    Steps run on across the stage's phases: the train loop counts each group's optimizer steps from 1, so group2's
    step 1 is drawn after group1's last step (`offset` = the running step at which this phase starts) instead of
    jumping back to the start of the axis.
    """

    run: str
    stage: str
    steps: list[float]
    loss: list[float]
    dev_steps: list[float]
    dev_loss: list[float]
    phase: str | None = None
    offset: float = 0.0


def _row_step(row: dict, index: int) -> float:
    step = _number(row, ("step", "global_step", "optimizer_step"))
    return float(index) if step is None else step


def stage_loss_curves(run: str, stage: str, rows: list[dict]) -> list[LossCurve]:
    """A stage's metrics.jsonl rows as one curve per phase, in the order the phases first appear."""
    by_phase: dict[str | None, LossCurve] = {}
    last_step = 0.0  # the largest running step so far: where a phase that starts now continues the axis
    for i, row in enumerate(rows):
        phase = row.get("phase") if isinstance(row.get("phase"), str) else None
        if phase not in by_phase:
            by_phase[phase] = LossCurve(run, stage, [], [], [], [], phase=phase, offset=last_step if by_phase else 0.0)
        curve = by_phase[phase]
        step = curve.offset + _row_step(row, i)
        last_step = max(last_step, step)
        if (v := _number(row, LOSS_KEYS)) is not None:
            curve.steps.append(step)
            curve.loss.append(v)
        if (v := _number(row, DEV_LOSS_KEYS)) is not None:
            curve.dev_steps.append(step)
            curve.dev_loss.append(v)
    return [c for c in by_phase.values() if c.loss or c.dev_loss]


def loss_curves(inputs: Iterable[str | Path]) -> list[LossCurve]:
    """Training (and development) loss against step from every stage's metrics.jsonl that logs a loss, one curve
    per stage and curriculum phase."""
    curves = []
    for d in _stage_dirs(inputs):
        curves += stage_loss_curves(d.parent.name, d.name, read_jsonl_tolerant(d / "metrics.jsonl"))
    return curves


@dataclass
class CurationNote:
    """What a run's curate stage says about decontamination (its DONE summary's `decontamination.note`)."""

    run: str
    note: str


def curation_notes(inputs: Iterable[str | Path]) -> list[CurationNote]:
    notes = []
    for d in _stage_dirs(inputs):
        if d.name != "curate" or not (d / "DONE").exists():
            continue
        decontamination = _read_json_file(d / "DONE").get("decontamination")
        note = decontamination.get("note") if isinstance(decontamination, dict) else None
        if isinstance(note, str) and note.strip():
            notes.append(CurationNote(run=d.parent.name, note=note.strip()))
    return notes
