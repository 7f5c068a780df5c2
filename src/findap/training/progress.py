"""Progress and metrics of a training run: one record per optimizer step and per evaluation.

Records go to the caller's `log` (the stage's metrics.jsonl), to TensorBoard (`<out>/tensorboard`, when enabled
and installed) and drive a rich progress bar with the loss and tokens/s. Only the writing process
(`parallel.is_main`) shows or writes anything; the others get a log that drops everything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable


class TrainingLog:
    def __init__(self, name: str, *, total: int, done: int, log: Callable[[dict], None] | None, writes: bool,
                 progress: bool = True, tensorboard_dir: Path | None = None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.name, self.writes = name, writes
        self.log = log if (log is not None and writes) else (lambda record: None)
        self.writer = _tensorboard(tensorboard_dir) if writes and tensorboard_dir is not None else None
        self.bar = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tps]:.0f} tok/s"),
                            TimeRemainingColumn(), disable=not (progress and writes), transient=False)
        self.task = self.bar.add_task(name, total=total, completed=done, loss=float("nan"), tps=0.0)

    def __enter__(self) -> "TrainingLog":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        self.bar.__exit__(*exc)
        if self.writer is not None:
            self.writer.close()
        return False

    def record(self, record: dict, *, scalars_prefix: str | None = None) -> None:
        """Log `record`; its numbers (other than `step`) also as TensorBoard scalars at record["step"]."""
        self.log(record)
        if self.writer is None:
            return
        prefix = scalars_prefix or self.name
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "step":
                self.writer.add_scalar(f"{prefix}/{key}", value, record["step"])

    def advance(self, step: int, loss: float, tokens_per_s: float) -> None:
        self.bar.update(self.task, completed=step, loss=loss, tps=tokens_per_s)


def _tensorboard(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(log_dir))
