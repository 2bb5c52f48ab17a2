"""Turning the raw string frames of `sources.py` into typed frames.

The source data is dirty on purpose, and every kind of dirt has one rule here:

- numbers with trailing underscores (`"35547.71_"`, `"28_"`) keep their number;
- a value of underscores only (`"_"`, `"_______"`) or wrapped in double underscores (`"__10000__"`,
  `"__-333333333333333333333333333__"`) is a placeholder for "unknown", never the number it seems to hold;
- empty strings and the usual NA spellings are missing;
- impossible values are missing: ages outside VALID_AGE_RANGE, negative counts;
- categorical placeholders (`"_______"`, `"NM"`, `"!@9#%8"`) are missing categories;
- `Credit_History_Age` "22 Years and 5 Months" becomes months (269.0);
- `Type_of_Loan` becomes one count column per loan type (LOAN_TYPE_FEATURES).

Anything else that does not parse is an error (SourceDataError naming the file, line, column and value), never
a silent NaN: an unknown kind of dirt must be looked at, not learned from.

Everything is vectorised (pandas str accessor, `to_numeric`, regex over the distinct values): these functions
run on months of a million rows. The output keeps the input's index (the file line numbers when the frame
comes from `sources.read_source_month`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from credit_assets.ml.schema import (
    CLICKSTREAM_COLUMNS,
    GRADE,
    GRADE_SOURCE_COLUMN,
    GRADES,
    LOAN_TYPE_FEATURES,
    LOAN_TYPES,
    UNKNOWN_GRADE_MARKER,
)
from credit_assets.ml.sources import SOURCE_PATH_ATTR, SourceDataError, describe_rows

SourceName = str | os.PathLike[str] | None

CUSTOMER_ID_COLUMN = "Customer_ID"
SNAPSHOT_COLUMN = "snapshot_date"

# Ages are plausible between these bounds (inclusive). The real data's valid ages run 14..56; its impossible
# ones are sentinels and typos (-500, 169, 8678 ...). 100 leaves room for real old customers without
# letting a typo through as a feature value.
VALID_AGE_RANGE: tuple[float, float] = (14.0, 100.0)

# Counts of things a customer has or did: a negative value (-1, -100) is impossible, so it is missing.
COUNT_COLUMNS: tuple[str, ...] = (
    "Num_Bank_Accounts",
    "Num_Credit_Card",
    "Num_of_Loan",
    "Num_of_Delayed_Payment",
    "Num_Credit_Inquiries",
)

ATTRIBUTE_NUMBERS: tuple[str, ...] = ("Age",)
ATTRIBUTE_CATEGORIES: tuple[str, ...] = ("Occupation",)

FINANCIAL_NUMBERS: tuple[str, ...] = (
    "Annual_Income",
    "Monthly_Inhand_Salary",
    "Num_Bank_Accounts",
    "Num_Credit_Card",
    "Interest_Rate",
    "Num_of_Loan",
    "Delay_from_due_date",
    "Num_of_Delayed_Payment",
    "Changed_Credit_Limit",
    "Num_Credit_Inquiries",
    "Outstanding_Debt",
    "Credit_Utilization_Ratio",
    "Total_EMI_per_month",
    "Amount_invested_monthly",
    "Monthly_Balance",
)
HISTORY_AGE_COLUMN = "Credit_History_Age"
LOAN_TYPE_COLUMN = "Type_of_Loan"
FINANCIAL_CATEGORIES: tuple[str, ...] = ("Payment_of_Min_Amount", "Payment_Behaviour")

LOAN_DAILY_NUMBERS: tuple[str, ...] = (
    "tenure",
    "installment_num",
    "loan_amt",
    "due_amt",
    "paid_amt",
    "overdue_amt",
    "balance",
)
LOAN_DAILY_DATES: tuple[str, ...] = ("loan_start_date", SNAPSHOT_COLUMN)

# Spellings of "no value" in any column. The reader keeps them as text (keep_default_na=False) so that they
# are decided here, once, for every source.
MISSING_TOKENS: frozenset[str] = frozenset({"", "NA", "N/A", "NaN", "nan", "NULL", "null", "None"})

# Placeholders that look like a category but mean "not given". Besides these, any value without a letter
# (`"_______"`, `"!@9#%8"`) is a placeholder in every categorical column.
CATEGORY_PLACEHOLDERS: dict[str, frozenset[str]] = {
    "Payment_of_Min_Amount": frozenset({"NM"}),  # "not mentioned"
}

_PLACEHOLDER_NUMBER = re.compile(r"^(?:_+|__.*__)$")
_TRAILING_UNDERSCORES = re.compile(r"_+$")
_HISTORY_AGE = re.compile(r"^(\d+)\s+Years?\s+and\s+(\d+)\s+Months?$", re.IGNORECASE)
_LOAN_SEPARATOR = re.compile(r"\s*(?:,\s*and\s+|,|\s+and\s+)\s*")
_SHOWN_EXAMPLES = 3


def clean_attributes(raw: pd.DataFrame, source_name: SourceName = None) -> pd.DataFrame:
    """Typed attributes: Customer_ID, Age (float64), Occupation, snapshot_date.

    Ages from 14 to 100 (VALID_AGE_RANGE) are kept; anything else (-500, 169, 8678 in the real data) is a
    sentinel or a typo, so it becomes missing rather than a feature value a model could split on. Name and SSN
    are personal data: they are not part of the result, so nothing downstream can store or learn from them.
    """
    label = _source_label(raw, source_name, "attributes")
    _require_columns(
        raw, (CUSTOMER_ID_COLUMN, *ATTRIBUTE_NUMBERS, *ATTRIBUTE_CATEGORIES, SNAPSHOT_COLUMN), label
    )
    age = parse_numbers(raw["Age"], "Age", source_name=label)
    low, high = VALID_AGE_RANGE
    cleaned = pd.DataFrame(
        {
            CUSTOMER_ID_COLUMN: parse_identifiers(raw[CUSTOMER_ID_COLUMN], source_name=label),
            "Age": age.where(age.between(low, high)),
            "Occupation": parse_categories(raw["Occupation"], "Occupation"),
            SNAPSHOT_COLUMN: parse_dates(raw[SNAPSHOT_COLUMN], SNAPSHOT_COLUMN, source_name=label),
        },
        index=raw.index,
    )
    return _with_source(cleaned, raw, source_name)


def clean_financials(raw: pd.DataFrame, source_name: SourceName = None) -> pd.DataFrame:
    """Typed financials: Customer_ID, snapshot_date, grade, numeric features, loan-type counts, categories.

    `Credit_Mix` becomes `grade` (one of GRADES, or None when unknown); `Type_of_Loan` becomes the
    LOAN_TYPE_FEATURES counts; `Credit_History_Age` is in months.
    """
    label = _source_label(raw, source_name, "financials")
    required = (
        CUSTOMER_ID_COLUMN,
        *FINANCIAL_NUMBERS,
        HISTORY_AGE_COLUMN,
        LOAN_TYPE_COLUMN,
        *FINANCIAL_CATEGORIES,
        GRADE_SOURCE_COLUMN,
        SNAPSHOT_COLUMN,
    )
    _require_columns(raw, required, label)
    columns: dict[str, pd.Series] = {
        CUSTOMER_ID_COLUMN: parse_identifiers(raw[CUSTOMER_ID_COLUMN], source_name=label),
        SNAPSHOT_COLUMN: parse_dates(raw[SNAPSHOT_COLUMN], SNAPSHOT_COLUMN, source_name=label),
        GRADE: parse_grades(raw[GRADE_SOURCE_COLUMN], source_name=label),
    }
    for column in FINANCIAL_NUMBERS:
        numbers = parse_numbers(raw[column], column, source_name=label)
        columns[column] = numbers.where(numbers >= 0) if column in COUNT_COLUMNS else numbers
    columns[HISTORY_AGE_COLUMN] = parse_history_months(raw[HISTORY_AGE_COLUMN], source_name=label)
    columns.update(count_loan_types(raw[LOAN_TYPE_COLUMN], source_name=label))
    for column in FINANCIAL_CATEGORIES:
        columns[column] = parse_categories(raw[column], column)
    return _with_source(pd.DataFrame(columns, index=raw.index), raw, source_name)


def clean_clickstream(raw: pd.DataFrame, source_name: SourceName = None) -> pd.DataFrame:
    """Typed clickstream: Customer_ID, snapshot_date and fe_1..fe_20 as float64."""
    label = _source_label(raw, source_name, "clickstream")
    _require_columns(raw, (CUSTOMER_ID_COLUMN, SNAPSHOT_COLUMN, *CLICKSTREAM_COLUMNS), label)
    columns: dict[str, pd.Series] = {
        CUSTOMER_ID_COLUMN: parse_identifiers(raw[CUSTOMER_ID_COLUMN], source_name=label),
        SNAPSHOT_COLUMN: parse_dates(raw[SNAPSHOT_COLUMN], SNAPSHOT_COLUMN, source_name=label),
    }
    for column in CLICKSTREAM_COLUMNS:
        columns[column] = parse_numbers(raw[column], column, source_name=label)
    return _with_source(pd.DataFrame(columns, index=raw.index), raw, source_name)


def clean_loan_daily(raw: pd.DataFrame, source_name: SourceName = None) -> pd.DataFrame:
    """Typed loan instalment rows: ids as str, amounts and counts float64, both dates datetime64[ns]."""
    label = _source_label(raw, source_name, "loan_daily")
    _require_columns(raw, ("loan_id", CUSTOMER_ID_COLUMN, *LOAN_DAILY_NUMBERS, *LOAN_DAILY_DATES), label)
    columns: dict[str, pd.Series] = {
        "loan_id": parse_identifiers(raw["loan_id"], column="loan_id", source_name=label),
        CUSTOMER_ID_COLUMN: parse_identifiers(raw[CUSTOMER_ID_COLUMN], source_name=label),
        "loan_start_date": parse_dates(raw["loan_start_date"], "loan_start_date", source_name=label),
    }
    for column in LOAN_DAILY_NUMBERS:
        columns[column] = parse_numbers(raw[column], column, source_name=label)
    columns[SNAPSHOT_COLUMN] = parse_dates(raw[SNAPSHOT_COLUMN], SNAPSHOT_COLUMN, source_name=label)
    return _with_source(pd.DataFrame(columns, index=raw.index), raw, source_name)


def parse_numbers(values: pd.Series, column: str, *, source_name: SourceName = None) -> pd.Series:
    """Parse dirty numeric text to float64.

    Clean values (surrounding spaces allowed) go through one `to_numeric` pass; only the values it rejects (a
    small share) go through the dirt rules: placeholders and missing tokens become NaN, trailing underscores
    are dropped, and whatever still does not parse (or parses to infinity) raises SourceDataError. Running the
    str accessor (a Python loop per value) only on that share keeps a million-row month fast.
    """
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", copy=True)
    not_parsed = np.flatnonzero(np.isnan(numbers))
    if not_parsed.size:
        dirty = _as_text(values.iloc[not_parsed])
        number_like = ~(dirty.str.match(_PLACEHOLDER_NUMBER) | dirty.isin(MISSING_TOKENS)).to_numpy()
        unwrapped = dirty[number_like].str.replace(_TRAILING_UNDERSCORES, "", regex=True)
        recovered = pd.to_numeric(unwrapped, errors="coerce").to_numpy(dtype="float64")
        _raise_for_invalid(
            dirty[number_like][np.isnan(recovered)], column, "a number", values.index.name, source_name
        )
        numbers[not_parsed[number_like]] = recovered
    infinite = np.isinf(numbers)
    if infinite.any():
        _raise_for_invalid(values[infinite], column, "a finite number", values.index.name, source_name)
    return pd.Series(numbers, index=values.index, dtype="float64")


def parse_history_months(
    values: pd.Series, column: str = HISTORY_AGE_COLUMN, *, source_name: SourceName = None
) -> pd.Series:
    """Parse "N Years and M Months" to a number of months (float64); missing or placeholder -> NaN."""

    def months_of(distinct: pd.Series) -> pd.Series:
        parts = distinct.str.extract(_HISTORY_AGE).astype("float64")
        months = parts[0] * 12 + parts[1]
        _raise_for_invalid(
            distinct[months.isna() & ~_is_missing_text(distinct)],
            column,
            '"N Years and M Months"',
            None,
            source_name,
            full_values=values,
        )
        return months

    return _map_distinct(values, months_of).astype("float64")


def count_loan_types(values: pd.Series, *, source_name: SourceName = None) -> dict[str, pd.Series]:
    """Count each loan type in `Type_of_Loan` lists such as "Auto Loan, Payday Loan, and Auto Loan".

    Returns one float64 Series per LOAN_TYPE_FEATURES column (how many loans of that type; 0.0 for an empty or
    missing list, which in the data goes with Num_of_Loan 0). A type that is not in LOAN_TYPES raises: the
    feature list is fixed at training time, so a new type has to be added to schema.py, not dropped here.
    """
    codes, distinct = pd.factorize(values.fillna(""))
    distinct_text = _as_text(pd.Series(distinct, dtype=object))
    listed = distinct_text.where(~_is_missing_text(distinct_text), "")
    # One row per listed loan, indexed by the position of its distinct list: counted in one groupby.
    items = listed.str.split(_LOAN_SEPARATOR).explode()
    items = items[items.notna() & items.ne("")]
    unknown = ~items.isin(LOAN_TYPES)
    if unknown.any():
        _raise_unknown_loan_type(items[unknown], distinct_text, values.index, codes, source_name)
    counts = (
        items.groupby([items.index, items])
        .size()
        .unstack(fill_value=0)
        .reindex(index=range(len(distinct_text)), columns=list(LOAN_TYPES), fill_value=0)
    )
    return {
        feature: pd.Series(counts[loan_type].to_numpy()[codes], index=values.index, dtype="float64")
        for feature, loan_type in zip(LOAN_TYPE_FEATURES, LOAN_TYPES, strict=True)
    }


def parse_grades(
    values: pd.Series, column: str = GRADE_SOURCE_COLUMN, *, source_name: SourceName = None
) -> pd.Series:
    """Map `Credit_Mix` to one of GRADES, or None when unknown ("_", or empty).

    Any other value raises: a misspelt grade silently treated as unknown would shrink the training data, and
    one treated as a grade would train a fourth class.
    """

    def grades_of(distinct: pd.Series) -> pd.Series:
        unknown = distinct.isin({UNKNOWN_GRADE_MARKER, ""})
        _raise_for_invalid(
            distinct[~distinct.isin(GRADES) & ~unknown],
            column,
            f"a grade ({', '.join(GRADES)} or {UNKNOWN_GRADE_MARKER!r})",
            None,
            source_name,
            full_values=values,
        )
        return distinct.where(~unknown, None)

    grades = _map_distinct(values, grades_of)
    return grades.astype(object).where(grades.notna(), None)


def parse_categories(values: pd.Series, column: str) -> pd.Series:
    """Strip a categorical column and turn its placeholders into NaN (object dtype).

    A placeholder is a missing token, a value without any letter (`"_______"`, `"!@9#%8"`) or a
    column-specific marker from CATEGORY_PLACEHOLDERS (`"NM"`). Other values are kept as they are: the encoder
    freezes the category list at training time and handles unseen ones.
    """

    def categories_of(distinct: pd.Series) -> pd.Series:
        placeholder = (
            _is_missing_text(distinct)
            | ~distinct.str.contains(r"[A-Za-z]", regex=True)
            | distinct.isin(CATEGORY_PLACEHOLDERS.get(column, frozenset()))
        )
        return distinct.where(~placeholder, np.nan)

    return _map_distinct(values, categories_of).astype(object)


def parse_identifiers(
    values: pd.Series, *, column: str = CUSTOMER_ID_COLUMN, source_name: SourceName = None
) -> pd.Series:
    """Strip identifiers; an empty one raises, since a row that cannot be joined cannot be scored."""
    text = _as_text(values)
    _raise_for_invalid(
        text[text.eq("")], column, "an identifier (it is empty)", values.index.name, source_name
    )
    return text.astype(object)


def parse_dates(values: pd.Series, column: str, *, source_name: SourceName = None) -> pd.Series:
    """Parse ISO `YYYY-MM-DD` dates to datetime64[ns]; a missing or malformed date raises."""

    def dates_of(distinct: pd.Series) -> pd.Series:
        dates = pd.to_datetime(distinct, format="%Y-%m-%d", errors="coerce")
        _raise_for_invalid(
            distinct[dates.isna()], column, "an ISO date YYYY-MM-DD", None, source_name, full_values=values
        )
        return dates

    return _map_distinct(values, dates_of).astype("datetime64[ns]")


def _as_text(values: pd.Series) -> pd.Series:
    """Values as stripped Python strings; NaN (a short CSV row, a test frame) becomes the empty string."""
    return values.fillna("").astype(str).str.strip()


def _is_missing_text(text: pd.Series) -> pd.Series:
    return text.isin(MISSING_TOKENS) | text.str.fullmatch(r"_+")


def _map_distinct(values: pd.Series, convert: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """Apply `convert` to the distinct values only (stripped text) and spread the result back to every row.

    Columns such as Credit_History_Age, Credit_Mix, the categories or the dates hold a few hundred distinct
    values over millions of rows: converting those once is much cheaper than running the regex on every row.
    """
    codes, distinct = pd.factorize(values.fillna(""))
    converted = convert(_as_text(pd.Series(distinct, dtype=object)))
    return pd.Series(converted.to_numpy()[codes], index=values.index)


def _source_label(raw: pd.DataFrame, source_name: SourceName, source: str) -> str:
    """The name errors use for the data: the caller's, else the file it was read from, else the source."""
    if source_name is not None:
        return os.fspath(source_name)
    return str(raw.attrs.get(SOURCE_PATH_ATTR) or f"{source} data")


