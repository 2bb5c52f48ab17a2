"""The feature frame of a monthly cohort: one row per customer, identity + grade + FEATURE_COLUMNS.

The cohort of month M is the customers whose attributes and financials are both dated M (inner join: a
customer needs both to be scored). Clickstream is optional per customer (about 70% have it): it is
left-joined on the same month, and a customer without it keeps NaN in fe_1..fe_20, which both model families
handle as missing.
"""

from __future__ import annotations

import pandas as pd

from credit_assets.ml.cleaning import CUSTOMER_ID_COLUMN, SNAPSHOT_COLUMN
from credit_assets.ml.schema import (
    CATEGORICAL_FEATURES,
    CLICKSTREAM_COLUMNS,
    CUSTOMER_ID,
    FEATURE_COLUMNS,
    GRADE,
    NUMERIC_FEATURES,
    SNAPSHOT_DATE,
)
from credit_assets.ml.sources import SOURCE_PATH_ATTR, SourceDataError, describe_rows

JOIN_KEYS: list[str] = [CUSTOMER_ID_COLUMN, SNAPSHOT_COLUMN]
IDENTITY_COLUMNS: tuple[str, ...] = (CUSTOMER_ID, SNAPSHOT_DATE, GRADE)
OUTPUT_COLUMNS: tuple[str, ...] = (*IDENTITY_COLUMNS, *FEATURE_COLUMNS)
_SHOWN_DUPLICATES = 5


def build_features(
    attributes: pd.DataFrame,
    financials: pd.DataFrame,
    clickstream: pd.DataFrame | None,
    *,
    require_cohort: bool = True,
) -> pd.DataFrame:
    """Join the cleaned sources of one month into the feature frame.

    Columns: `customer_id`, `snapshot_date`, `grade` (one of GRADES or None), then FEATURE_COLUMNS in order:
    numbers float64, categories object with NaN for missing. Rows are sorted by snapshot_date and customer_id
    (a stable order makes reruns comparable). `clickstream` may be None or empty for a month it does not cover
    (the real data has none for 2025-01): every fe_* is then NaN.

    A customer listed twice for a month in any source raises, naming the customer: joining would multiply its
    rows and silently weight it twice in training and metrics.

    A month in which no customer has both attributes and financials raises (see `raise_empty_cohort`):
    scoring an empty cohort would replace the month's stored predictions with nothing. A caller joining a
    part of a month (a batch of customers) passes `require_cohort=False` and checks the month as a whole.
    """
    attribute_columns = [column for column in FEATURE_COLUMNS if column in attributes.columns]
    financial_columns = [column for column in FEATURE_COLUMNS if column in financials.columns]
    _require_columns(attributes, (*JOIN_KEYS, "Age", "Occupation"), "attributes")
    _require_columns(financials, (*JOIN_KEYS, GRADE), "financials")
    missing_features = [
        column
        for column in FEATURE_COLUMNS
        if column not in attribute_columns
        and column not in financial_columns
        and column not in CLICKSTREAM_COLUMNS
    ]
    if missing_features:
        raise SourceDataError(
            f"cleaned attributes/financials lack feature column(s) {', '.join(missing_features)}"
        )
    clicks = _clickstream_or_empty(clickstream)
    for name, frame in (("attributes", attributes), ("financials", financials), ("clickstream", clicks)):
        reject_duplicate_customers(frame, name)

    cohort = attributes[[*JOIN_KEYS, *attribute_columns]].merge(
        financials[[*JOIN_KEYS, GRADE, *financial_columns]],
        on=JOIN_KEYS,
        how="inner",  # keys are unique on both sides: checked above, cheaper than merge(validate=...)
    )
    if cohort.empty and require_cohort:
        raise_empty_cohort(attributes, financials)
    cohort = cohort.merge(clicks[[*JOIN_KEYS, *CLICKSTREAM_COLUMNS]], on=JOIN_KEYS, how="left")
    cohort = cohort.sort_values([SNAPSHOT_COLUMN, CUSTOMER_ID_COLUMN], kind="stable", ignore_index=True)
    return _typed_feature_frame(cohort)


