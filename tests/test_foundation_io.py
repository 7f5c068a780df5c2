"""findap.io on the real shared data files and on deliberately broken copies."""
import json

import pytest

from findap.io import DataError, append_jsonl, read_jsonl_tolerant, read_records, write_jsonl, write_parquet


def test_reads_real_formats(shared_data):
    gsm = read_records(shared_data / "gsm8k" / "train.jsonl", required=["question", "answer"])
    assert len(gsm) == 7473 and "####" in gsm[0]["answer"]
    cfa = read_records(shared_data / "cfa" / "CFA_Easy.json", required=["query", "answer"])
    assert len(cfa) == 1032
    fomc = read_records(next((shared_data / "fomc").glob("*.xlsx")), required=["sentence", "label"])
    assert len(fomc) == 1984 and {r["label"] for r in fomc} == {0, 1, 2}
    mmlu_file = sorted((shared_data / "mmlu" / "dev").glob("*.csv"))[0]
    mmlu = read_records(mmlu_file, required=["question", "answer"])
    assert len(mmlu) == 5 and all(str(r["answer"]) in "0123" for r in mmlu)
    mt = read_records(shared_data / "mtbench" / "question.jsonl", required=["turns"])
    assert len(mt) == 80 and all(len(r["turns"]) == 2 for r in mt)


def test_parquet_roundtrip(tmp_path):
    rows = [{"id": str(i), "kind": "it", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(5)]
    write_parquet(tmp_path / "x.parquet", rows)
    assert read_records(tmp_path / "x.parquet") == rows


def test_jsonl_errors_name_file_line_field(tmp_path, shared_data):
    lines = (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines()[:5]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines[:3] + ['{"question": "x", "answer": '] + lines[3:]) + "\n")
    with pytest.raises(DataError) as e:
        read_records(bad)
    assert e.value.line == 4 and str(bad) in str(e.value)
    missing = tmp_path / "missing.jsonl"
    rows = [json.loads(l) for l in lines]
    del rows[2]["answer"]
    missing.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"missing.jsonl:3: field 'answer'"):
        read_records(missing, required=["question", "answer"])


def test_csv_error_line_numbers(tmp_path, shared_data):
    src = sorted((shared_data / "mmlu" / "dev").glob("*.csv"))[0].read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(src[:3] + ["only,two"] + src[3:]) + "\n")
    with pytest.raises(DataError) as e:
        read_records(bad)
    assert e.value.line == 4


def test_xlsx_missing_field(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["sentence", "label"])
    ws.append(["rates rise", 1])
    ws.append(["", 0])
    wb.save(tmp_path / "f.xlsx")
    with pytest.raises(DataError, match=r"f.xlsx:3: field 'sentence'"):
        read_records(tmp_path / "f.xlsx", required=["sentence"])


def test_atomic_writers_leave_no_partial_file(tmp_path):
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"a": 1}])

    def boom():
        yield {"a": 2}
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        write_jsonl(target, boom())
    assert read_records(target) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_append_log_tolerates_torn_last_line(tmp_path):
    log = tmp_path / "log.jsonl"
    append_jsonl(log, {"i": 1})
    append_jsonl(log, {"i": 2})
    with open(log, "a") as f:
        f.write('{"i": 3')
    assert read_jsonl_tolerant(log) == [{"i": 1}, {"i": 2}]


def test_unknown_format_and_missing_file(tmp_path):
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unknown format"):
        read_records(tmp_path / "x.txt")
    with pytest.raises(DataError, match="not found"):
        read_records(tmp_path / "nope.jsonl")


def test_parquet_keeps_columns_of_mixed_rows(tmp_path):
    rows = [{"id": "a", "kind": "cpt", "text": "Bonds pay coupons."},
            {"id": "b", "kind": "it", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]
    write_parquet(tmp_path / "m.parquet", rows)
    back = read_records(tmp_path / "m.parquet")
    assert back[0]["text"] == "Bonds pay coupons." and back[0]["messages"] is None
    assert back[1]["messages"][1]["content"] == "a" and back[1]["text"] is None
