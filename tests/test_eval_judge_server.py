"""End to end: MT-bench and correctness judging through a REAL local OpenAI-compatible server process.

The served model is a random tiny Llama (real SmolLM2 tokenizer), so its judge outputs are garbage: the test proves
that garbage is retried with a different seed/temperature, then counted and reported as parse failures, that
nothing crashes, and that the numbers reach the report.
"""
import json
from pathlib import Path

import pytest

from findap.engines.base import EngineSpec
from findap.engines.openai_client import OpenAIEngine
from findap.eval.judge import JudgeSettings, judge_correctness, judge_mtbench, parse_rating, parse_verdict
from findap.report.build import build_report
from findap.io import read_records



@pytest.fixture(scope="module")
def server_url(tiny_model_dir, model_server, tmp_path_factory):
    with model_server(tiny_model_dir, "tiny-judge", tmp_path_factory.mktemp("server")) as base:
        yield base


@pytest.fixture(scope="module")
def engine(server_url):
    # No key needed locally; the name points at a variable that is unset on purpose.
    spec = EngineSpec(kind="openai", model="tiny-judge", base_url=server_url, api_key_env="FINDAP_TEST_UNSET_KEY",
                      concurrency=2, extra={"max_retries": 1})
    return OpenAIEngine(spec)


SETTINGS = JudgeSettings(max_new_tokens=24, retries=1, retry_temperature=0.9, seed=7)


def test_mtbench_garbage_judge_is_retried_counted_and_reported(engine, shared_data, tmp_path):
    questions = read_records(shared_data / "mtbench" / "question.jsonl")[:3]
    result = judge_mtbench(engine, engine, questions, answer_max_new_tokens=12, settings=SETTINGS, progress=False)

    assert len(result.samples) == 3
    assert result.scores["n_judged"] == 6  # two turns each
    failures, attempts, retried_differently = 0, 0, 0
    for sample, q in zip(result.samples, questions):
        assert sample["question_id"] == q["question_id"] and len(sample["answers"]) == 2
        for score, outputs in zip(sample["turn_scores"], sample["judge_outputs"]):
            attempts += len(outputs)
            if score is None:
                failures += 1
                assert len(outputs) == SETTINGS.retries + 1  # bounded retries, then given up
                assert all(parse_rating(o) is None for o in outputs)
                retried_differently += outputs[0] != outputs[1]
            else:
                assert parse_rating(outputs[-1]) == score
    assert failures >= 1, "a random tiny model should not produce valid [[N]] ratings"
    assert result.scores["n_parse_failures"] == failures
    assert result.scores["parse_failure_rate"] == pytest.approx(failures / 6)
    assert result.scores["judge_attempts"] == attempts
    assert retried_differently >= 1  # the retry sampled with another seed/temperature, not a cached repeat
    if failures == 6:
        assert result.scores["score"] is None  # nothing parsed: no made-up number

    # the judged task reaches the report with its failure rate
    record = {"task": "mtbench", "model": "tiny", "mode": "direct", "capability": "chat", "domain": "general",
              "novelty": "novel", "split": "unseen", "scores": result.scores, "samples": result.samples}
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "mtbench.json").write_text(json.dumps(record))
    md = Path(build_report([tmp_path / "eval"], tmp_path / "out")["markdown"]).read_text()
    assert f"{100 * failures / 6:.1f}%" in md


def test_correctness_on_real_tatqa_questions(engine, shared_data):
    docs = json.loads((shared_data / "tatqa" / "tatqa_dataset_dev.json").read_text())
    items = []
    for doc in docs[:2]:
        q = doc["questions"][0]
        answer = q["answer"] if isinstance(q["answer"], str) else ", ".join(map(str, q["answer"]))
        items.append({"id": q["uid"], "question": q["question"], "reference": f"{answer} {q['scale']}".strip(),
                      "context": "\n".join(p["text"] for p in doc["paragraphs"])[:600]})
    items.append({"id": "given", "question": items[0]["question"], "reference": items[0]["reference"],
                  "answer": items[0]["reference"]})  # a pre-generated answer skips the answering model
    result = judge_correctness(engine, engine, items, answer_max_new_tokens=12, settings=SETTINGS, progress=False)

    assert [s["id"] for s in result.samples] == [i["id"] for i in items]
    assert result.samples[2]["answer"] == items[2]["answer"]
    verdicts = [s["correct"] for s in result.samples]
    failures = sum(v is None for v in verdicts)
    for s in result.samples:
        if s["correct"] is None:
            assert len(s["judge_outputs"]) == SETTINGS.retries + 1
            assert all(parse_verdict(o) is None for o in s["judge_outputs"])
        else:
            assert parse_verdict(s["judge_outputs"][-1]) is s["correct"]
    assert result.scores["n_parse_failures"] == failures
    assert result.scores["parse_failure_rate"] == pytest.approx(failures / 3)
    assert result.scores["accuracy"] == pytest.approx(sum(v is True for v in verdicts) / 3)


