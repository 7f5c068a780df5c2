"""A task group that names hub-only tasks still evaluates its local tasks offline; the others are reported."""

from findap.engines import make_engine
from findap.engines.base import EngineSpec
from findap.eval.runner import evaluate


def test_hub_only_tasks_are_skipped_offline_and_reported(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # what a machine without the hub sees, without waiting on DNS
    engine = make_engine(EngineSpec(kind="hf", model=tiny_model_dir, precision="fp32"))
    out = evaluate(engine, ["fpb", "fiqa_sa"], limit=2, out_dir=tmp_path, progress=False)
    assert set(out["results"]) == {"fpb"}
    assert "fiqa_sa" in out["skipped"] and "FinEval" in out["skipped"]["fiqa_sa"]
    assert not (tmp_path / "fiqa_sa.direct.json").exists()
