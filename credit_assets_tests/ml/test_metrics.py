import numpy as np
import pandas as pd
import pytest

from credit_assets.ml.metrics import METRIC_KEYS, classification_metrics, predicted_grades
from credit_assets.ml.schema import GRADES

WORKED_EXAMPLE = [  # (true grade, P(Bad), P(Good), P(Standard))
    ("Bad", 0.60, 0.10, 0.30),
    ("Bad", 0.30, 0.20, 0.50),
    ("Standard", 0.20, 0.10, 0.70),
    ("Standard", 0.10, 0.50, 0.40),
    ("Standard", 0.35, 0.20, 0.45),
    ("Bad", 0.50, 0.30, 0.20),
]


def _example() -> tuple[list[str], pd.DataFrame]:
    y_true = [row[0] for row in WORKED_EXAMPLE]
    proba = pd.DataFrame([row[1:] for row in WORKED_EXAMPLE], columns=list(GRADES))
    return y_true, proba


def _assert_plain(metrics: dict) -> None:
    """Plain Python values only: numpy scalars and NaN do not survive JSONB/DECIMAL/MLflow cleanly."""
    for key in ("accuracy", "precision", "recall", "macro_f1", "weighted_f1"):
        assert type(metrics[key]) is float, key
        assert not np.isnan(metrics[key]), key
    assert metrics["auc"] is None or type(metrics["auc"]) is float
    assert type(metrics["total_samples"]) is int
    assert list(metrics["f1_by_grade"]) == list(GRADES)
    assert all(type(value) is float for value in metrics["f1_by_grade"].values())
    assert list(metrics["predictions_distribution"]) == list(GRADES)
    assert all(type(value) is int for value in metrics["predictions_distribution"].values())


def test_worked_example_gives_the_documented_values():
    metrics = classification_metrics(*_example())
    assert set(metrics) == set(METRIC_KEYS)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["precision"] == pytest.approx(5 / 6)
    assert metrics["recall"] == pytest.approx(4 / 6)
    assert metrics["weighted_f1"] == pytest.approx(0.7333, abs=5e-5)
    assert metrics["macro_f1"] == pytest.approx(0.4889, abs=5e-5)
    assert metrics["f1_by_grade"] == pytest.approx({"Bad": 0.8, "Good": 0.0, "Standard": 0.6667}, abs=5e-5)
    assert metrics["auc"] == pytest.approx(0.8333, abs=5e-5)  # mean of Bad 8/9 and Standard 7/9
    assert metrics["predictions_distribution"] == {"Bad": 2, "Good": 1, "Standard": 3}
    assert metrics["total_samples"] == 6
    _assert_plain(metrics)


def test_metrics_are_not_rounded():
    metrics = classification_metrics(*_example())
    assert metrics["accuracy"] == 4 / 6
    assert metrics["auc"] == pytest.approx((8 / 9 + 7 / 9) / 2, abs=1e-12)


def test_month_with_a_single_grade_has_no_auc_but_every_other_metric():
    y_true, proba = _example()
    metrics = classification_metrics(["Standard"] * 6, proba)
    assert metrics["auc"] is None
    assert metrics["accuracy"] == pytest.approx(3 / 6)
    assert metrics["f1_by_grade"]["Bad"] == 0.0
    _assert_plain(metrics)


def test_empty_month_is_refused():
    with pytest.raises(ValueError, match="empty"):
        classification_metrics([], pd.DataFrame(columns=list(GRADES), dtype=float))


def test_ungraded_or_unknown_labels_are_refused():
    y_true, proba = _example()
    with pytest.raises(ValueError, match="None"):
        classification_metrics([None, *y_true[1:]], proba)
    with pytest.raises(ValueError, match="'_'"):
        classification_metrics(["_", *y_true[1:]], proba)


def test_probability_frame_must_have_the_grade_columns_in_order_and_match_length():
    y_true, proba = _example()
    with pytest.raises(ValueError, match="columns"):
        classification_metrics(y_true, proba[["Good", "Bad", "Standard"]])
    with pytest.raises(ValueError, match="6 rows but proba has 5"):
        classification_metrics(y_true, proba.head(5))


def test_rows_are_matched_by_position_not_by_index():
    y_true, proba = _example()
    shuffled_index = proba.set_axis([9, 3, 7, 1, 5, 0])
    assert classification_metrics(pd.Series(y_true), shuffled_index) == classification_metrics(y_true, proba)


def test_predicted_grades_breaks_ties_in_grade_order():
    proba = pd.DataFrame([[0.4, 0.4, 0.2], [0.1, 0.45, 0.45]], columns=list(GRADES), index=[4, 2])
    predicted = predicted_grades(proba)
    assert predicted.tolist() == ["Bad", "Good"]
    assert predicted.index.tolist() == [4, 2]