def reject_duplicate_customers(frame: pd.DataFrame, source: str) -> None:
    """Raise SourceDataError when a customer appears more than once for the same month in `frame`."""
    duplicated = frame.duplicated(JOIN_KEYS, keep=False)
    if not duplicated.any():
        return
    rows = frame.loc[duplicated, JOIN_KEYS]
    first_id, first_month = rows.iloc[0]
    first_rows = rows.index[(rows[CUSTOMER_ID_COLUMN] == first_id).to_numpy()]
    others = rows[CUSTOMER_ID_COLUMN].drop_duplicates().iloc[1:_SHOWN_DUPLICATES].tolist()
    where = f" ({describe_rows(first_rows, frame.index.name)})"
    file_hint = f" of {frame.attrs[SOURCE_PATH_ATTR]}" if frame.attrs.get(SOURCE_PATH_ATTR) else ""
    also = f"; also duplicated: {', '.join(others)}" if others else ""
    raise SourceDataError(
        f"customer {first_id} appears {len(first_rows)} times in {source}{file_hint} for "
        f"{pd.Timestamp(first_month).date().isoformat()}{where}: "
        f"one row per customer and month expected{also}"
    )


def raise_empty_cohort(attributes: pd.DataFrame, financials: pd.DataFrame) -> None:
    """Raise SourceDataError for a month in which no customer has both attributes and financials.

    An empty cohort is never a real month: it means a file holds no row for the month, or the two files
    disagree on every customer id (a wrong or partly overwritten file). Scoring it would replace the
    month's stored predictions with nothing, so it is refused, naming both sources and what they hold.
    """

    def describe(frame: pd.DataFrame, source: str) -> str:
        where = f" ({frame.attrs[SOURCE_PATH_ATTR]})" if frame.attrs.get(SOURCE_PATH_ATTR) else ""
        months = sorted({pd.Timestamp(m).date().isoformat() for m in frame[SNAPSHOT_COLUMN].dropna().unique()})
        examples = frame[CUSTOMER_ID_COLUMN].head(3).tolist()
        return (
            f"{source}{where}: {len(frame)} row(s) for {', '.join(months) or 'no month'}"
            + (f", e.g. customers {examples}" if examples else "")
        )

    raise SourceDataError(
        "no customer has both attributes and financials for this month, so the cohort is empty: "
        f"{describe(attributes, 'attributes')}; {describe(financials, 'financials')}. "
        "Check that both files hold the month and use the same Customer_ID values."
    )


def _clickstream_or_empty(clickstream: pd.DataFrame | None) -> pd.DataFrame:
    if clickstream is not None and len(clickstream):
        _require_columns(clickstream, (*JOIN_KEYS, *CLICKSTREAM_COLUMNS), "clickstream")
        return clickstream
    empty = pd.DataFrame({column: pd.Series(dtype="float64") for column in CLICKSTREAM_COLUMNS})
    empty[CUSTOMER_ID_COLUMN] = pd.Series(dtype=object)
    empty[SNAPSHOT_COLUMN] = pd.Series(dtype="datetime64[ns]")
    return empty


def _typed_feature_frame(cohort: pd.DataFrame) -> pd.DataFrame:
    """Select and cast the contract's columns: numbers float64, categories and grade object with NaN/None."""
    grade = cohort[GRADE].astype(object)
    columns: dict[str, pd.Series] = {
        CUSTOMER_ID: cohort[CUSTOMER_ID_COLUMN].astype(object),
        SNAPSHOT_DATE: cohort[SNAPSHOT_COLUMN].astype("datetime64[ns]"),
        GRADE: grade.where(grade.notna(), None),
    }
    for column in NUMERIC_FEATURES:
        columns[column] = cohort[column].astype("float64")
    for column in CATEGORICAL_FEATURES:
        columns[column] = cohort[column].astype(object)
    return pd.DataFrame(columns, index=cohort.index)[list(OUTPUT_COLUMNS)]


def _require_columns(frame: pd.DataFrame, required: tuple[str, ...], source: str) -> None:
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise SourceDataError(f"cleaned {source} frame is missing column(s) {', '.join(missing)}")
