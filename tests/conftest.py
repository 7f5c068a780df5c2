"""Shared fixtures: the real shared data directory, a tiny random Llama with the real SmolLM2 tokenizer, and our
OpenAI-compatible server started as a real process."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("FINDAP_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.exists():
        pytest.fail(f"shared data not found at {path}: set FINDAP_DATA")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    from findap.models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), seed=0)


@pytest.fixture(scope="module")
def tiny_train_set():
    """(fresh_model, tokenizer, docs) for trainer tests: `fresh_model()` returns a copy of one random tiny Llama
    (seed 5; building another would reload the tokenizer), docs are 40 documents of FPB conversations and ECTSum
    text tokenised for 64-token rows."""
    import copy

    from findap.models import tiny_llama
    from helpers.sample_data import ectsum_texts, fpb_conversations
    from findap.train.tokenize import tokenize_examples

    model, tok = tiny_llama(seed=5)
    docs = tokenize_examples(fpb_conversations(10) + ectsum_texts(1), tok, 64)[:40]
    return (lambda: copy.deepcopy(model)), tok, docs


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny-model ops are too small to gain from threads, and on a busy shared machine OpenMP workers waiting for
    each other made them 30-100x slower. Restored afterwards so other test modules keep their setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@contextlib.contextmanager
def running_server(model_dir: str, served_name: str, log_dir: Path):
    """`python -m findap.engines.server` on a free local port; yields its base URL (.../v1) once /health answers.

    One OpenMP thread: the tiny model gains nothing from more, and the test process shares the 2 cores."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(Path(log_dir) / "server.log", "w+")
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "findap.engines.server", "--model", str(model_dir), "--served-name", served_name,
         "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--precision", "fp32"],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                pytest.fail("server did not come up in 180 s")
            time.sleep(0.5)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def model_server():
    """Factory: `with model_server(model_dir, name, log_dir) as base_url: ...` (see running_server)."""
    return running_server
