"""Classification metrics of one model on one month's graded customers, as stored in ``model_metrics``.

The metric list is the original system's: accuracy, weighted precision and recall, AUC, macro and
weighted F1, per-grade F1 and the prediction distribution. Every aggregate is computed over the fixed
grade list GRADES, not over the grades that happen to occur in the month, so months stay comparable
and every JSON dict has all three grades as keys.

Values are plain Python ``float``/``int`` (they go to JSONB and DECIMAL columns and MLflow; numpy
scalars and NaN do not serialise cleanly), unrounded (the database layer rounds). An undefined metric
is ``None``, never NaN or 0: AUC of a month whose customers all share one grade is undefined, and a
0 would read as "worst possible model".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from credit_assets.ml.schema import GRADES

METRIC_KEYS: tuple[str, ...] = (
    "accuracy",
    "precision",
    "recall",
    "auc",
    "macro_f1",
    "weighted_f1",
    "total_samples",
    "f1_by_grade",
    "predictions_distribution",
)


def check_grades(labels: pd.Series, what: str = "grades") -> None:
    """Refuse labels that are missing or not one of GRADES, naming the first offending value."""
    invalid = labels.isna() | ~labels.isin(GRADES)
    if invalid.any():
        bad_value = labels[invalid].iloc[0]
        raise ValueError(
            f"{what} must be one of {GRADES} (ungraded customers excluded), found {bad_value!r} "
            f"in {int(invalid.sum())} row(s)"
        )


def check_probabilities(proba: pd.DataFrame) -> None:
    """A probability frame has exactly the GRADES columns, in order, with no missing value."""
    if tuple(proba.columns) != GRADES:
        raise ValueError(f"probability frame must have columns {GRADES}, got {tuple(proba.columns)}")
    if proba.isna().to_numpy().any():
        raise ValueError("probability frame contains missing values")


def predicted_grades(proba: pd.DataFrame) -> pd.Series:
    """Most probable grade per row; a tie goes to the grade listed first in GRADES.

    Vectorised argmax over the fixed column order, so the same probabilities always give the same
    grade wherever they are turned into a prediction (training, scoring, monitoring).
    """
    check_probabilities(proba)
    best = np.argmax(proba.to_numpy(dtype=np.float64), axis=1)
    return pd.Series(np.asarray(GRADES, dtype=object)[best], index=proba.index, name="predicted_grade")


def classification_metrics(y_true: Sequence[str] | pd.Series, proba: pd.DataFrame) -> dict[str, Any]:
    """Metrics of probabilities ``proba`` (columns GRADES) against true grades ``y_true``.

    ``y_true`` holds only graded customers, in the row order of ``proba``. Raises ``ValueError`` for
    an empty month: there is nothing to measure, and the caller decides to store no row.
    """
    truth = pd.Series(list(y_true), dtype=object)
    if truth.empty:
        raise ValueError("no graded customers to evaluate: y_true is empty")
    check_grades(truth, what="y_true")
    check_probabilities(proba)
    if len(proba) != len(truth):
        raise ValueError(f"y_true has {len(truth)} rows but proba has {len(proba)}")

    y_true_arr = truth.to_numpy(dtype=object)
    y_pred_arr = predicted_grades(proba).to_numpy(dtype=object)
    labels = list(GRADES)
    f1_per_grade = f1_score(y_true_arr, y_pred_arr, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true_arr, y_pred_arr)),
        "precision": _weighted(precision_score, y_true_arr, y_pred_arr),
        "recall": _weighted(recall_score, y_true_arr, y_pred_arr),
        "auc": one_vs_rest_auc(y_true_arr, proba),
        "macro_f1": float(f1_score(y_true_arr, y_pred_arr, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": _weighted(f1_score, y_true_arr, y_pred_arr),
        "total_samples": int(len(truth)),
        "f1_by_grade": {grade: float(value) for grade, value in zip(GRADES, f1_per_grade, strict=True)},
        "predictions_distribution": {grade: int((y_pred_arr == grade).sum()) for grade in GRADES},
    }


def one_vs_rest_auc(y_true: np.ndarray, proba: pd.DataFrame) -> float | None:
    """Mean binary AUC of "this grade vs the others" over the grades present in ``y_true``.

    A grade absent from the month has no positives, so its AUC is undefined and it is left out rather
    than counted as 0 or 0.5. With fewer than two grades present no AUC is defined: ``None``.
    """
    present = [grade for grade in GRADES if (y_true == grade).any()]
    if len(present) < 2:
        return None
    scores = [roc_auc_score(y_true == grade, proba[grade].to_numpy()) for grade in present]
    return float(np.mean(scores))


def _weighted(metric: Any, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(metric(y_true, y_pred, labels=list(GRADES), average="weighted", zero_division=0))
