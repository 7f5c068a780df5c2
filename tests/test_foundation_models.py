"""Model loading: the tiny test model, local directories, the embedded SmolLM2 (slow), precision choice."""
import pytest
import torch

from findap.models import (
    EMBEDDED_MODEL,
    autocast_dtype,
    load_model,
    load_tokenizer,
    model_label,
    pick_device,
    resolve_model,
    tiny_llama,
)


def test_tiny_llama_uses_real_tokenizer_and_is_deterministic():
    m1, tok = tiny_llama(seed=3)
    m2, _ = tiny_llama(seed=3)
    assert tok.chat_template and "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    ids = tok("The bond yield rose.", return_tensors="pt").input_ids
    assert torch.equal(m1(ids).logits, m2(ids).logits)
    assert m1.config.vocab_size == len(tok)


def test_local_directory_roundtrip(tiny_model_dir):
    model = load_model(tiny_model_dir)
    tok = load_tokenizer(tiny_model_dir)
    ref, _ = tiny_llama(seed=0)
    ids = tok("Net income fell 3%.", return_tensors="pt").input_ids
    assert torch.allclose(model(ids).logits, ref(ids).logits, atol=1e-6)
    assert resolve_model(tiny_model_dir) == tiny_model_dir


def test_precision_choice():
    assert autocast_dtype(torch.device("cpu"), "fp32") is None
    assert autocast_dtype(torch.device("cpu"), "bf16") is torch.bfloat16
    with pytest.raises(ValueError):
        autocast_dtype(torch.device("cpu"), "int3")
    assert pick_device("auto").type in ("cpu", "cuda")


@pytest.mark.parametrize("fast", [True, False])
def test_auto_precision_follows_the_cpus_bf16_support_and_says_why(monkeypatch, fast):
    import findap.models as models

    monkeypatch.setattr(models, "cpu_has_fast_bf16", lambda: fast)
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "auto", training=True) is (torch.bfloat16 if fast else None)
    line = models.describe_precision(cpu, "auto", training=True)
    assert line == ("bf16 autocast (auto: this CPU has AVX512-BF16 or AMX)" if fast
                    else "fp32 (auto: this CPU has no AVX512-BF16 or AMX, bf16 would be emulated)")
    forced = models.describe_precision(cpu, "bf16", training=True)
    assert forced.startswith("bf16 autocast (precision: bf16)") and ("warning" in forced) is (not fast)
    assert models.describe_precision(cpu, "fp32") == "fp32 (precision: fp32)"


def test_model_label(tmp_path):
    d = tmp_path / "myrun" / "train" / "model"
    d.mkdir(parents=True)
    assert model_label(d) == "myrun/train"
    assert model_label("meta-llama/Meta-Llama-3-8B-Instruct") == "meta-llama/Meta-Llama-3-8B-Instruct"


@pytest.mark.slow
def test_embedded_model_loads_from_cache_and_answers():
    import time

    resolve_model(EMBEDDED_MODEL)  # converts once if the cache is cold
    t = time.time()
    model = load_model(EMBEDDED_MODEL)
    tok = load_tokenizer(EMBEDDED_MODEL)
    assert time.time() - t < 10, "cached load should take about a second"
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert getattr(model.config, "quantization_config", None) is None  # plain weights, loadable by any tool
    msgs = [{"role": "user", "content": "What is a bond?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=30, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).lower()
    assert any(w in answer for w in ("bond", "debt", "loan", "invest", "financial")), answer


def test_a_hub_id_the_hub_cannot_provide_is_one_usage_line(monkeypatch, tmp_path):
    """`--model M_CPT_IT` (a typo, or a hub id on a machine without internet): the loader's OSError from inside
    transformers became 'internal error, a bug in findap' with a traceback; it is the user's input."""
    from findap.errors import UsageError
    from findap.models import load_model, load_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for load in (load_model, load_tokenizer):
        with pytest.raises(UsageError, match=r"model 'no-such-org/no-such-model': not a local folder, and the "
                                             r"Hugging Face hub could not provide it"):
            load("no-such-org/no-such-model")


def test_a_hub_id_on_a_machine_that_cannot_reach_the_hub_fails_at_once(monkeypatch, tmp_path):
    """Not offline by setting, just without a connection (the endpoint refuses it): the usage line comes before
    huggingface_hub's five retries per file, which took 49 s and printed 12 'Retrying' lines here."""
    import time

    import huggingface_hub.constants

    from findap.errors import UsageError
    from findap.models import PROXY_VARIABLES, hub_unreachable, load_tokenizer

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for variable in PROXY_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    hub_unreachable.cache_clear()
    started = time.monotonic()
    try:
        with pytest.raises(UsageError, match=r"'no-such-org/no-such-model': not a local folder.*no connection to "
                                             r"127\.0\.0\.1"):
            load_tokenizer("no-such-org/no-such-model")
    finally:
        hub_unreachable.cache_clear()
    assert time.monotonic() - started < 10


def _broken_copy(src: str, dest, *, weights: str | None = None, drop_tokenizer: bool = False) -> str:
    import shutil
    from pathlib import Path

    dest = Path(shutil.copytree(src, dest))
    if weights == "truncated":
        f = next(dest.glob("*.safetensors"))
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    if drop_tokenizer:
        for f in dest.glob("tokenizer*"):
            f.unlink()
    return str(dest)


def test_a_local_folder_the_loader_refuses_is_one_usage_line(tiny_model_dir, tmp_path):
    """A folder that passes the pre-check (config.json + *.safetensors present) but whose files are broken: a
    truncated weights file raised safetensors' own error, a folder without tokenizer files a ValueError, each with
    a traceback from inside transformers. Both are the user's input."""
    from findap.errors import UsageError

    truncated = _broken_copy(tiny_model_dir, tmp_path / "truncated", weights="truncated")
    with pytest.raises(UsageError, match=r"truncated': cannot load it: .*deserializing header") as err:
        load_model(truncated)
    assert "\n" not in str(err.value)
    no_tokenizer = _broken_copy(tiny_model_dir, tmp_path / "no_tokenizer", drop_tokenizer=True)
    with pytest.raises(UsageError, match=r"no_tokenizer': cannot load it: .*tokenizer"):
        load_tokenizer(no_tokenizer)


def test_chat_with_a_broken_model_folder_exits_2_with_one_line(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    truncated = _broken_copy(tiny_model_dir, tmp_path / "truncated", weights="truncated")
    res = subprocess.run([sys.executable, "-m", "findap", "chat", "hi", "--model", truncated], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot load it" in lines[0] and "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize("name, problem", [
    (EMBEDDED_MODEL, None),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", None),  # a hub id: the loader decides
    ("gpt2", None),
    ("./no_such_model", "no such model folder"),
    ("runs/demo/train/model", "no such model folder"),  # two slashes: a path, not a hub id
    ("C:\\models\\llama", "no such model folder"),
    ("my model", "no such model folder"),  # a space: no hub id has one
])
def test_model_problem_tells_paths_from_hub_ids(name, problem):
    from findap.models import model_problem

    found = model_problem(name)
    assert (found is None) if problem is None else (problem in found), found


def test_loading_a_model_draws_no_bar_into_a_log(tiny_model_dir):
    """transformers' "Loading weights" bar went into every redirected log and CI output as a line of carriage-
    return frames per model load; it is for terminals (findap.progress_bars)."""
    import subprocess
    import sys

    code = f"from findap.models import load_model; load_model({tiny_model_dir!r}); print('loaded')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "loaded" in res.stdout, res.stderr
    assert "Loading weights" not in res.stderr and "\r" not in res.stderr, res.stderr
