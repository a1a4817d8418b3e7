"""Metrics for labelled rows: AUC, GAUC, LogLoss, accuracy and F1 at a threshold, RMSE and MAE.

The threshold for accuracy and F1 is chosen on validation (highest accuracy) and applied to test
unchanged, so no test label picks anything.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, log_loss, roc_auc_score

EPS = 1e-7


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC; NaN when only one class is present."""
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, scores))


def gauc(users: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """Per-user AUC averaged with each user's number of rows as weight (Zhou et al., DIN, 2018).

    Users whose rows are all positive or all negative have no AUC and are left out. Vectorised
    Mann-Whitney: ties share their average rank, as in `roc_auc_score`.
    """
    users, labels, scores = (
        np.asarray(users),
        np.asarray(labels, dtype=float),
        np.asarray(scores, dtype=float),
    )
    order = np.lexsort((scores, users))
    u, y, s = users[order], labels[order], scores[order]
    n = len(u)
    # Average rank within each (user, score) tie group; ranks restart at 1 for every user.
    new_group = np.r_[True, (u[1:] != u[:-1]) | (s[1:] != s[:-1])]
    group = np.cumsum(new_group) - 1
    group_first = np.flatnonzero(new_group)
    group_last = np.r_[group_first[1:], n] - 1
    user_first = np.r_[True, u[1:] != u[:-1]]
    user_start = np.maximum.accumulate(np.where(user_first, np.arange(n), 0))
    rank = (group_first[group] + group_last[group]) / 2 - user_start + 1
    ids, inverse, counts = np.unique(u, return_inverse=True, return_counts=True)
    pos = np.bincount(inverse, weights=y, minlength=len(ids))
    neg = counts - pos
    rank_sum = np.bincount(inverse, weights=rank * y, minlength=len(ids))
    ok = (pos > 0) & (neg > 0)
    per_user = (rank_sum[ok] - pos[ok] * (pos[ok] + 1) / 2) / (pos[ok] * neg[ok])
    if not ok.any():
        return float("nan")
    return float(np.average(per_user, weights=counts[ok]))


def best_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """The probability cut with the highest accuracy (predict like when prob >= cut)."""
    cuts = np.unique(np.r_[probs, 1.0 + EPS])
    order = np.argsort(probs)
    sorted_probs, sorted_labels = probs[order], labels[order]
    # rows below cut c are predicted negative: correct = negatives below + positives at or above
    below = np.searchsorted(sorted_probs, cuts, side="left")
    neg_below = np.r_[0, np.cumsum(1 - sorted_labels)][below]
    pos_above = labels.sum() - np.r_[0, np.cumsum(sorted_labels)][below]
    return float(cuts[np.argmax(neg_below + pos_above)])


def ctr_metrics(
    users: np.ndarray, labels: np.ndarray, probs: np.ndarray, threshold: float
) -> dict[str, float]:
    labels = np.asarray(labels, dtype=float)
    probs = np.clip(np.asarray(probs, dtype=float), EPS, 1 - EPS)
    predicted = probs >= threshold
    return {
        "auc": auc(labels, probs),
        "gauc": gauc(users, labels, probs),
        "logloss": float(log_loss(labels, probs, labels=[0, 1])),
        "accuracy": float((predicted == (labels > 0.5)).mean()),
        "f1": float(f1_score(labels > 0.5, predicted, zero_division=0)),
        "threshold": threshold,
        "rows": len(labels),
        "positive_share": float(labels.mean()),
    }


def rating_metrics(ratings: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    err = np.asarray(predicted, dtype=float) - np.asarray(ratings, dtype=float)
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err))), "rows": len(err)}
