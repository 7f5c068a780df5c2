"""The embedded 135M model: our packed multiple-choice scores equal lm-evaluation-harness's on real ARC-Easy items."""
import json
import re
from pathlib import Path

import pytest
import torch

from findap.engines import EngineSpec, LoglikelihoodRequest, make_engine
from findap.models import resolve_model


@pytest.fixture(autouse=True)
def one_torch_thread():
    # On the busy shared machine OpenMP workers waiting for each other cost more than a second thread gains.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def arc_requests(shared_data, n):
    rows = json.loads((shared_data / "general" / "ARC-Easy" / "test.json").read_text())[:n]
    pairs = []
    for row in rows:
        text = row["instruction"]
        question = re.search(r"question:\s*(.*?)\n\s*\nAnswer1:", text, re.S).group(1).strip()
        options = re.findall(r"Answer\d+:\s*(.*?)(?=\s*Answer\d+:|\s*$)", text.split("\n\n")[1], re.S)
        pairs += [(f"Question: {question}\nAnswer:", f" {o.strip()}") for o in options]
    return pairs


def plain_copy(model_dir, tmp_path):
    """lm-eval refuses a config that still names the GGUF the embedded model was converted from."""
    config = json.loads((model_dir / "config.json").read_text())
    config.pop("quantization_config", None)
    for f in model_dir.iterdir():
        if f.name != "config.json":
            (tmp_path / f.name).symlink_to(f.resolve())
    (tmp_path / "config.json").write_text(json.dumps(config))
    return str(tmp_path)


@pytest.mark.slow
def test_real_model_scores_equal_lm_eval(shared_data, tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval is in the bench extra")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    model_dir = plain_copy(Path(resolve_model("smollm2-135m-instruct")), tmp_path)
    pairs = arc_requests(shared_data, 6)
    ours = make_engine(EngineSpec(model=model_dir, precision="fp32", batch_size=4)).loglikelihood(
        [LoglikelihoodRequest(c, x) for c, x in pairs], progress=False
    )
    peer = HFLM(pretrained=model_dir, dtype="float32", batch_size=4, device="cpu")
    theirs = peer.loglikelihood([Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)], disable_tqdm=True)
    assert len(ours) == len(theirs) == len(pairs) > 20
    for mine, (lp, greedy) in zip(ours, theirs):
        assert mine.logprob == pytest.approx(lp, abs=5e-4)
        assert mine.is_greedy == greedy
