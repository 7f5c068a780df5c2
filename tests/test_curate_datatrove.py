"""The datatrove version of dedup + decontamination on real transcripts, with completion markers on rerun."""
from __future__ import annotations

import json

import pyarrow.parquet as pq

from findap.curate.config import DedupConfig
from findap.io import write_parquet
from findap.curate.datatrove_pipeline import run_local


def test_datatrove_dedup_and_decontam(shared_data, tmp_path):
    calls = sorted((shared_data / "ectsum/train/ects").glob("*.txt"))[:8]
    texts = [p.read_text(encoding="utf-8") for p in calls]
    words = texts[0].split()
    near = " ".join("CHANGED" if i % 100 == 0 else w for i, w in enumerate(words))
    val = sorted((shared_data / "ectsum/val/ects").glob("*.txt"))[0].read_text(encoding="utf-8")
    shards = tmp_path / "shards"
    shards.mkdir()
    rows = [{"id": f"call{i}", "text": t, "source": "ects"} for i, t in enumerate(texts)]
    rows += [{"id": "near", "text": near, "source": "copy"}, {"id": "planted", "text": "Intro. " + val, "source": "x"}]
    for shard in range(2):
        write_parquet(shards / f"{shard}.parquet", rows[shard::2])
    eval_file = tmp_path / "eval.json"
    eval_file.write_text(json.dumps({"ectsum_val": [val]}))

    out, work = tmp_path / "out", tmp_path / "work"
    run_local(shards, out, work, DedupConfig(), eval_file)
    kept = [r for f in sorted(out.glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    ids = {r["id"] for r in kept}
    assert ids == {f"call{i}" for i in range(8)}  # near-duplicate of call0 and the planted eval transcript removed
    assert all(r["source"] for r in kept)  # metadata survives the round trip
    completions = list((work / "logs").glob("stage*/completions/*"))
    assert len(completions) == 2 + 6 + 1 + 2  # tasks per stage: shards, buckets (threshold 0.8), 1, shards

    marker_times = {p: p.stat().st_mtime_ns for p in completions}
    run_local(shards, out, work, DedupConfig(), eval_file)  # rerun: every task already complete
    assert {p: p.stat().st_mtime_ns for p in completions} == marker_times
