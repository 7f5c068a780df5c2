"""Mixtures on real rows with the real SmolLM2 tokenizer: shares, CPT subsampling, determinism, dev split."""
from __future__ import annotations

import pytest

from findap.curate.config import CurateConfig, MixtureConfig, SourceConfig
from findap.curate.mixture import share_warnings
from helpers.curation_oracle import build_mixture, dev_split, mixture_stats
from findap.curate.sources import load_source
from findap.curate.tokens import count_tokens


@pytest.fixture(scope="module")
def tokenizer():
    from findap.models import tiny_llama

    return tiny_llama()[1]


@pytest.fixture(scope="module")
def pool(shared_data):
    cfg = CurateConfig(data_root=str(shared_data))
    limits = {"fpb": 300, "fomc": 200, "gsm8k": 300, "self_instruct": 175, "promptsource": 600,
              "ectsum_transcripts": 40, "promptsource_text": 2000}
    rows = []
    for name, limit in limits.items():
        rows += load_source(SourceConfig(name=name, limit=limit), cfg)[0]
    return rows


@pytest.fixture(scope="module")
def tokens(pool, tokenizer):
    return count_tokens(pool, tokenizer)


def test_token_counts_match_chat_template(pool, tokens, tokenizer):
    it = next(ex for ex in pool if ex["kind"] == "it")
    ids = tokenizer.apply_chat_template(it["messages"], tokenize=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert tokens[it["id"]] == len(ids)
    cpt = next(ex for ex in pool if ex["kind"] == "cpt")
    assert tokens[cpt["id"]] == len(tokenizer(cpt["text"], add_special_tokens=False)["input_ids"])


def test_shares_within_tolerance(pool, tokens):
    cfg = MixtureConfig()
    chosen, plan = build_mixture(pool, tokens, cfg, seed=0)
    stats = mixture_stats(chosen, tokens)
    assert stats["domain_shares"]["it"]["finance"] == pytest.approx(0.2, abs=0.01)
    assert stats["domain_shares"]["cpt"]["finance"] == pytest.approx(0.5, abs=0.02)
    assert stats["kind_shares"]["cpt"] == pytest.approx(0.5, abs=0.02)  # CPT subsampled to the IT token count
    assert share_warnings(stats, cfg) == []
    # the general IT side is the scarce one at 20/80: all of it is used, finance IT is subsampled
    general_it = [ex for ex in pool if ex["kind"] == "it" and ex["domain"] != "finance"]
    assert sum(ex["kind"] == "it" and ex["domain"] != "finance" for ex in chosen) >= 0.99 * len(general_it)
    assert stats["tokens"] == sum(tokens[ex["id"]] for ex in chosen)


def test_other_shares_and_ratio(pool, tokens):
    cfg = MixtureConfig(it_domain_share=0.5, cpt_domain_share=0.3, cpt_share=0.25)
    stats = mixture_stats(build_mixture(pool, tokens, cfg, seed=0)[0], tokens)
    assert stats["domain_shares"]["it"]["finance"] == pytest.approx(0.5, abs=0.01)
    assert stats["domain_shares"]["cpt"]["finance"] == pytest.approx(0.3, abs=0.03)
    assert stats["kind_shares"]["cpt"] == pytest.approx(0.25, abs=0.02)


def test_deterministic_given_seed(pool, tokens):
    ids = lambda rows: sorted(ex["id"] for ex in rows)  # noqa: E731
    a, _ = build_mixture(pool, tokens, MixtureConfig(), seed=3)
    b, _ = build_mixture(list(reversed(pool)), tokens, MixtureConfig(), seed=3)
    c, _ = build_mixture(pool, tokens, MixtureConfig(), seed=4)
    assert ids(a) == ids(b) and ids(a) != ids(c)


def test_short_cpt_keeps_domain_share_and_warns(pool, tokens):
    small = [ex for ex in pool if ex["kind"] == "it" or ex["source"] == "ectsum_transcripts"][:]
    small = [ex for ex in small if ex["kind"] == "it"] + [ex for ex in small if ex["kind"] == "cpt"][:3]
    small += [ex for ex in pool if ex["source"] == "promptsource_text"][:50]
    cfg = MixtureConfig()
    chosen, plan = build_mixture(small, tokens, cfg, seed=0)
    stats = mixture_stats(chosen, tokens)
    assert stats["domain_shares"]["cpt"]["finance"] == pytest.approx(0.5, abs=0.1)
    assert any("cpt token share" in w for w in share_warnings(stats, cfg))


def test_dev_split_disjoint_and_sized(pool):
    cfg = MixtureConfig(dev_fraction=0.05, dev_min=4)
    train, dev = dev_split(pool, cfg, seed=0)
    assert len(dev) == round(0.05 * len(pool)) and len(train) + len(dev) == len(pool)
    assert not {ex["id"] for ex in train} & {ex["id"] for ex in dev}
    assert dev_split(pool, cfg, seed=0)[1] == dev


def test_null_shares_keep_the_whole_pool():
    from findap.curate.config import MixtureConfig

    pool = ([{"id": f"f{i}", "kind": "it", "domain": "finance"} for i in range(9)]
            + [{"id": f"g{i}", "kind": "it", "domain": "general"} for i in range(1)]
            + [{"id": f"c{i}", "kind": "cpt", "domain": "finance"} for i in range(4)])
    tokens = {ex["id"]: 10 for ex in pool}
    strict, _ = build_mixture(pool, tokens, MixtureConfig(), seed=0)
    assert sum(ex["kind"] == "cpt" for ex in strict) == 0  # 50/50 CPT with no general text: nothing fits
    kept, _ = build_mixture(pool, tokens, MixtureConfig(it_domain_share=None, cpt_domain_share=None), seed=0)
    assert sum(ex["kind"] == "it" for ex in kept) == 10
    assert sum(ex["kind"] == "cpt" for ex in kept) == 4  # CPT:IT 50:50 cap (100 tokens) is not binding here


def test_group2_is_group1_plus_its_additions(tmp_path):
    """Paper Table 5: group 2 = group 1's data + domain books/exercises, even when group 1's caps are binding."""
    from findap.curate.config import CurateConfig
    from helpers.curation_oracle import write_groups
    from findap.io import read_records

    cfg = CurateConfig(
        sources=[{"name": "fin"}, {"name": "gen"}, {"name": "exercises"}],
        groups=[{"name": "group1", "sources": ["fin", "gen"]}, {"name": "group2", "extends": "group1", "sources": ["exercises"]}],
        mixture={"max_it_tokens": 100, "dev_fraction": 0.0},
    )
    def it(i, source, domain):
        return {"id": f"{source}{i}", "kind": "it", "source": source, "domain": domain, "capability": "task",
                "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    examples = ([it(i, "fin", "finance") for i in range(20)] + [it(i, "gen", "general") for i in range(20)]
                + [it(i, "exercises", "finance") for i in range(5)])
    tokens = {ex["id"]: 10 for ex in examples}
    report = write_groups(cfg, examples, tokens, tmp_path, seed=0)
    g1 = {r["id"] for r in read_records(tmp_path / "group1" / "train.parquet")}
    g2 = {r["id"] for r in read_records(tmp_path / "group2" / "train.parquet")}
    assert len(g1) == 10  # 100 IT tokens: 2 finance + 8 general examples of 10 tokens
    assert g2 == g1 | {f"exercises{i}" for i in range(5)}
    assert report["group2"]["plan"]["added_docs"] == 5


def test_extending_groups_keep_every_earlier_dev_set(tmp_path):
    """Group 2 trains after group 1 (and group 3 after group 2): each group's dev set keeps every earlier group's
    dev documents and takes no document an earlier group trained on; its own additions get their own dev slice
    by the seeded rule. Many additions per group: recomputing the slice over the whole group moves both ways."""
    from findap.curate.config import CurateConfig
    from helpers.curation_oracle import write_groups
    from findap.io import read_records

    cfg = CurateConfig(
        sources=[{"name": "fin"}, {"name": "gen"}, {"name": "books"}, {"name": "exercises"}],
        groups=[{"name": "group1", "sources": ["fin", "gen"]},
                {"name": "group2", "extends": "group1", "sources": ["books"]},
                {"name": "group3", "extends": "group2", "sources": ["exercises"]}],
        mixture={"it_domain_share": None, "cpt_domain_share": None, "dev_fraction": 0.1, "dev_min": 2},
    )

    def it(i, source, domain):
        return {"id": f"{source}{i}", "kind": "it", "source": source, "domain": domain, "capability": "task",
                "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}

    examples = ([it(i, "fin", "finance") for i in range(20)] + [it(i, "gen", "general") for i in range(20)]
                + [it(i, "books", "finance") for i in range(150)] + [it(i, "exercises", "finance") for i in range(60)])
    report = write_groups(cfg, examples, {ex["id"]: 10 for ex in examples}, tmp_path, seed=0)

    def ids(group, split):
        return {r["id"] for r in read_records(tmp_path / group / f"{split}.parquet")}

    earlier_train, earlier_dev = set(), set()
    for group, source, added in (("group1", None, 40), ("group2", "books", 150), ("group3", "exercises", 60)):
        train, dev = ids(group, "train"), ids(group, "dev")
        assert not train & dev and earlier_dev <= dev and not dev & earlier_train
        assert report[group]["dev_docs"] == len(dev) and len(train | dev) == len(earlier_train | earlier_dev) + added
        if source:  # the additions' own slice: 10% of them, seeded like any group's
            assert len({i for i in dev if i.startswith(source)}) == round(0.1 * added)
        earlier_train, earlier_dev = earlier_train | train, earlier_dev | dev
