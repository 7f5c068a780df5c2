"""Our OpenAI-compatible server as a real process, and OpenAIEngine talking to it over real HTTP: both must give
the answers HFEngine gives in-process on the same model directory."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from findap.engines import EngineSpec, GenerationRequest, LoglikelihoodRequest, make_engine
from findap.engines.openai_client import EndpointError



pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from findap.models import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("served"), seed=2, initializer_range=0.2)


@pytest.fixture(scope="module")
def server(model_dir, model_server, tmp_path_factory):
    with model_server(model_dir, "tiny", tmp_path_factory.mktemp("server")) as base:
        yield base


@pytest.fixture(scope="module")
def local(model_dir):
    return make_engine(EngineSpec(kind="hf", model=model_dir, precision="fp32"))


def remote(base, concurrency=4, **extra):
    return make_engine(EngineSpec(kind="openai", model="tiny", base_url=base, concurrency=concurrency, extra=extra))


def test_models_endpoint_lists_the_served_model(server):
    data = httpx.get(f"{server}/models").json()
    assert [m["id"] for m in data["data"]] == ["tiny"]


def test_generation_over_http_equals_in_process(server, local):
    requests = [
        GenerationRequest("The earnings call said", max_new_tokens=10),
        GenerationRequest([{"role": "user", "content": "Is this bullish: profits doubled?"}], max_new_tokens=10),
        GenerationRequest("Revenue grew", max_new_tokens=12, temperature=0.8, seed=5),
    ]
    want = local.generate(requests, progress=False)
    full = local.generate([GenerationRequest("Revenue grew", max_new_tokens=12)], progress=False)[0]
    stop = full.split()[len(full.split()) // 2]
    requests.append(GenerationRequest("Revenue grew", max_new_tokens=12, stop=(stop,)))
    want.append(local.generate(requests[-1:], progress=False)[0])
    assert remote(server).generate(requests, progress=False) == want
    assert stop not in want[-1]


def test_loglikelihood_over_http_equals_in_process(server, local):
    requests = [LoglikelihoodRequest("Question: Which is a liability?\nAnswer:", c)
                for c in (" a loan payable", " cash", " inventory held for sale")]
    requests.append(LoglikelihoodRequest("The yield curve inverted, so ", "recession risk rose"))
    want = local.loglikelihood(requests, progress=False)
    got = remote(server).loglikelihood(requests, progress=False)
    for w, g in zip(want, got):
        assert g.logprob == pytest.approx(w.logprob, abs=1e-3)
        assert (g.is_greedy, g.n_tokens) == (w.is_greedy, w.n_tokens)


def test_concurrent_requests_are_batched_and_answers_unchanged(server, local):
    requests = [GenerationRequest(f"Report {i}: the company's revenue", max_new_tokens=24) for i in range(8)]
    want = local.generate(requests, progress=False)
    before = httpx.get(server.removesuffix("/v1") + "/health").json()
    assert remote(server, concurrency=8).generate(requests, progress=False) == want
    after = httpx.get(server.removesuffix("/v1") + "/health").json()
    assert after["generation_requests"] - before["generation_requests"] == 8
    assert after["generation_batches"] - before["generation_batches"] < 8


def test_remote_cache_skips_http(server, tmp_path):
    requests = [LoglikelihoodRequest("Context:", " one"), LoglikelihoodRequest("Context:", " two")]
    first = make_engine(EngineSpec(kind="openai", model="tiny", base_url=server, cache_path=str(tmp_path / "c")))
    assert first.http_calls == 0 and len(first.loglikelihood(requests, progress=False)) == 2
    second = make_engine(EngineSpec(kind="openai", model="tiny", base_url=server, cache_path=str(tmp_path / "c")))
    assert second.loglikelihood(requests, progress=False) == first.loglikelihood(requests, progress=False)
    assert first.http_calls == 2 and second.http_calls == 0


def test_server_errors_are_clear(server):
    wrong_model = make_engine(EngineSpec(kind="openai", model="gpt-9", base_url=server))
    with pytest.raises(EndpointError, match="404.*not served here"):
        wrong_model.generate([GenerationRequest("hi", max_new_tokens=2)], progress=False)
    r = httpx.post(f"{server}/completions", json={"prompt": "hi", "stream": True})
    assert r.status_code == 400 and "streaming" in r.json()["error"]["message"]


class FlakyHandler(BaseHTTPRequestHandler):
    """A real HTTP server that fails twice with 503, then answers like a chat-only endpoint (no log-probs)."""

    calls = 0

    def do_POST(self):
        type(self).calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).calls <= 2:
            self.send_response(503)
            self.end_headers()
            return
        body = json.dumps({"choices": [{"text": " fine", "logprobs": None,
                                        "message": {"role": "assistant", "content": "fine STOP more"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_retries_transient_errors_and_rejects_endpoints_without_logprobs():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        eng = remote(base, backoff_s=0.01)
        chat = GenerationRequest([{"role": "user", "content": "hi"}], max_new_tokens=4, stop=("STOP",))
        assert eng.generate([chat], progress=False) == ["fine "]  # stop string applied client-side too
        assert FlakyHandler.calls == 3
        with pytest.raises(EndpointError, match="does not return prompt log-probs"):
            eng.loglikelihood([LoglikelihoodRequest("a", " b")], progress=False)
        gives_up = remote(base, backoff_s=0.01, max_retries=1)
        FlakyHandler.calls = 0
        with pytest.raises(EndpointError, match="503"):
            gives_up.generate([chat], progress=False)
    finally:
        httpd.shutdown()