def test_bad_questions_fail_before_any_request(engine):
    with pytest.raises(ValueError, match=r"#0 .*'turns'"):
        judge_mtbench(engine, engine, [{"question_id": 1, "turns": "not a list"}], progress=False)
    with pytest.raises(ValueError, match=r"#1 .*'reference'"):
        judge_correctness(engine, engine, [{"question": "q", "reference": "r", "answer": "a"},
                                           {"id": "x", "question": "q"}], progress=False)
    with pytest.raises(ValueError, match="answers_engine"):
        judge_correctness(None, engine, [{"question": "q", "reference": "r"}], progress=False)


def test_runner_answers_then_judge_pending_then_report(engine, tiny_model_dir, shared_data, tmp_path):
    """The whole judge path: the runner writes answers (needs_judge), judge_pending scores them through the
    served judge, the summary and the report pick the scores up, and a second pass judges nothing again."""
    from findap.engines.hf import HFEngine
    from findap.eval.judge import judge_pending
    from findap.eval.registry import resolve
    from findap.eval.runner import evaluate
    from findap.eval.task import Task, TaskSpec

    # a generic local judge task (reference-based QA) from real TAT-QA questions
    docs = json.loads((shared_data / "tatqa" / "tatqa_dataset_dev.json").read_text())[:2]
    rows = [{"id": d["questions"][0]["uid"], "question": d["questions"][0]["question"],
             "reference": str(d["questions"][0]["answer"])} for d in docs]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    qa = TaskSpec(name="tatqa_judged", capability="task", domain="finance", novelty="novel", answer_type="judge",
                  source={"loader": "jsonl", "args": {"path": str(tmp_path / "qa.jsonl")}}, max_new_tokens=6)
    mt = resolve(["mt_bench"])[0].model_copy(update={"max_new_tokens": 6})

    answerer = HFEngine(EngineSpec(model=tiny_model_dir, device="cpu", precision="fp32"))
    out = tmp_path / "runs" / "tiny" / "eval"
    evaluate(answerer, [Task(mt), Task(qa)], limit=2, out_dir=out, model_name="tiny", progress=False)
    assert json.loads((out / "mt_bench.direct.json").read_text())["needs_judge"] is True

    judged = judge_pending(out, engine, settings=SETTINGS, progress=False)
    assert sorted(p.name for p in judged) == ["mt_bench.direct.json", "tatqa_judged.direct.json"]
    mt_record = json.loads((out / "mt_bench.direct.json").read_text())
    qa_record = json.loads((out / "tatqa_judged.direct.json").read_text())
    assert mt_record["judge"]["kind"] == "rating" and qa_record["judge"]["kind"] == "correctness"
    assert mt_record["needs_judge"] is False and mt_record["scores"]["n_judged"] == 4
    assert qa_record["scores"]["n_judged"] == 2 and "correct" in qa_record["samples"][0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"]["mt_bench"]["direct"] == mt_record["scores"]
    assert judge_pending(out, engine, settings=SETTINGS, progress=False) == []  # resume: nothing left to judge

    board = json.loads(Path(build_report([tmp_path / "runs"], tmp_path / "out")["json"]).read_text())
    rows = {r["label"]: r for r in board["rows"] if r["kind"] == "task"}
    assert rows["mt_bench"]["metric"] == "score" and rows["tatqa_judged"]["metric"] == "accuracy"
    assert rows["tatqa_judged"]["values"]["tiny"] == pytest.approx(100 * qa_record["scores"]["accuracy"])
    assert rows["mt_bench"]["parse_failure_rate"]["tiny"] == mt_record["scores"]["parse_failure_rate"]
