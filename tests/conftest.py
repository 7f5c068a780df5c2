"""Shared fixtures: the real shared data directory and a tiny random Llama with the real SmolLM2 tokenizer."""
from __future__ import annotations

import os
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
def one_torch_thread():
    """Tiny-model ops are too small to gain from threads, and on a busy shared machine OpenMP workers waiting for
    each other made them 30-100x slower. Restored afterwards so other test modules keep their setting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
