"""Skill, not format: label-balanced sampling and several prompt templates for the finance classification sources,
on the real FPB, FOMC and German credit rows.

- label_quota: fair share, a looser cap, the repetition limit;
- balancing the real sources keeps every label within its cap, with unique, deterministic ids (input order does
  not matter), copies in other templates, and copies that never outlive their original;
- templates: every example is in one of at least three templates, chosen by its input and stable across runs; the
  plain form is the input and a field cue, nothing else; the input text is in every prompt verbatim, and
  decontamination still finds FinEval's scored rows when they are rendered in any template;
- the streamed curation with both options on makes, row for row, what the list-based group writer makes of the same
  survivors; the manifest reports the label counts before and after;
- with the options off nothing changes: the converters' prompts are the single instruction as before, no copies are
  made (the demo golden in tests/test_curate_streaming.py holds the whole curation to its earlier output).
"""
from __future__ import annotations

import random
import re
from collections import Counter

import pyarrow.parquet as pq
import pytest

from findap.curate.config import CurateConfig, GroupConfig, LabelBalanceConfig, SourceConfig
from findap.curate.mixture import label_quota
from findap.curate.records import base_id, copy_number
from findap.curate.sources import CONVERTERS, load_source
from findap.curate.sources.finance import CREDIT_PROMPT, FOMC_PROMPT, FPB_PROMPT
from helpers.curation_oracle import balance_labels, cap_labels

CLASSIFICATION = ("fpb", "fomc", "credit")
INPUT_FIELD = {"fpb": "sentence", "fomc": "sentence", "credit": "profile"}


def skill_config(shared_data, **extra) -> CurateConfig:
    options = {"balance_labels": {"enabled": True, "max_repeat": 3}, "prompt_templates": True}
    return CurateConfig(data_root=str(shared_data), **(options | extra))


@pytest.fixture(scope="module")
def converted(shared_data):
    """{source: (examples with balancing copies and templates, examples with default settings)}, whole sources."""
    out = {}
    for name in CLASSIFICATION:
        skill, report = load_source(SourceConfig(name=name), skill_config(shared_data))
        plain, plain_report = load_source(SourceConfig(name=name), CurateConfig(data_root=str(shared_data)))
        assert report.examples == plain_report.examples and report.copies == 2 * report.examples
        out[name] = skill, plain
    return out


def shares(examples) -> dict[str, float]:
    counts = Counter(ex["label"] for ex in examples)
    return {label: n / sum(counts.values()) for label, n in counts.items()}


# ---- the quota ------------------------------------------------------------------------------------------------
def test_label_quota_fair_share_grows_minorities_then_cuts_the_majority():
    # FPB's training rows: 1,489 neutral, 720 positive, 297 negative; three copies at most
    originals = {"neutral": 1489, "positive": 720, "negative": 297}
    available = {label: 3 * n for label, n in originals.items()}
    assert label_quota(originals, available, None) == {"neutral": 891, "positive": 891, "negative": 891}
    # no repetition: only the majority is cut, to the smallest label
    assert label_quota(originals, originals, None) == {"neutral": 297, "positive": 297, "negative": 297}
    # a looser cap: 40% at most for any label; minorities still grow towards the largest label, at most 2x
    twice = {label: 2 * n for label, n in originals.items()}
    quota = label_quota(originals, twice, 0.4)
    assert quota == {"neutral": 1188, "positive": 1188, "negative": 594}
    assert max(quota.values()) <= 0.4 * sum(quota.values())
    # a single label has nothing to balance against: its originals, no copies
    assert label_quota({"good": 10}, {"good": 30}, None) == {"good": 10}


def test_a_share_below_the_fair_share_is_the_fair_share():
    from findap.curate.mixture import effective_share

    assert effective_share(LabelBalanceConfig(max_label_share=0.2), 3) is None
    assert effective_share(LabelBalanceConfig(max_label_share=0.5), 2) is None
    assert effective_share(LabelBalanceConfig(max_label_share=0.5), 3) == 0.5


