"""Run directories: `runs/<run-name>/<stage>/` with config, log, metrics, outputs and a DONE marker.

A stage is finished exactly when its DONE file exists. DONE is written last and atomically (temp file +
os.replace), so a killed stage never looks finished and `findap run` re-enters it; the stage itself resumes
from whatever checkpoints it left inside its directory. DONE records the stage's wall time and peak memory; the
wall time of a resumed stage adds its killed processes' (each up to its last metrics record, kept in ELAPSED).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from findap.host_memory import peak_memory
from findap.io import append_jsonl, write_json, write_text

DONE = "DONE"
ELAPSED = "elapsed.json"  # wall time of this stage's earlier processes, and how many there were
NO_EARLIER = {"wall_s": 0.0, "processes": 0}  # ELAPSED of a stage's first process


@dataclass
class StageContext:
    """What a stage gets: where to write, where earlier stages wrote, and how to log."""

    run_dir: Path
    name: str
    inputs: dict[str, Path] = field(default_factory=dict)  # e.g. {"curate": runs/x/curate, "model": .../model}
    started: float = field(default_factory=time.time)
    earlier: dict[str, float] = field(default_factory=lambda: dict(NO_EARLIER))

    def begin(self) -> None:
        """Start this process's clock, after any clearing of the stage's outputs: a stage resumed after a kill
        counts its earlier processes' time as well (ELAPSED), a cleared one starts from zero."""
        p = self.run_dir / self.name / ELAPSED
        self.earlier = json.loads(p.read_text()) if p.exists() else dict(NO_EARLIER)
        self.started = time.time()

    def elapsed(self) -> dict[str, float]:
        """Wall seconds over every process of this stage so far, and the number of processes."""
        return {"wall_s": round(self.earlier["wall_s"] + time.time() - self.started, 2),
                "processes": int(self.earlier["processes"]) + 1}

    @property
    def dir(self) -> Path:
        d = self.run_dir / self.name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def path(self, *parts: str) -> Path:
        p = self.dir.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def log_metrics(self, record: dict[str, Any]) -> None:
        append_jsonl(self.dir / "metrics.jsonl", {"time": round(time.time() - self.started, 3), **record})
        write_json(self.dir / ELAPSED, self.elapsed())  # what a kill from here on would leave counted

    def logger(self) -> logging.Logger:
        log = logging.getLogger(f"findap.{self.run_dir.name}.{self.name}")
        if not any(isinstance(h, logging.FileHandler) for h in log.handlers):
            handler = logging.FileHandler(self.dir / "log.txt")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
        return log

    def save_config(self, config: dict[str, Any]) -> None:
        import yaml

        write_text(self.dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def is_done(self) -> bool:
        return is_done(self.run_dir / self.name)

    def mark_done(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Write DONE with the stage's summary, its wall time over every process (`processes` when it was resumed)
        and its process's peak memory (`peak_rss_gb`, and
        `peak_gpu_gb` on CUDA; see host_memory.peak_memory). Under `findap run` every stage has its own process,
        so the peak is the stage's own."""
        from findap.allocator import active

        # the allocator changes speed and peak memory (findap.allocator), so it is recorded beside them
        elapsed = self.elapsed()
        summary = {"stage": self.name, "wall_s": elapsed["wall_s"], **peak_memory(), "allocator": active(),
                   **({"processes": elapsed["processes"]} if elapsed["processes"] > 1 else {}), **summary}
        mark_done(self.run_dir / self.name, summary)
        return summary


def is_done(stage_dir: Path) -> bool:
    return (Path(stage_dir) / DONE).exists()


def mark_done(stage_dir: Path, summary: dict[str, Any]) -> None:
    write_json(Path(stage_dir) / DONE, summary)


def read_done(stage_dir: Path) -> dict[str, Any] | None:
    p = Path(stage_dir) / DONE
    return json.loads(p.read_text()) if p.exists() else None
