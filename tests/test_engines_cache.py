"""The SQLite request cache: a rerun does no model work, sampling without a seed is never cached, and a run that
dies mid-way keeps every batch it finished."""
import pytest

from findap.engines import EngineSpec, GenerationRequest, LoglikelihoodRequest, make_engine
from findap.engines.cache import RequestCache, run_cached
from findap.models import tiny_llama


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(seed=1, initializer_range=0.2)


def engine(tiny, cache_path, **spec):
    model, tokenizer = tiny
    spec = EngineSpec(**{"model": "tiny-cache-test", "precision": "fp32", "batch_size": 2, "cache_path": str(cache_path),
                         **spec})
    return make_engine(spec, model=model, tokenizer=tokenizer)


LL = [LoglikelihoodRequest(f"Question {i}: up or down?\nAnswer:", c) for i in range(3) for c in (" up", " down")]
GEN = [
    GenerationRequest("The quarterly report", max_new_tokens=6),
    GenerationRequest([{"role": "user", "content": "Summarise: revenue grew."}], max_new_tokens=6, stop=("\n",)),
    GenerationRequest("Seeded sample:", max_new_tokens=6, temperature=0.9, seed=3),
]


def test_second_run_does_no_model_work(tiny, tmp_path):
    first = engine(tiny, tmp_path / "cache.sqlite")
    ll, gen = first.loglikelihood(LL, progress=False), first.generate(GEN, progress=False)
    assert first.model_calls > 0

    second = engine(tiny, tmp_path / "cache.sqlite")  # a new process would open the same file
    assert second.loglikelihood(LL, progress=False) == ll
    assert second.generate(GEN, progress=False) == gen
    assert second.model_calls == 0


def test_unseeded_sampling_is_never_cached(tiny, tmp_path):
    request = GenerationRequest("Free sample:", max_new_tokens=4, temperature=1.0)
    for _ in range(2):
        eng = engine(tiny, tmp_path / "c.sqlite")
        eng.generate([request], progress=False)
        assert eng.model_calls == 1
    assert len(RequestCache(tmp_path / "c.sqlite")) == 0


def test_settings_are_part_of_the_key(tiny, tmp_path):
    eng = engine(tiny, tmp_path / "c.sqlite")
    eng.generate([GenerationRequest("Rates", max_new_tokens=4)], progress=False)
    eng.generate([GenerationRequest("Rates", max_new_tokens=5)], progress=False)
    eng.generate([GenerationRequest("Rates", max_new_tokens=5, stop=("x",))], progress=False)
    assert eng.model_calls == 3
    other_model = engine(tiny, tmp_path / "c.sqlite", max_length=1024)  # identity includes the window
    other_model.generate([GenerationRequest("Rates", max_new_tokens=4)], progress=False)
    assert other_model.model_calls == 1


def test_a_resumed_run_computes_only_what_is_missing(tiny, tmp_path):
    eng = engine(tiny, tmp_path / "c.sqlite")
    eng.loglikelihood(LL[:2], progress=False)  # one context: one packed row, one batch
    assert eng.model_calls == 1
    resumed = engine(tiny, tmp_path / "c.sqlite", batch_size=1)
    resumed.loglikelihood(LL, progress=False)
    assert resumed.model_calls == 2  # the two contexts not yet scored


def test_a_killed_run_keeps_finished_batches(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")

    def dies_after_first_batch(todo):
        yield [(i, f"answer {i}") for i in todo[:2]]
        raise KeyboardInterrupt  # the user pressed ctrl-c, or the job was killed

    with pytest.raises(KeyboardInterrupt):
        run_cached(cache, ["k0", "k1", "k2", "k3"], dies_after_first_batch)
    computed = []

    def records(todo):
        computed.extend(todo)
        yield [(i, f"answer {i}") for i in todo]

    assert run_cached(cache, ["k0", "k1", "k2", "k3", None], records) == [f"answer {i}" for i in range(5)]
    assert computed == [2, 3, 4]  # k0, k1 came from disk; the None key is never cached
