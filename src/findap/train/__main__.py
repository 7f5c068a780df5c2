"""`python -m findap.train --model M --config train.yaml --out DIR`: stage 1 without a full recipe or run dir.

The YAML holds a `train:` recipe section (TrainConfig fields). Useful for scripts, benchmarks and the
kill-and-resume test; `findap train RECIPE` is the normal entry point.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from findap.io import append_jsonl
from findap.train.config import TrainConfig
from findap.train.stage import train_model


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m findap.train", description=__doc__)
    ap.add_argument("--model", required=True, help="findap model name, hub id or model directory")
    ap.add_argument("--config", required=True, type=Path, help="YAML with TrainConfig fields (or a train: section)")
    ap.add_argument("--out", required=True, type=Path, help="stage directory (checkpoints, metrics, model/)")
    ap.add_argument("--data", type=Path, default=None, help="curate directory holding <group>/train.parquet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args(argv)
    raw = yaml.safe_load(args.config.read_text()) or {}
    cfg = TrainConfig.model_validate(raw.get("train", raw))
    args.out.mkdir(parents=True, exist_ok=True)
    summary = train_model(args.model, cfg, args.out, data_dir=args.data, seed=args.seed, device=args.device,
                          precision=args.precision, log=lambda r: append_jsonl(args.out / "metrics.jsonl", r))
    print(json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main()