# ---- balancing the real sources ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CLASSIFICATION)
def test_balanced_real_source_is_within_the_cap_with_unique_deterministic_ids(converted, name):
    skill, plain = converted[name]
    cfg = LabelBalanceConfig(enabled=True, max_repeat=3)
    before = Counter(ex["label"] for ex in plain)
    # the real data is skewed (neutral, neutral, good): the majority holds 15+ points over its fair share
    assert max(before.values()) / sum(before.values()) > 1 / len(before) + 0.15
    balanced = balance_labels(skill, {name}, cfg, seed=0)
    after = Counter(ex["label"] for ex in balanced)
    assert set(after) == set(before) and len(set(after.values())) == 1  # fair share: every label equal
    assert after[min(before, key=before.get)] == min(3 * min(before.values()), max(before.values()))
    ids = [ex["id"] for ex in balanced]
    assert len(ids) == len(set(ids))
    originals = {ex["id"] for ex in balanced if not copy_number(ex["id"])}
    assert all(base_id(i) in originals for i in ids)  # a copy never outlives its original
    assert all(re.fullmatch(rf"{name}-[0-9a-f]{{16}}(~[12])?", i) for i in ids)
    # deterministic given the seed, whatever order the examples arrive in; another seed picks others
    shuffled = list(skill)
    random.Random(7).shuffle(shuffled)
    assert sorted(ex["id"] for ex in balance_labels(shuffled, {name}, cfg, seed=0)) == sorted(ids)
    assert sorted(ex["id"] for ex in balance_labels(skill, {name}, cfg, seed=1)) != sorted(ids)
    # a copy is asked in another template than its original (same input, same label)
    by_id = {ex["id"]: ex for ex in skill}
    for ex in balanced:
        if copy_number(ex["id"]):
            original = by_id[base_id(ex["id"])]
            assert ex["messages"][0]["content"] != original["messages"][0]["content"]
            assert ex["messages"][1] == original["messages"][1] and ex["label"] == original["label"]


