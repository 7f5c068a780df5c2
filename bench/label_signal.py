"""Is a classification task's skill in reach of a model? Three readings of the same train -> dev split.

A trained model that answers one label to every item (`≡` in the report) may lack the skill, or may have it in its
representation while its generative answer follows the label prior. This separates the two, per task, on the
task's own hash split (train = the curation's pool, dev = what recipes are tuned on; unseen is never read):

- `bag-of-words`: TF-IDF unigrams + bigrams and a class-balanced logistic regression: what the words alone give.
- `frozen probe`: the same logistic regression on the model's hidden states (mean over the prompt's positions and
  the last position, at half, three quarters and all of its layers) for the task's chat prompt as `findap eval`
  renders it: how much of the label the model already represents, untrained.
- `fine-tune` (`--finetune-passes N`): the model trained on the task's train rows only (label-balanced by
  down-sampling, the chat prompt with the label as the reply, loss on the reply), then after each pass every dev
  item scored by its labels' log-likelihood in both formats of `findap eval` (`chat`: the reply the model prefers,
  what its generated answer starts with; `plain`: the completion form of `--mode loglik`).

Every score is dev MCC x100 with a seeded bootstrap 95% interval over items, and the share of the most frequent
prediction. scikit-learn is the reference implementation of the probes (it does what they need); the fine-tune is
a plain loop over padded batches so that it depends on nothing of findap's trainer.

    PYTHONPATH=src .venv/bin/python bench/label_signal.py --tasks fomc,flare_german --finetune-passes 3
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def mcc_with_interval(gold: list[str], pred: list[str], rounds: int = 1000) -> dict:
    from sklearn.metrics import matthews_corrcoef

    rng = np.random.default_rng(0)
    g, p = np.array(gold), np.array(pred)
    draws = [matthews_corrcoef(g[i], p[i]) for i in (rng.integers(0, len(g), len(g)) for _ in range(rounds))]
    top, count = Counter(pred).most_common(1)[0]
    return {"mcc": 100 * matthews_corrcoef(gold, pred), "lo": 100 * np.percentile(draws, 2.5),
            "hi": 100 * np.percentile(draws, 97.5), "n": len(gold), "top": top, "top_share": count / len(pred)}


def show(task: str, arm: str, r: dict) -> None:
    flag = " ≡" if r["top_share"] >= 0.9 else ""
    print(f"{task:13s} {arm:28s} n={r['n']:4d}  MCC {r['mcc']:5.1f} [{r['lo']:5.1f}, {r['hi']:5.1f}]  "
          f"top {r['top']} {r['top_share']:.0%}{flag}", flush=True)


def bag_of_words(task) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    train, dev = task.splits["train"], task.splits["dev"]
    clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)),
                        LogisticRegression(max_iter=3000, class_weight="balanced", C=2.0))
    clf.fit([d["text"] for d in train], [d["gold"] for d in train])
    return mcc_with_interval([d["gold"] for d in dev], list(clf.predict([d["text"] for d in dev])))


def chat_prompt_ids(tokenizer, task, doc) -> list[int]:
    ids = tokenizer.apply_chat_template(task.messages(doc, "direct"), add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def frozen_probe(model, tokenizer, task) -> dict[int, dict]:
    """Dev MCC of a logistic regression on the untrained model's features, per layer probed."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    depth = model.config.num_hidden_layers
    layers = [depth // 2, (3 * depth) // 4, depth]

    @torch.no_grad()
    def features(docs):
        rows = []
        for doc in docs:
            ids = torch.tensor([chat_prompt_ids(tokenizer, task, doc)], device=model.device)
            states = model(input_ids=ids, output_hidden_states=True).hidden_states
            rows.append([torch.cat([states[k][0].mean(0), states[k][0, -1]]).float().numpy() for k in layers])
        return np.array(rows)  # docs x layers x 2*hidden

    train, dev = task.splits["train"], task.splits["dev"]
    x_train, x_dev = features(train), features(dev)
    out = {}
    for i, layer in enumerate(layers):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, class_weight="balanced", C=0.01))
        clf.fit(x_train[:, i], [d["gold"] for d in train])
        out[layer] = mcc_with_interval([d["gold"] for d in dev], list(clf.predict(x_dev[:, i])))
    return out


