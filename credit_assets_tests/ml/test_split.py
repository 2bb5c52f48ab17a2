import datetime as dt

import pandas as pd
import pytest

from credit_assets.ml.split import (
    EmptySplitError,
    add_months,
    as_month,
    split_for_month,
    time_split,
    training_window,
)


def _frame(rows: list[tuple[str, str, str | None]]) -> pd.DataFrame:
    """(customer_id, month, grade) rows; features are irrelevant to splitting."""
    return pd.DataFrame(
        {
            "customer_id": [row[0] for row in rows],
            "snapshot_date": pd.to_datetime([row[1] for row in rows]),
            "grade": pd.Series([row[2] for row in rows], dtype=object),
            "Age": [30.0] * len(rows),
        }
    )


def test_training_window_is_the_twelve_months_before_the_month():
    assert training_window(dt.date(2024, 3, 1)) == (dt.date(2023, 3, 1), dt.date(2024, 2, 1))


def test_training_window_crosses_year_boundary_and_accepts_partition_key_strings():
    assert training_window("2024-01-01") == (dt.date(2023, 1, 1), dt.date(2023, 12, 1))
    assert training_window(pd.Timestamp("2024-01-01"), n_months=3) == (
        dt.date(2023, 10, 1),
        dt.date(2023, 12, 1),
    )


def test_training_window_refuses_a_day_that_is_not_a_month_start():
    with pytest.raises(ValueError, match="first day"):
        training_window("2024-03-15")


def test_training_window_refuses_non_positive_length():
    with pytest.raises(ValueError, match="n_months=0"):
        training_window("2024-03-01", n_months=0)


def test_add_months_goes_both_ways():
    assert add_months("2024-11-01", 3) == dt.date(2025, 2, 1)
    assert add_months("2024-02-01", -14) == dt.date(2022, 12, 1)
    assert as_month(dt.datetime(2024, 5, 1)) == dt.date(2024, 5, 1)


def test_time_split_holds_out_the_month_and_trains_on_earlier_graded_rows_only():
    frame = _frame(
        [
            ("a", "2024-01-01", "Good"),
            ("b", "2024-01-01", None),  # ungraded: never trained on
            ("c", "2024-02-01", "Bad"),
            ("d", "2024-03-01", "Standard"),  # holdout
            ("e", "2024-03-01", None),  # ungraded: never tested on
            ("f", "2024-04-01", "Good"),  # after holdout: future, never used
        ]
    )
    train, holdout = time_split(frame, "2024-03-01")
    assert list(train["customer_id"]) == ["a", "c"]
    assert list(holdout["customer_id"]) == ["d"]


def test_time_split_names_the_month_when_the_holdout_has_no_graded_customer():
    frame = _frame([("a", "2024-01-01", "Good"), ("b", "2024-03-01", None)])
    with pytest.raises(EmptySplitError, match=r"holdout month 2024-03-01.*2024-01-01"):
        time_split(frame, dt.date(2024, 3, 1))


def test_time_split_names_the_month_when_nothing_precedes_the_holdout():
    frame = _frame([("a", "2024-03-01", "Good"), ("b", "2024-02-01", None)])
    with pytest.raises(EmptySplitError, match="before the holdout month 2024-03-01"):
        time_split(frame, "2024-03-01")


def test_split_for_month_uses_the_window_and_holds_out_its_last_month():
    months = pd.date_range("2023-01-01", "2024-04-01", freq="MS")
    frame = _frame([(f"c{i}", str(month.date()), "Good") for i, month in enumerate(months)])
    train, holdout = split_for_month(frame, "2024-03-01")
    assert set(holdout["snapshot_date"]) == {pd.Timestamp("2024-02-01")}
    assert train["snapshot_date"].min() == pd.Timestamp("2023-03-01")
    assert train["snapshot_date"].max() == pd.Timestamp("2024-01-01")
    assert train["snapshot_date"].nunique() == 11


def test_split_for_month_error_names_the_model_month_and_window():
    frame = _frame([("a", "2024-02-01", "Good")])
    with pytest.raises(EmptySplitError, match=r"model for 2024-03-01 \(window 2023-03-01 \.\. 2024-02-01\)"):
        split_for_month(frame, "2024-03-01")