def test_cap_labels_cuts_a_training_split_back_to_the_cap(converted):
    skill, _ = converted["fomc"]
    cfg = LabelBalanceConfig(enabled=True, max_repeat=3, max_label_share=0.4)
    balanced = balance_labels(skill, {"fomc"}, cfg, seed=0)
    assert max(shares(balanced).values()) <= 0.4 + 1e-9
    sample = random.Random(3).sample(balanced, len(balanced) // 2)  # a seeded subsample drifts off the cap...
    capped = cap_labels(sample, {"fomc"}, cfg, seed=0)
    assert max(shares(capped).values()) <= 0.4 + 1e-9  # ...and is cut back to it
    assert {ex["id"] for ex in capped} <= {ex["id"] for ex in sample}
    assert cap_labels(sample, set(), cfg, seed=0) == sample


# ---- templates ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CLASSIFICATION)
def test_every_example_gets_one_of_several_templates_chosen_by_its_input(shared_data, converted, name):
    skill, plain = converted[name]
    templates = CONVERTERS[name].templates
    assert len(templates) >= 3 and "plain" in [t.name for t in templates]
    field = INPUT_FIELD[name]
    used = Counter()
    originals = [ex for ex in skill if not copy_number(ex["id"])]
    assert [ex["id"] for ex in originals] == [ex["id"] for ex in plain]
    for ex, before in zip(originals, plain):
        text = before["messages"][0]["content"]
        value = _input_of(name, text)
        prompt = ex["messages"][0]["content"]
        rendered = [t.render({field: value}).strip() for t in templates]
        assert prompt in rendered, prompt
        used[rendered.index(prompt)] += 1
        assert value in prompt  # verbatim: decontamination compares the input text
        assert ex["messages"][1]["content"] == before["messages"][1]["content"] == ex["label"]  # the bare label
    assert len(used) == len(templates)
    assert min(used.values()) > 0.15 * len(originals)  # a hash spreads them evenly (4 templates: ~25% each)
    # stable across runs: converting again renders every example the same way
    again, _ = load_source(SourceConfig(name=name, limit=200), skill_config(shared_data))
    assert len(again) == 3 * 200  # a limit counts originals; each brings its two copies
    assert [ex["messages"] for ex in again] == [ex["messages"] for ex in skill[:600]]


def _input_of(name: str, instruction_prompt: str) -> str:
    """The input field of an example rendered in the converter's instruction (the default template)."""
    if name == "credit":
        return instruction_prompt.split("\n\n", 1)[1]
    return instruction_prompt.split("Sentence: ", 1)[1]


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_the_plain_template_has_no_instruction_or_chat_framing(converted, name):
    skill, plain = converted[name]
    (template,) = [t for t in CONVERTERS[name].templates if t.name == "plain"]
    field = INPUT_FIELD[name]
    # the input under a field name, then a cue for the label: nothing else
    scaffold = template.text.replace("{" + field + "}", "")
    assert re.fullmatch(r"[\w ]+:\s*\n?[\w ]+:", scaffold.strip()), scaffold
    assert "?" not in scaffold and not re.search(r"(?i)\b(answer|reply|classify|label|which|decide|you)\b", scaffold)
    assert not re.search(r"(?i)<\||\[INST\]|\b(user|assistant|system)\s*:", scaffold)
    first, cue = template.text.split("{" + field + "}")
    plain_examples = [ex for ex in skill if ex["messages"][0]["content"].endswith(cue)]
    assert len(plain_examples) > 0.15 * len(skill)
    for ex in plain_examples:
        prompt = ex["messages"][0]["content"]
        assert prompt.startswith(first) and prompt == template.render({field: prompt[len(first):-len(cue)]})
        assert ex["messages"][1]["content"] == ex["label"]  # the bare label completes it


def test_templates_off_render_the_single_instruction_as_before(converted):
    prompts = {"fpb": FPB_PROMPT, "fomc": FOMC_PROMPT, "credit": CREDIT_PROMPT}
    for name, (_, plain) in converted.items():
        field = INPUT_FIELD[name]
        for ex in plain:
            prompt = ex["messages"][0]["content"]
            assert prompt == prompts[name].format(**{field: _input_of(name, prompt)}).strip()
            assert not copy_number(ex["id"])


# ---- decontamination still sees the inputs ------------------------------------------------------------------
@pytest.fixture(scope="module")
def eval_index(shared_data):
    from findap.curate.decontam import EvalIndex
    from findap.curate.eval_texts import from_registry

    texts, _ = from_registry(shared_data)
    return EvalIndex(texts)


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_templates_do_not_hide_scored_rows_from_decontamination(shared_data, eval_index, name):
    """FinEval's scored rows of the dataset, rendered in every template as if they were training examples (a
    planted copy of each), are found and removed; the training rows in templates are removed no more often than
    in the single instruction (near-duplicates inside the raw files only)."""
    from helpers.curation_oracle import decontaminate
    from findap.curate.sources.badrows import BadRows
    from findap.curate.sources.context import ConvertContext

    converter = CONVERTERS[name]
    ctx = ConvertContext(source=name, domain="finance", capability="task", eval_holdout=0.3, bad=BadRows(),
                         select="eval", templates=True)
    scored = list(converter.fn(shared_data / converter.default_path, ctx))
    assert len(scored) > 100
    planted = []
    for ex in scored[:150]:
        _, fields, _ = ex["_render"]
        for t in converter.templates:
            planted.append(dict(ex, id=f"{ex['id']}-{t.name}",
                                messages=[{"role": "user", "content": t.render(fields)}, ex["messages"][1]]))
    kept, _ = decontaminate(planted, eval_index)
    assert len(kept) <= 0.02 * len(planted), [ex["messages"][0]["content"] for ex in kept[:3]]

    cfg = skill_config(shared_data, balance_labels=False)
    templated, _ = load_source(SourceConfig(name=name), cfg)
    single, _ = load_source(SourceConfig(name=name), CurateConfig(data_root=str(shared_data)))
    gone_templated = len(templated) - len(decontaminate(templated, eval_index)[0])
    gone_single = len(single) - len(decontaminate(single, eval_index)[0])
    assert gone_templated <= gone_single + 2, (gone_templated, gone_single)
    assert gone_templated <= {"fpb": 10, "fomc": 25, "credit": 0}[name]


# ---- the whole curation: streamed == list-based, manifest label counts ---------------------------------------------
@pytest.fixture(scope="module")
def skill_curation(shared_data, tiny_model_dir, tmp_path_factory):
    """FPB, FOMC and GSM8K in group 1, German credit added in group 2, both options on; the finance IT token budget
    binds (its seeded sample drifts the labels, which the training split's cap cuts back); 2 tasks, 250-row shards
    (copies cross shard boundaries)."""
    from findap.curate.curation import curate

    cfg = skill_config(
        shared_data,
        sources=[SourceConfig(name="fpb", limit=600), SourceConfig(name="fomc", limit=400),
                 SourceConfig(name="gsm8k", limit=300), SourceConfig(name="credit", limit=240)],
        groups=[GroupConfig(name="group1", sources=["fpb", "fomc", "gsm8k"]),
                GroupConfig(name="group2", extends="group1", sources=["credit"])],
        judge={"enabled": False}, decontam={"enabled": False},
        mixture={"it_domain_share": 0.5, "max_it_tokens": 100_000, "dev_fraction": 0.05}, plot=False,
        tasks=2, shard_rows=250)
    out = tmp_path_factory.mktemp("skill-curation")
    manifest = curate(cfg, out, model=tiny_model_dir, seed=4, progress=False)
    return cfg, out, manifest


def ids(folder, group, split):
    return [r["id"] for r in pq.read_table(folder / group / f"{split}.parquet", columns=["id"]).to_pylist()]


def test_streamed_curation_with_both_options_equals_the_list_based_writer(skill_curation, tmp_path):
    import json

    from helpers.curation_oracle import as_manifest_counts, excluded, survivors, write_groups

    cfg, out, manifest = skill_curation
    rows, tokens = survivors(cfg, out)
    assert any(copy_number(r["id"]) for r in rows)
    report = write_groups(cfg, rows, tokens, tmp_path, 4)
    for group in ("group1", "group2"):
        for split in ("train", "dev"):
            assert ids(tmp_path, group, split) == ids(out, group, split), f"{group}/{split}"
    assert json.loads(json.dumps(report)) == manifest["groups"]
    # the exact duplicates (FPB and FOMC repeat sentences) are recorded one by one, copies never among them
    exact = excluded(out, "dedup")
    assert as_manifest_counts(exact, "exact_duplicate") == manifest["filters"]["dedup"]["exact"]
    assert manifest["filters"]["dedup"]["exact_total"] > 0


def test_curated_training_splits_hold_every_label_within_its_share(skill_curation):
    cfg, out, manifest = skill_curation
    by_id = {}
    for group in ("group1", "group2"):
        train = pq.read_table(out / group / "train.parquet").to_pylist()
        dev = ids(out, group, "dev")
        by_id.update({r["id"]: r for r in train})
        # copies sit on their original's side of the dev split; ids are unique
        assert not {base_id(i) for i in dev} & {base_id(r["id"]) for r in train}
        assert len({r["id"] for r in train}) == len(train)
        labels = manifest["groups"][group]["labels"]
        assert set(labels) == ({"fpb", "fomc"} if group == "group1" else {"fpb", "fomc", "credit"})
        for source, counts in labels.items():
            rows = [r for r in train if r["source"] == source]
            got = Counter(r["messages"][1]["content"] for r in rows)
            assert dict(sorted(got.items())) == counts["train"]
            assert len(set(got.values())) == 1, got  # the fair share: all labels equal
            assert counts["max_label_share"] == round(1 / len(got), 4)
            assert counts["train_copies"] == sum(bool(copy_number(r["id"])) for r in rows) > 0
            assert max(counts["before"].values()) > 1.3 * min(counts["before"].values())  # skewed before
    # the sources report the copies they made
    assert manifest["sources"]["fpb"]["copies"] == 2 * manifest["sources"]["fpb"]["examples"]
    assert "copies" not in manifest["sources"]["gsm8k"]


def test_a_closing_group_draws_examples_the_first_did_not_train_on_within_its_own_cap(
        shared_data, tiny_model_dir, tmp_path):
    """group3 lists group 1's sources again with unseen_first and its own IT cap: its finance rows are ones group 1
    did not train on (while there are such rows), and its IT tokens keep to its cap, not the mixture's."""
    from findap.curate.curation import curate

    groups = [GroupConfig(name="group1", sources=["fpb", "fomc", "gsm8k"]),
              GroupConfig(name="group3", sources=["fpb", "fomc", "gsm8k"], unseen_first=True, max_it_tokens=12_000)]
    cfg = skill_config(
        shared_data, sources=[SourceConfig(name="fpb", limit=600), SourceConfig(name="fomc", limit=400),
                              SourceConfig(name="gsm8k", limit=300)],
        groups=groups, judge={"enabled": False}, decontam={"enabled": False},
        mixture={"it_domain_share": 0.5, "max_it_tokens": 16_000, "dev_fraction": 0.05}, plot=False)
    manifest = curate(cfg, tmp_path, model=tiny_model_dir, seed=4, progress=False)
    first = {base_id(i) for i in ids(tmp_path, "group1", "train")}
    closing = pq.read_table(tmp_path / "group3" / "train.parquet").to_pylist()
    finance = [r for r in closing if r["source"] in ("fpb", "fomc")]
    assert finance and not {base_id(r["id"]) for r in finance} & first
    assert manifest["groups"]["group3"]["plan"]["targets"]["it_tokens"] <= 12_000
    assert manifest["groups"]["group1"]["plan"]["targets"]["it_tokens"] > 12_000
    # the same group without unseen_first starts from the same seeded order as group 1: mostly the same rows
    cfg.groups[1] = GroupConfig(name="group3", sources=["fpb", "fomc", "gsm8k"], max_it_tokens=12_000)
    curate(cfg, tmp_path / "again", model=tiny_model_dir, seed=4, progress=False)
    again = [r for r in pq.read_table(tmp_path / "again" / "group3" / "train.parquet").to_pylist()
             if r["source"] in ("fpb", "fomc")]
    assert len({base_id(r["id"]) for r in again} & first) > len(again) / 2
    with pytest.raises(ValueError, match="unseen_first is for a group mixed anew"):
        GroupConfig(name="group2", extends="group1", unseen_first=True)


# ---- configuration ---------------------------------------------------------------------------------------------
def test_options_default_off_and_accept_a_shorthand(shared_data):
    cfg = CurateConfig()
    assert not cfg.balance_labels.enabled and not cfg.prompt_templates.enabled
    assert cfg.balanced_sources() == set() and cfg.templated_sources() == set()
    on = CurateConfig(balance_labels=True, prompt_templates=True)
    assert on.balanced_sources() == on.templated_sources() == set(CLASSIFICATION)
    assert on.balance_labels.max_repeat == 2 and on.balance_labels.max_label_share is None


@pytest.mark.parametrize("option, value, message", [
    ("balance_labels", {"enabled": True, "sources": ["finer"]}, "source 'finer' (converter 'finer') has no labels"),
    ("prompt_templates", {"enabled": True, "sources": ["nope"]}, "unknown source 'nope'"),
    ("balance_labels", {"enabled": True, "max_repeat": 0}, "greater than or equal to 1"),
])
def test_bad_option_values_are_rejected(option, value, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=re.escape(message)):
        CurateConfig(**{option: value})


def test_the_skill_recipe_turns_both_on_over_the_base_recipe():
    from findap.recipe import load_recipe

    base, skill = load_recipe("recipes/smollm2-fin.yaml"), load_recipe("recipes/smollm2-fin-skill.yaml")
    assert skill.name == "smollm2-fin-skill"
    assert skill.curate.balanced_sources() == skill.curate.templated_sources() == set(CLASSIFICATION)
    assert not base.curate.balanced_sources() and not base.curate.templated_sources()
    assert skill.curate.sources == base.curate.sources and skill.eval == base.eval


def test_the_drill_recipe_is_the_skill_recipe_and_a_closing_group():
    """Its groups 1 and 2 are the skill recipe's to the letter (so their phases carry the same keys and a run folder
    holding them trains group 3 only); group 3 lists finance task sources again, unseen rows first, under its cap."""
    from findap.recipe import load_recipe

    skill, drill = load_recipe("recipes/smollm2-fin-skill.yaml"), load_recipe("recipes/smollm2-fin-drill.yaml")
    assert drill.curate.groups[:2] == skill.curate.groups and drill.train.groups[:2] == skill.train.groups
    closing = drill.curate.groups[2]
    assert closing.unseen_first and closing.max_it_tokens < skill.curate.mixture.max_it_tokens
    assert set(CLASSIFICATION) <= set(closing.sources) and not closing.extends
    same = lambda recipe, section: getattr(recipe, section).model_dump(exclude={"groups"})  # noqa: E731
    assert all(same(drill, s) == same(skill, s) for s in ("curate", "train"))
    assert drill.train.groups[2].name == "group3"
