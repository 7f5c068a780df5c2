"""curate.executor: ray on a real local Ray cluster (two worker CPUs, started here) writes exactly the files the
local executor writes, for the demo sources and the shared-data sources; a driver killed mid-run and a rerun give
the same files again (datatrove's completion markers skip the finished tasks)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from findap.curate.config import CurateConfig
from findap.curate.scorers import KeywordJudge

ray = pytest.importorskip("ray", reason="the Ray test needs `pip install -e .[scale]`")

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ["group1/train.parquet", "group1/dev.parquet", "group2/train.parquet", "group2/dev.parquet",
           "quality_scores.json"]


@pytest.fixture(scope="module")
def cluster():
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                       runtime_env={"env_vars": {"TQDM_DISABLE": "1"}})
    yield context.address_info["address"]
    ray.shutdown()


def demo_cfg(shared_data, **extra) -> dict:
    raw = yaml.safe_load((REPO / "recipes" / "demo.yaml").read_text())["curate"]
    return raw | {"data_root": str(shared_data)} | extra


def shared_cfg(shared_data, **extra) -> dict:
    return {"data_root": str(shared_data), "limit_per_source": 15,
            "judge": {"sample_size": 12}, "mixture": {"dev_min": 2}} | extra


def run(raw: dict, out: Path, model: str) -> dict:
    from findap.curate.curation import curate

    return curate(CurateConfig.model_validate(raw), out, model=model, seed=7, make_judge=KeywordJudge,
                  progress=False)


def same_files(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def local_runs(shared_data, tiny_model_dir, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """The local executor's outputs (one process, one task, default shards): what Ray must reproduce."""
    out = {}
    for name, make in (("demo", demo_cfg), ("shared", shared_cfg)):
        folder = tmp_path_factory.mktemp(f"local-{name}")
        out[name] = folder, run(make(shared_data), folder, tiny_model_dir)
    return out


@pytest.mark.parametrize("sources", ["demo", "shared"])
def test_ray_writes_the_local_executors_files(cluster, local_runs, sources, shared_data, tiny_model_dir,
                                              tmp_path):
    make = demo_cfg if sources == "demo" else shared_cfg
    local_dir, local = local_runs[sources]
    on_ray = run(make(shared_data, executor="ray", tasks=2, workers=2, shard_rows=40), tmp_path, tiny_model_dir)
    same_files(local_dir, tmp_path)
    assert on_ray["executor"] == "ray" and on_ray["groups"] == local["groups"]
    assert on_ray["filters"] == local["filters"]


def test_killed_ray_run_resumes_to_the_same_files(cluster, local_runs, shared_data, tiny_model_dir, tmp_path):
    raw = shared_cfg(shared_data, executor="ray", tasks=2, workers=2, shard_rows=40)
    script = ("import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[4]); "
              "from test_curate_ray import run; run(json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])")
    env = {**os.environ, "RAY_ADDRESS": cluster, "TQDM_DISABLE": "1"}
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(raw), str(out), tiny_model_dir,
                             str(REPO / "tests")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if list(out.glob("work/*/logs/annotate/completions/*")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(out.glob("work/*/logs/convert/completions/*")), "the run was killed before any step finished"
    assert not (out / "manifest.json").exists()
    run(raw, out, tiny_model_dir)  # the rerun: finished tasks are skipped
    same_files(out, local_runs["shared"][0])