def _with_source(cleaned: pd.DataFrame, raw: pd.DataFrame, source_name: SourceName) -> pd.DataFrame:
    """Keep the file the rows came from on the cleaned frame, so later errors (a duplicate customer, an
    empty cohort) can name it too. Only a real name is kept, never the generic "<source> data"."""
    source = os.fspath(source_name) if source_name is not None else raw.attrs.get(SOURCE_PATH_ATTR)
    if source:
        cleaned.attrs[SOURCE_PATH_ATTR] = str(source)
    return cleaned


def _require_columns(raw: pd.DataFrame, required: Iterable[str], label: str) -> None:
    missing = [column for column in required if column not in raw.columns]
    if missing:
        raise SourceDataError(f"{label} is missing required column(s) {', '.join(missing)}")


def _raise_for_invalid(
    invalid: pd.Series,
    column: str,
    expected: str,
    index_name: str | None,
    source_name: SourceName,
    full_values: pd.Series | None = None,
) -> None:
    """Raise SourceDataError for the first invalid value, naming source, line/row, column, value and count.

    `invalid` holds the bad values, indexed like the source rows; or, when `full_values` is given, the bad
    distinct values, whose rows are then looked up in `full_values`.
    """
    if invalid.empty:
        return
    if full_values is not None:
        text = _as_text(full_values)
        rows = text[text.isin(set(invalid))]
        invalid, index_name = rows, full_values.index.name
    first_value = invalid.iloc[0]
    examples = ", ".join(repr(value) for value in invalid.drop_duplicates().iloc[:_SHOWN_EXAMPLES])
    where = describe_rows([invalid.index[0]], index_name)
    label = os.fspath(source_name) if source_name is not None else "data"
    raise SourceDataError(
        f"{label} {where}, column {column}: cannot parse {first_value!r} as {expected} "
        f"({len(invalid)} such value(s) in this column; e.g. {examples})"
    )


def _raise_unknown_loan_type(
    unknown_items: pd.Series,
    distinct_lists: pd.Series,
    index: pd.Index,
    codes: np.ndarray,
    source_name: SourceName,
) -> None:
    """Name the first row whose loan list holds a type outside LOAN_TYPES, the list and its unknown types.

    `unknown_items` is indexed by the position of the list among `distinct_lists`; `codes` maps rows to it.
    """
    first_row = int(np.flatnonzero(np.isin(codes, unknown_items.index.unique()))[0])
    first_position = int(codes[first_row])
    first_list = distinct_lists.iloc[first_position]
    unknown = unknown_items[unknown_items.index == first_position].tolist()
    where = describe_rows([index[first_row]], index.name)
    label = os.fspath(source_name) if source_name is not None else "data"
    raise SourceDataError(
        f"{label} {where}, column {LOAN_TYPE_COLUMN}: unknown loan type(s) {unknown} in {first_list!r}; "
        f"known types are {list(LOAN_TYPES)} (add a new type to LOAN_TYPES in schema.py)"
    )
