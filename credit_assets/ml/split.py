"""Out-of-time splits: which months a model for month M learns from, and which month it is tested on.

A credit model is used on customers who arrive *after* it was trained, so it is judged the same way:
trained on older cohorts, tested on a newer one it has never seen. A random split would let the model
peek at the test month's customers and overstate how well it will do next month, so there is none here.

For a model "trained for use from month M" the window is the 12 months before M, ``[M-12, M-1]``. Its
last month (M-1) is held out as the test month; the 11 months before it are the training months. Only
graded customers take part: a customer without a grade can be scored but neither learned from nor
measured against.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from credit_assets.ml.schema import GRADE, SNAPSHOT_DATE

DEFAULT_WINDOW_MONTHS = 12

MonthLike = dt.date | dt.datetime | pd.Timestamp | str


class EmptySplitError(ValueError):
    """A split left the training or the held-out part without a single graded customer.

    Raised instead of returning an empty frame because a model trained (or tested) on nothing is
    worse than no model: the message names the months so the operator can see which data is missing.
    """


def as_month(month: MonthLike) -> dt.date:
    """Normalise a month given as date, datetime, Timestamp or ISO string to the date of its first day.

    A value that is not the first of a month is refused rather than floored: a partition key such as
    ``2024-03-15`` means someone passed a day where a month was expected, and flooring would hide that.
    """
    try:
        timestamp = pd.Timestamp(month)
    except (TypeError, ValueError) as error:
        raise ValueError(f"not a month: {month!r} (expected a date such as '2024-03-01')") from error
    if pd.isna(timestamp):
        raise ValueError(f"not a month: {month!r} (expected a date such as '2024-03-01')")
    if timestamp.day != 1 or timestamp != timestamp.normalize():
        raise ValueError(f"a month must be the first day of the month at midnight, got {month!r}")
    return timestamp.date()


def add_months(month: MonthLike, n_months: int) -> dt.date:
    """The first day of the month ``n_months`` after ``month`` (negative goes back)."""
    first_day = as_month(month)
    month_index = first_day.year * 12 + (first_day.month - 1) + n_months
    return dt.date(month_index // 12, month_index % 12 + 1, 1)


def training_window(month: MonthLike, n_months: int = DEFAULT_WINDOW_MONTHS) -> tuple[dt.date, dt.date]:
    """First and last month (both inclusive) of the data a model for ``month`` may see: ``[M-n, M-1]``.

    The window ends the month *before* M because month M's grades are what the model will later be
    measured against; training on them would be training on the answers.
    """
    if n_months < 1:
        raise ValueError(f"a training window needs at least one month, got n_months={n_months}")
    return add_months(month, -n_months), add_months(month, -1)


def graded_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Only the customers whose grade is known: the only ones a model can learn from or be tested on."""
    return frame.loc[frame[GRADE].notna()]


def time_split(frame: pd.DataFrame, holdout_month: MonthLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split graded customers into (train: every month before ``holdout_month``, holdout: that month).

    Rows after the holdout month are never used: they are the future relative to the test month, and
    training on them would leak. Ungraded rows are dropped from both parts. Raises
    :class:`EmptySplitError` naming the months when either part is empty.
    """
    holdout_start = pd.Timestamp(as_month(holdout_month))
    graded = graded_rows(frame)
    snapshot = graded[SNAPSHOT_DATE]
    train = graded.loc[snapshot < holdout_start]
    holdout = graded.loc[snapshot == holdout_start]
    if holdout.empty:
        raise EmptySplitError(
            f"no graded customers in the holdout month {holdout_start.date()}; "
            f"months with graded customers: {_describe_months(graded)}"
        )
    if train.empty:
        raise EmptySplitError(
            f"no graded customers before the holdout month {holdout_start.date()} to train on; "
            f"months with graded customers: {_describe_months(graded)}"
        )
    return train, holdout


def split_for_month(
    frame: pd.DataFrame, month: MonthLike, n_months: int = DEFAULT_WINDOW_MONTHS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The (train, holdout) pair for a model trained for use from ``month``.

    Convenience over :func:`training_window` + :func:`time_split` for callers holding more months than
    the window (rows outside ``[M-n, M-1]`` are ignored). With ``n_months=12`` the training part covers
    ``M-12 .. M-2`` and the holdout is ``M-1``.
    """
    first_month, last_month = training_window(month, n_months)
    snapshot = frame[SNAPSHOT_DATE]
    in_window = frame.loc[(snapshot >= pd.Timestamp(first_month)) & (snapshot <= pd.Timestamp(last_month))]
    try:
        return time_split(in_window, last_month)
    except EmptySplitError as error:
        raise EmptySplitError(
            f"model for {as_month(month)} (window {first_month} .. {last_month}): {error}"
        ) from error


def _describe_months(frame: pd.DataFrame) -> str:
    months = sorted({ts.date().isoformat() for ts in pd.to_datetime(frame[SNAPSHOT_DATE].unique())})
    return ", ".join(months) if months else "none"
