"""The embedded 135M model: our packed multiple-choice scores equal lm-evaluation-harness's on real ARC-Easy items."""
import json
import re

import pytest

from findap.engines import EngineSpec, LoglikelihoodRequest, make_engine
from findap.models import resolve_model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def arc_requests(shared_data, n):
    rows = json.loads((shared_data / "general" / "ARC-Easy" / "test.json").read_text())[:n]
    pairs = []
    for row in rows:
        text = row["instruction"]
        question = re.search(r"question:\s*(.*?)\n\s*\nAnswer1:", text, re.S).group(1).strip()
        options = re.findall(r"Answer\d+:\s*(.*?)(?=\s*Answer\d+:|\s*$)", text.split("\n\n")[1], re.S)
        pairs += [(f"Question: {question}\nAnswer:", f" {o.strip()}") for o in options]
    return pairs


@pytest.mark.slow
def test_real_model_scores_equal_lm_eval(shared_data, tmp_path):
    pytest.importorskip("lm_eval", reason="lm-eval is in the bench extra")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM
    # the converted embedded model is a plain HF directory: a peer tool loads it as it is
    model_dir = resolve_model("smollm2-135m-instruct")
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
