"""CTR metrics against slow references: GAUC per user, the validation threshold, RMSE/MAE."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from foundrec.eval.classification import auc, best_threshold, ctr_metrics, gauc, rating_metrics


def slow_gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    total, weight = 0.0, 0
    for u in np.unique(users):
        m = users == u
        if 0 < labels[m].sum() < m.sum():
            total += roc_auc_score(labels[m], scores[m]) * m.sum()
            weight += m.sum()
    return total / weight


def test_gauc_matches_a_per_user_loop_with_ties() -> None:
    rng = np.random.default_rng(0)
    users = rng.integers(0, 40, 2000)
    labels = rng.integers(0, 2, 2000).astype(float)
    scores = np.round(rng.random(2000) + 0.3 * labels, 1)  # coarse scores: many ties within a user
    assert abs(gauc(users, labels, scores) - slow_gauc(users, labels, scores)) < 1e-12


def test_gauc_skips_users_with_one_class_and_differs_from_auc() -> None:
    users = np.array([0, 0, 0, 1, 1, 2, 2])
    labels = np.array([1, 0, 0, 1, 1, 0, 1.0])
    scores = np.array([0.9, 0.1, 0.2, 0.5, 0.6, 0.95, 0.0])
    # user 0: AUC 1 (3 rows); user 1: one class, left out; user 2: AUC 0 (2 rows)
    assert gauc(users, labels, scores) == (1.0 * 3 + 0.0 * 2) / 5
    assert auc(labels, scores) != gauc(users, labels, scores)


def test_best_threshold_maximises_accuracy() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300).astype(float)
    probs = np.clip(0.5 + 0.3 * (labels - 0.5) + rng.normal(0, 0.2, 300), 0, 1)
    cut = best_threshold(labels, probs)
    brute = max(((probs >= c) == (labels > 0.5)).mean() for c in np.r_[probs, 2.0])
    assert ((probs >= cut) == (labels > 0.5)).mean() == brute


def test_ctr_metrics_perfect_and_rating_errors() -> None:
    labels = np.array([0, 1, 0, 1.0])
    m = ctr_metrics(np.zeros(4, dtype=int), labels, np.array([0.1, 0.9, 0.2, 0.8]), 0.5)
    assert m["auc"] == m["gauc"] == m["accuracy"] == m["f1"] == 1.0
    assert m["logloss"] < 0.2
    r = rating_metrics(np.array([1.0, 3.0, 5.0]), np.array([2.0, 3.0, 3.0]))
    assert r["mae"] == 1.0 and abs(r["rmse"] - np.sqrt(5 / 3)) < 1e-12