def balanced_rows(tokenizer, task, rng: random.Random) -> list[tuple[list[int], int]]:
    """(prompt + reply token ids, prompt length): every label down-sampled to the rarest label's count."""
    by_label = defaultdict(list)
    for doc in task.splits["train"]:
        by_label[doc["gold"]].append(doc)
    keep = min(map(len, by_label.values()))
    rows = []
    for label, docs in by_label.items():
        reply = tokenizer(label + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        for doc in rng.sample(docs, keep):
            prompt = chat_prompt_ids(tokenizer, task, doc)
            rows.append((prompt + reply, len(prompt)))
    return rows


def label_scores(model, tokenizer, context: list[int], labels: list[list[int]]) -> list[float]:
    """Summed log-probability of each label's tokens after the context (one padded batch)."""
    import torch

    seqs = [context + lab for lab in labels]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), tokenizer.pad_token_id or 0)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s), 1
    with torch.no_grad():
        logp = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float().log_softmax(-1)
    logp = logp.cpu()
    start = len(context) - 1
    return [logp[i, torch.arange(start, start + len(lab)), torch.tensor(lab)].sum().item()
            for i, lab in enumerate(labels)]


def dev_predictions(model, tokenizer, task, form: str) -> list[str]:
    labels = task.spec.labels
    preds = []
    for doc in task.splits["dev"]:
        if form == "chat":
            context = chat_prompt_ids(tokenizer, task, doc)
            conts = [tokenizer(lab, add_special_tokens=False)["input_ids"] for lab in labels]
        else:
            text, continuations = task.loglik_requests(doc, "dev")
            context = tokenizer(text, add_special_tokens=False)["input_ids"]
            conts = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        scores = label_scores(model, tokenizer, context, conts)
        preds.append(labels[int(np.argmax(scores))])
    return preds


def fine_tune(model, tokenizer, tasks: dict, passes: int, lr: float, batch: int, seed: int) -> None:
    """Train on every task's balanced rows (batches hold one task: similar lengths), scoring dev after each pass."""
    import torch

    rng = random.Random(seed)
    rows = {name: balanced_rows(tokenizer, task, rng) for name, task in tasks.items()}
    per_pass = sum(math.ceil(len(r) / batch) for r in rows.values())
    total = per_pass * passes
    print(f"\nfine-tune: {sum(map(len, rows.values()))} rows, "
          f"{sum(len(s) for r in rows.values() for s, _ in r)} tokens a pass, {per_pass} steps a pass, lr {lr}",
          flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = max(1, total // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * (total - s) / total)
    started = time.perf_counter()
    for done in range(1, passes + 1):
        model.train()
        batches = []
        for r in rows.values():
            order = list(range(len(r)))
            rng.shuffle(order)
            batches += [[r[i] for i in order[b:b + batch]] for b in range(0, len(order), batch)]
        rng.shuffle(batches)
        for part in batches:
            width = max(len(s) for s, _ in part)
            ids = torch.full((len(part), width), tokenizer.pad_token_id or 0)
            mask, targets = torch.zeros_like(ids), torch.full_like(ids, -100)
            for i, (s, prompt_len) in enumerate(part):
                ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s), 1
                targets[i, prompt_len:len(s)] = torch.tensor(s[prompt_len:])
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().flatten(0, 1),
                                                     targets[:, 1:].flatten().to(model.device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        print(f"pass {done}: {time.perf_counter() - started:.0f} s", flush=True)
        for name, task in tasks.items():
            gold = [d["gold"] for d in task.splits["dev"]]
            for form in ("chat", "plain"):
                show(name, f"fine-tune pass {done} {form}",
                     mcc_with_interval(gold, dev_predictions(model, tokenizer, task, form)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--tasks", default="fomc,flare_german", help="comma-separated classification tasks")
    ap.add_argument("--finetune-passes", type=int, default=0, help="also fine-tune for this many passes (0: off)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from findap.eval.registry import get_task
    from findap.models import autocast, load_model, load_tokenizer, pick_device

    tasks = {name: get_task(name) for name in args.tasks.split(",")}
    for name, task in tasks.items():
        if task.spec.answer_type != "classification":
            ap.error(f"--tasks: {name} is a {task.spec.answer_type} task; this bench reads classification tasks")
    tokenizer, model = load_tokenizer(args.model), load_model(args.model).eval()
    device = pick_device("auto")
    model.to(device)
    with autocast(device, training=args.finetune_passes > 0):
        for name, task in tasks.items():
            show(name, "bag-of-words", bag_of_words(task))
            for layer, r in frozen_probe(model, tokenizer, task).items():
                show(name, f"frozen probe, layer {layer}", r)
        if args.finetune_passes:
            fine_tune(model, tokenizer, tasks, args.finetune_passes, args.lr, args.batch, args.seed)


if __name__ == "__main__":
    main()
