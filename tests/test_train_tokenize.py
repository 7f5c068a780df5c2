"""Instruction mask-out and CPT tokenisation, checked against hand-derived expectations on real data."""
import pytest

from findap.io import DataError
from findap.models import EMBEDDED_MODEL, load_tokenizer
from helpers.sample_data import ectsum_texts, fpb_conversations
from findap.train.tokenize import IGNORE, TemplateError, TokenizeStats, tokenize_examples


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(EMBEDDED_MODEL)


def trained_spans(ids, labels):
    """Contiguous runs of trained tokens, as lists of ids."""
    spans, cur = [], []
    for t, l in zip(ids, labels):
        if l != IGNORE:
            assert l == t
            cur.append(t)
        elif cur:
            spans.append(cur)
            cur = []
    return spans + ([cur] if cur else [])


def test_it_trains_only_assistant_turns_multi_turn(tok):
    messages = [
        {"role": "system", "content": "You analyse company news."},
        {"role": "user", "content": "Sentiment of: Profit rose 20 % ."},
        {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "And of: The plant was closed ."},
        {"role": "assistant", "content": "negative, because a closure cuts output"},
    ]
    [doc] = tokenize_examples([{"kind": "it", "messages": messages}], tok, 4096)
    spans = [tok.decode(s) for s in trained_spans(doc["input_ids"], doc["labels"])]
    # Each assistant turn trains its content and the template's end-of-turn marker; nothing else trains.
    assert spans == ["positive<|im_end|>\n", "negative, because a closure cuts output<|im_end|>\n"]
    assert doc["input_ids"] == tok.apply_chat_template(messages, tokenize=True)["input_ids"]


def test_real_fpb_conversation_masks_prompt(tok):
    ex = fpb_conversations(3)
    docs = tokenize_examples(ex, tok, 4096)
    for e, d in zip(ex, docs):
        [span] = trained_spans(d["input_ids"], d["labels"])
        assert tok.decode(span) == e["messages"][1]["content"] + "<|im_end|>\n"
        assert sum(l != IGNORE for l in d["labels"]) < len(d["labels"]) / 3


def test_cpt_trains_everything_and_long_documents_split(tok):
    [ex] = ectsum_texts(1)
    stats = TokenizeStats()
    docs = tokenize_examples([ex], tok, 256, stats=stats)
    full = tok(ex["text"], add_special_tokens=True)["input_ids"] + [tok.eos_token_id]
    assert len(docs) == -(-len(full) // 256) and stats.chunks == len(docs) - 1
    assert [t for d in docs for t in d["input_ids"]] == full
    assert all(d["labels"] == d["input_ids"] and len(d["input_ids"]) <= 256 for d in docs)


def test_template_without_assistant_tokens_fails(tok):
    import copy

    broken = copy.deepcopy(tok)
    # A template that never renders assistant content: training would silently learn nothing.
    broken.chat_template = ("{% for m in messages %}{% if m['role'] != 'assistant' %}<|im_start|>{{ m['role'] }}\n"
                            "{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
                            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    with pytest.raises(TemplateError, match="data.jsonl:1: field 'messages': .*no assistant tokens"):
        tokenize_examples(fpb_conversations(2), broken, 4096, source="data.jsonl")


def test_long_it_truncated_and_dropped_when_nothing_left(tok):
    [ex] = fpb_conversations(1)
    stats = TokenizeStats()
    assert tokenize_examples([ex], tok, 20, stats=stats) == []  # the answer lies past the context
    assert stats.truncated == 1 and stats.dropped == [ex["id"]]


@pytest.mark.parametrize("row,field", [
    ({"kind": "chat", "text": "x"}, "kind"),
    ({"kind": "cpt", "text": ""}, "text"),
    ({"kind": "it", "messages": [{"role": "user", "content": "hi"}]}, "messages"),
    ({"kind": "it", "messages": [{"role": "user"}]}, "messages[0]"),
])
def test_bad_rows_name_file_line_and_field(tok, row, field):
    good = {"kind": "cpt", "text": "fine"}
    with pytest.raises(DataError) as err:
        tokenize_examples([good, row], tok, 128, source="train.parquet")
    assert err.value.file == "train.parquet" and err.value.line == 2 and err.value.field == field
