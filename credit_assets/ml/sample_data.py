"""A deterministic generator of sample source files shaped like the real CS611 data.

A fresh machine has no real data, and the scale benchmarks need far more than 12,500 customers, so this writes
the four source files with the real columns in the real order, the same kinds of dirt (so the cleaning runs
every rule) and a grade that is a noisy function of several features (so the models have something to learn,
at a macro F1 around 0.9 rather than a perfect or a random score).

Scale: customers are drawn month by month in chunks of CHUNK_CUSTOMERS with numpy, and each chunk is appended
to the (gzip) CSV files before the next is drawn, so memory is bounded by the chunk, not by the month or the
file. Rows are written as text columns joined by `str.join` rather than `DataFrame.to_csv` (about 3x faster
here); numbers with few distinct values (counts, loan amounts, clickstream) are formatted through lookup
tables. Measured on a shared 2-core machine: a month of a million customers (1M attribute and financial
rows, ~2.1M clickstream rows, 11M loan rows) takes about 35 s with a peak of about 0.6 GB, mostly the loan
rows and gzip; `compress=False` is faster for benchmarks.

Determinism: each chunk draws from its own generator seeded by (seed, month, chunk), and gzip headers carry no
timestamp or file name, so the files of a seed are byte-for-byte identical on every run, and a month's rows do
not depend on which other months are generated.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import io
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from credit_assets.ml.schema import CLICKSTREAM_COLUMNS, LOAN_TYPES, REQUIRED_COLUMNS, SOURCE_FILES
from credit_assets.ml.sources import as_month

DEFAULT_MONTHS: tuple[dt.date, ...] = tuple(dt.date(2023 + i // 12, i % 12 + 1, 1) for i in range(25))

CHUNK_CUSTOMERS = 50_000  # customers drawn and written at a time: bounds memory (a chunk's loan rows are 11x)
CLICKSTREAM_SHARE = 0.7  # customers with web clickstream
CLICKSTREAM_MONTHS = 3  # clickstream rows per customer: its cohort month and the following ones
UNKNOWN_GRADE_SHARE = 0.2  # customers whose Credit_Mix is "_"
LOAN_TENURE = 10  # instalments per loan; the loan file has one row per instalment month, 0..tenure
GZIP_LEVEL = 1  # level 1 compresses ~3x faster than the default 6; the files are ~20% larger
FIRST_CUSTOMER_NUMBER = 0x1000

# Shares of each kind of dirt, close to the real data's.
DIRT_SHARES: dict[str, float] = {
    "age_trailing_underscore": 0.05,
    "age_impossible": 0.02,
    "name_with_quotes": 0.02,
    "ssn_garbled": 0.056,
    "occupation_placeholder": 0.07,
    "income_trailing_underscore": 0.07,
    "loans_trailing_underscore": 0.05,
    "loans_negative": 0.04,
    "delayed_payments_trailing_underscore": 0.03,
    "credit_limit_placeholder": 0.02,
    "debt_trailing_underscore": 0.01,
    "min_amount_placeholder": 0.115,
    "invested_placeholder": 0.045,
    "behaviour_placeholder": 0.08,
    "balance_placeholder": 0.005,
}
OCCUPATIONS: tuple[str, ...] = (
    "Accountant", "Architect", "Developer", "Doctor", "Engineer", "Entrepreneur", "Journalist", "Lawyer",
    "Manager", "Mechanic", "Media_Manager", "Musician", "Scientist", "Teacher", "Writer",
)  # fmt: skip
PAYMENT_BEHAVIOURS: tuple[str, ...] = tuple(
    f"{spent}_spent_{value}_value_payments"
    for spent in ("High", "Low")
    for value in ("Small", "Medium", "Large")
)
PLACEHOLDERS: dict[str, str] = {
    "occupation": "_______",
    "credit_limit": "_",
    "grade": "_",
    "min_amount": "NM",
    "behaviour": "!@9#%8",
    "invested": "__10000__",
    "balance": "__-333333333333333333333333333__",
    "ssn": "#F%$D@*&8",
    "impossible_age": "-500",
    "negative_loans": "-100",
}

# The grade is thresholded from a score: the mean of five standardised drivers (each a noisy reading of the
# customer's latent credit quality) plus GRADE_NOISE. The thresholds give about 24% Bad, 45% Standard, 31%
# Good of the graded customers, as in the real data; GRADE_NOISE sets how learnable the grade is (0.15: a
# LightGBM trained on 12 sample months reaches a macro F1 of about 0.92 on the following months).
GRADE_NOISE = 0.15
BAD_BELOW = -0.75
GOOD_ABOVE = 0.52

TextColumns = dict[str, Sequence[str]]
Profile = dict[str, np.ndarray]


def generate_sample(
    out_dir: str | os.PathLike[str],
    *,
    months: Iterable[dt.date | str] = DEFAULT_MONTHS,
    customers_per_month: int = 500,
    seed: int = 0,
    compress: bool = True,
    sources: Iterable[str] | None = None,
) -> dict[str, Path]:
    """Write the four source files into `out_dir` and return `{source: path}`.

    `sources` limits the files written (default all four): the scale benchmarks need no loan file,
    which holds eleven rows per customer and is most of the generation time. The files written are
    byte-for-byte those a full run writes.

    Files are `<stem>.csv.gz` (or `.csv` with `compress=False`); a file of the other extension with the same
    stem is removed, since the reader refuses a directory holding both. Each file is written under a
    `.partial` name and renamed at the end, so an interrupted run never leaves a file that looks complete.
    """
    month_list = _validated_months(months)
    if customers_per_month < 1:
        raise ValueError(f"customers_per_month must be at least 1, got {customers_per_month}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".csv.gz" if compress else ".csv"
    wanted = set(SOURCE_FILES) if sources is None else set(sources)
    unknown = wanted - set(SOURCE_FILES)
    if unknown or not wanted:
        raise ValueError(f"sources must be a non-empty subset of {sorted(SOURCE_FILES)}, got {sorted(wanted)}")
    paths = {source: directory / f"{stem}{suffix}" for source, stem in SOURCE_FILES.items() if source in wanted}
    partial = {source: path.with_name(path.name + ".partial") for source, path in paths.items()}
    try:
        with contextlib.ExitStack() as stack:
            writers = {source: stack.enter_context(_open_text(partial[source], compress)) for source in paths}
            for source, writer in writers.items():
                writer.write(",".join(REQUIRED_COLUMNS[source]) + "\n")
            for month in month_list:
                for chunk in _month_chunks(month, customers_per_month, seed, month_list[-1], wanted):
                    for source, columns in chunk.items():
                        if source in writers:
                            writers[source].write(_csv_rows(source, columns))
    except BaseException:
        for path in partial.values():
            path.unlink(missing_ok=True)
        raise
    for source, path in paths.items():
        os.replace(partial[source], path)
        path.with_name(SOURCE_FILES[source] + (".csv" if compress else ".csv.gz")).unlink(missing_ok=True)
    return paths


def _validated_months(months: Iterable[dt.date | str]) -> list[dt.date]:
    month_list = sorted({as_month(month) for month in months})
    if not month_list:
        raise ValueError("months is empty: give at least one month to generate")
    return month_list


@contextlib.contextmanager
def _open_text(path: Path, compress: bool) -> Iterator[TextIO]:
    """A text handle on `path`; gzip with no timestamp or file name in its header: reproducible bytes."""
    with open(path, "wb") as raw:
        if not compress:
            with io.TextIOWrapper(raw, encoding="utf-8", newline="") as text:
                yield text
            return
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) as zipped,
            io.TextIOWrapper(zipped, encoding="utf-8", newline="") as text,
        ):
            yield text


def _csv_rows(source: str, columns: TextColumns) -> str:
    """CSV text of a chunk: the columns, already formatted and quoted, joined in the source's column order."""
    expected = REQUIRED_COLUMNS[source]
    if tuple(columns) != expected:
        raise AssertionError(f"{source} sample columns {tuple(columns)} differ from {expected}")
    texts = [column.tolist() if isinstance(column, np.ndarray) else column for column in columns.values()]
    return "\n".join(map(",".join, zip(*texts, strict=True))) + "\n"


def _month_chunks(
    month: dt.date,
    customers_per_month: int,
    seed: int,
    last_month: dt.date,
    sources: set[str] | frozenset[str] = frozenset(SOURCE_FILES),
) -> Iterator[dict[str, TextColumns]]:
    """Yield the rows of one cohort month, CHUNK_CUSTOMERS customers at a time, for the four sources."""
    ordinal = _month_ordinal(month)
    for chunk_index, start in enumerate(range(0, customers_per_month, CHUNK_CUSTOMERS)):
        size = min(CHUNK_CUSTOMERS, customers_per_month - start)
        rng = np.random.default_rng([seed, ordinal, chunk_index])
        first = FIRST_CUSTOMER_NUMBER + ordinal * customers_per_month + start
        yield _chunk_columns(rng, month, range(first, first + size), last_month, sources)


def _chunk_columns(
    rng: np.random.Generator,
    month: dt.date,
    numbers: range,
    last_month: dt.date,
    sources: set[str] | frozenset[str] = frozenset(SOURCE_FILES),
) -> dict[str, TextColumns]:
    """Customer ids are `CUS_0x<hex>` of numbers unique across months (disjoint ranges per month).

    The sources are drawn in a fixed order from one generator; drawing stops after the last source in
    `sources`, so the sources drawn get exactly the values a full draw gives them.
    """
    hex_numbers = np.asarray(list(map("{:x}".format, numbers)), dtype=object)
    customer_ids = "CUS_0x" + hex_numbers
    profile = _customer_profile(rng, len(hex_numbers))
    draws = {
        "attributes": lambda: _attributes_columns(rng, profile, customer_ids, hex_numbers, month),
        "financials": lambda: _financials_columns(rng, profile, customer_ids, month),
        "clickstream": lambda: _clickstream_columns(rng, profile, customer_ids, month, last_month),
        "loan_daily": lambda: _loan_daily_columns(rng, profile, customer_ids, month),
    }
    order = list(draws)
    last = max(order.index(source) for source in sources)
    return {source: draws[source]() for source in order[: last + 1]}


def _customer_profile(rng: np.random.Generator, n: int) -> Profile:
    """Clean values of every feature, driven by a latent credit quality `quality` (higher is better).

    The drivers of the grade each read the latent quality with their own noise; the other features are
    loosely related or pure noise, as application data is.
    """
    quality = rng.standard_normal(n)
    annual_income = np.round(np.exp(rng.normal(10.6 + 0.2 * quality, 0.55)), 2)
    inhand_salary = annual_income / 12 * rng.uniform(0.8, 0.95, n)
    loans = _noisy_int(rng, quality, 3.5, -1.4, 1.3, 0, 9)
    emi = loans * inhand_salary * rng.uniform(0.01, 0.03, n)
    invested = inhand_salary * rng.uniform(0.02, 0.15, n)
    profile = {
        "quality": quality,
        "age": _noisy_int(rng, quality, 33.0, 3.0, 8.0, 14, 56),
        "annual_income": annual_income,
        "inhand_salary": inhand_salary,
        "bank_accounts": _noisy_int(rng, quality, 5.3, -2.0, 1.5, 0, 11),
        "credit_cards": _noisy_int(rng, quality, 5.5, -2.0, 1.2, 0, 11),
        "interest_rate": _noisy_int(rng, quality, 16.0, -7.0, 3.0, 1, 34),
        "loans": loans,
        "delay": _noisy_int(rng, quality, 21.0, -12.0, 6.0, -5, 67),
        "delayed_payments": _noisy_int(rng, quality, 13.0, -5.0, 3.0, 0, 28),
        "credit_limit_change": np.round(np.clip(rng.normal(10.0 - 3.0 * quality, 5.0), -6.0, 36.0), 2),
        "inquiries": _noisy_int(rng, quality, 6.0, -3.2, 1.6, 0, 17),
        "outstanding_debt": np.round(np.clip(rng.normal(1400.0 - 800.0 * quality, 350.0), 0.23, 4998.0), 2),
        "utilization": rng.uniform(20.0, 50.0, n),
        "history_months": _noisy_int(rng, quality, 220.0, 70.0, 50.0, 6, 400),
        "pays_minimum_only": rng.random(n) < 1.0 / (1.0 + np.exp(1.8 * quality)),
        "emi": emi,
        "invested": invested,
        "balance": np.maximum(inhand_salary - emi - invested, 0.0) * rng.uniform(0.1, 0.5, n),
        "behaviour": rng.integers(0, len(PAYMENT_BEHAVIOURS), n),
    }
    profile["grade"] = _grades(rng, profile)
    return profile


def _noisy_int(
    rng: np.random.Generator,
    quality: np.ndarray,
    center: float,
    slope: float,
    noise: float,
    low: int,
    high: int,
) -> np.ndarray:
    """An integer feature: center + slope * quality + normal noise, rounded and clipped to [low, high]."""
    values = center + slope * quality + rng.normal(0.0, noise, quality.shape)
    return np.clip(np.round(values), low, high).astype(np.int64)


def _grades(rng: np.random.Generator, profile: Profile) -> np.ndarray:
    """Bad / Standard / Good from the observed drivers (not the latent quality) plus noise; ~20% "_".

    Because the score is a function of features the model sees, the grade is learnable; GRADE_NOISE keeps it
    from being exactly so.
    """
    score = -(
        (profile["interest_rate"] - 16.0) / 7.0
        + (profile["credit_cards"] - 5.5) / 2.0
        + (profile["outstanding_debt"] - 1400.0) / 800.0
        + (profile["delay"] - 21.0) / 12.0
        + (profile["inquiries"] - 6.0) / 3.2
    ) / 5.0 + rng.normal(0.0, GRADE_NOISE, len(profile["quality"]))
    grades = np.where(score < BAD_BELOW, "Bad", np.where(score > GOOD_ABOVE, "Good", "Standard")).astype(
        object
    )
    unknown = rng.random(len(grades)) < UNKNOWN_GRADE_SHARE
    return np.where(unknown, PLACEHOLDERS["grade"], grades)


def _attributes_columns(
    rng: np.random.Generator,
    profile: Profile,
    customer_ids: np.ndarray,
    hex_numbers: np.ndarray,
    month: dt.date,
) -> TextColumns:
    n = len(customer_ids)
    names = "Person 0x" + hex_numbers
    names = np.where(_share(rng, n, "name_with_quotes"), names + ' "Jr"', names)
    age = _with_trailing_underscore(_ints_text(profile["age"]), _share(rng, n, "age_trailing_underscore"))
    impossible = np.where(
        rng.random(n) < 0.3, PLACEHOLDERS["impossible_age"], _ints_text(rng.integers(101, 8700, n))
    )
    age = np.where(_share(rng, n, "age_impossible"), impossible, age)
    ssn = _ssn_text(rng, n)
    ssn = np.where(_share(rng, n, "ssn_garbled"), PLACEHOLDERS["ssn"], ssn)
    occupation = np.asarray(OCCUPATIONS, dtype=object)[rng.integers(0, len(OCCUPATIONS), n)]
    occupation = np.where(_share(rng, n, "occupation_placeholder"), PLACEHOLDERS["occupation"], occupation)
    return {
        "Customer_ID": customer_ids,
        "Name": _csv_quoted(names),
        "Age": age,
        "SSN": ssn,
        "Occupation": occupation,
        "snapshot_date": [month.isoformat()] * n,
    }


def _financials_columns(
    rng: np.random.Generator, profile: Profile, customer_ids: np.ndarray, month: dt.date
) -> TextColumns:
    n = len(customer_ids)
    income = _with_trailing_underscore(
        _floats_text(profile["annual_income"]), _share(rng, n, "income_trailing_underscore")
    )
    loans = _with_trailing_underscore(
        _ints_text(profile["loans"]), _share(rng, n, "loans_trailing_underscore")
    )
    loans = np.where(_share(rng, n, "loans_negative"), PLACEHOLDERS["negative_loans"], loans)
    delayed = _with_trailing_underscore(
        _ints_text(profile["delayed_payments"]), _share(rng, n, "delayed_payments_trailing_underscore")
    )
    credit_limit = np.where(
        _share(rng, n, "credit_limit_placeholder"),
        PLACEHOLDERS["credit_limit"],
        _floats_text(profile["credit_limit_change"]),
    )
    debt = _with_trailing_underscore(
        _floats_text(profile["outstanding_debt"]), _share(rng, n, "debt_trailing_underscore")
    )
    min_amount = np.where(profile["pays_minimum_only"], "Yes", "No").astype(object)
    min_amount = np.where(_share(rng, n, "min_amount_placeholder"), PLACEHOLDERS["min_amount"], min_amount)
    invested = np.where(
        _share(rng, n, "invested_placeholder"), PLACEHOLDERS["invested"], _floats_text(profile["invested"])
    )
    behaviour = np.asarray(PAYMENT_BEHAVIOURS, dtype=object)[profile["behaviour"]]
    behaviour = np.where(_share(rng, n, "behaviour_placeholder"), PLACEHOLDERS["behaviour"], behaviour)
    balance = np.where(
        _share(rng, n, "balance_placeholder"), PLACEHOLDERS["balance"], _floats_text(profile["balance"])
    )
    return {
        "Customer_ID": customer_ids,
        "Annual_Income": income,
        "Monthly_Inhand_Salary": _floats_text(profile["inhand_salary"]),
        "Num_Bank_Accounts": _ints_text(profile["bank_accounts"]),
        "Num_Credit_Card": _ints_text(profile["credit_cards"]),
        "Interest_Rate": _ints_text(profile["interest_rate"]),
        "Num_of_Loan": loans,
        "Type_of_Loan": _csv_quoted(_loan_type_lists(rng, profile["loans"])),
        "Delay_from_due_date": _ints_text(profile["delay"]),
        "Num_of_Delayed_Payment": delayed,
        "Changed_Credit_Limit": credit_limit,
        "Num_Credit_Inquiries": _whole_floats_text(profile["inquiries"]),  # the real file writes "4.0"
        "Credit_Mix": profile["grade"],
        "Outstanding_Debt": debt,
        "Credit_Utilization_Ratio": _floats_text(profile["utilization"]),
        "Credit_History_Age": _history_text(profile["history_months"]),
        "Payment_of_Min_Amount": min_amount,
        "Total_EMI_per_month": _floats_text(profile["emi"]),
        "Amount_invested_monthly": invested,
        "Payment_Behaviour": behaviour,
        "Monthly_Balance": balance,
        "snapshot_date": [month.isoformat()] * n,
    }


def _loan_type_lists(rng: np.random.Generator, loans: np.ndarray) -> np.ndarray:
    """Texts like the real ones: "" (no loan), "A", "A, and B", "A, B, and C" (types may repeat)."""
    n = len(loans)
    max_loans = int(loans.max(initial=0))
    types = np.asarray(LOAN_TYPES, dtype=object)[rng.integers(0, len(LOAN_TYPES), (n, max(max_loans, 1)))]
    text = np.where(loans > 0, types[:, 0], "").astype(object)
    for position in range(1, max_loans):
        separator = np.where(position == loans - 1, ", and ", ", ").astype(object)
        text = np.where(position < loans, text + separator + types[:, position], text)
    return text


def _clickstream_columns(
    rng: np.random.Generator, profile: Profile, customer_ids: np.ndarray, month: dt.date, last_month: dt.date
) -> TextColumns:
    """One row per customer with clickstream and month, from the cohort month on (not past the last month).

    fe_1..fe_3 lean slightly on the latent quality; the rest are noise, as web activity mostly is.
    """
    with_clicks = rng.random(len(customer_ids)) < CLICKSTREAM_SHARE
    ids = customer_ids[with_clicks]
    quality = profile["quality"][with_clicks]
    centers = rng.uniform(50.0, 150.0, len(CLICKSTREAM_COLUMNS))
    # Drawn for every clickstream month, then cut at the last month: the draws (and so the other sources'
    # rows) do not depend on how many months follow.
    values = rng.normal(centers, 90.0, (CLICKSTREAM_MONTHS, len(ids), len(CLICKSTREAM_COLUMNS)))
    n_months = min(CLICKSTREAM_MONTHS, _month_ordinal(last_month) - _month_ordinal(month) + 1)
    values = values[:n_months]
    values[:, :, :3] += 25.0 * quality[None, :, None]
    rounded = np.round(values).astype(np.int64)
    columns: dict[str, Sequence[str]] = {
        column: _ints_text(rounded[:, :, i].ravel()) for i, column in enumerate(CLICKSTREAM_COLUMNS)
    }
    columns["Customer_ID"] = np.tile(ids, n_months)
    columns["snapshot_date"] = np.repeat(_month_texts(month, n_months), len(ids))
    return columns


def _loan_daily_columns(
    rng: np.random.Generator, profile: Profile, customer_ids: np.ndarray, month: dt.date
) -> TextColumns:
    """One loan per customer starting in its cohort month; one row per instalment month 0..LOAN_TENURE.

    A customer pays each instalment (catching up on arrears) with a probability that grows with its quality;
    overdue and balance follow from the cumulative amounts due and paid. Loan amounts are whole thousands, so
    every amount is a whole hundred and is formatted through a lookup table.
    """
    n = len(customer_ids)
    instalments = LOAN_TENURE + 1
    loan_amount = rng.integers(5, 21, n) * 1000
    due = loan_amount // LOAN_TENURE
    pay_probability = np.clip(1.0 / (1.0 + np.exp(-(2.0 + 1.5 * profile["quality"]))), 0.05, 0.99)
    pays = rng.random((n, LOAN_TENURE)) < pay_probability[:, None]
    due_amount = np.zeros((n, instalments), dtype=np.int64)
    due_amount[:, 1:] = due[:, None]
    paid = np.zeros((n, instalments), dtype=np.int64)
    paid_so_far = np.zeros(n, dtype=np.int64)
    for number in range(1, instalments):
        paid[:, number] = np.where(pays[:, number - 1], number * due - paid_so_far, 0)
        paid_so_far += paid[:, number]
    cumulative_paid = np.cumsum(paid, axis=1)
    overdue = np.cumsum(due_amount, axis=1) - cumulative_paid
    balance = loan_amount[:, None] - cumulative_paid
    start_text = month.isoformat()
    return {
        "loan_id": np.repeat(customer_ids + ("_" + start_text.replace("-", "_")), instalments),
        "Customer_ID": np.repeat(customer_ids, instalments),
        "loan_start_date": [start_text] * (n * instalments),
        "tenure": [str(LOAN_TENURE)] * (n * instalments),
        "installment_num": np.tile(_ints_text(np.arange(instalments)), n),
        "loan_amt": _ints_text(np.repeat(loan_amount, instalments)),
        "due_amt": _whole_floats_text(due_amount.ravel()),
        "paid_amt": _whole_floats_text(paid.ravel()),
        "overdue_amt": _whole_floats_text(overdue.ravel()),
        "balance": _whole_floats_text(balance.ravel()),
        "snapshot_date": np.tile(_month_texts(month, instalments), n),
    }


def _share(rng: np.random.Generator, n: int, dirt: str) -> np.ndarray:
    """Rows that get one kind of dirt, drawn independently with that dirt's share."""
    return rng.random(n) < DIRT_SHARES[dirt]


def _ints_text(values: np.ndarray, suffix: str = "") -> np.ndarray:
    """Integers as text (+ suffix).

    Through a lookup table when their range is small (most columns): ~10x faster, and rows share the table's
    strings instead of each holding its own copy.
    """
    if values.size == 0:
        return np.asarray([], dtype=object)
    low, high = int(values.min()), int(values.max())
    if high - low <= 100_000:
        table = np.asarray([f"{value}{suffix}" for value in range(low, high + 1)], dtype=object)
        return table[values - low]
    return np.asarray([f"{value}{suffix}" for value in values.tolist()], dtype=object)


def _whole_floats_text(values: np.ndarray) -> np.ndarray:
    """Whole-number amounts written as floats ("1000.0"), as the real loan file has them."""
    return _ints_text(values, suffix=".0")


def _floats_text(values: np.ndarray) -> np.ndarray:
    """Floats as their shortest round-trip repr ("2706.1616666666664", "30625.94"), as in the real files."""
    return np.asarray(list(map(repr, values.tolist())), dtype=object)


def _history_text(months: np.ndarray) -> np.ndarray:
    """Credit history as the real text: "22 Years and 5 Months"."""
    return _ints_text(months // 12) + " Years and " + _ints_text(months % 12) + " Months"


def _ssn_text(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random SSN-shaped digits "123-45-6789"."""
    return (
        _ints_text(rng.integers(100, 900, n))
        + "-"
        + _ints_text(rng.integers(10, 100, n))
        + "-"
        + _ints_text(rng.integers(1000, 10000, n))
    )


def _with_trailing_underscore(text: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.where(rows, text + "_", text)


def _csv_quoted(text: np.ndarray) -> np.ndarray:
    """Quote the values that need it in CSV (comma, quote, newline), doubling inner quotes, as pandas does."""
    values = pd.Series(text, dtype=object)
    needs_quotes = values.str.contains('[,"\n]', regex=True)
    quoted = '"' + values[needs_quotes].str.replace('"', '""', regex=False) + '"'
    return values.where(~needs_quotes, quoted).to_numpy(dtype=object)


def _month_ordinal(month: dt.date) -> int:
    return month.year * 12 + month.month - 1


def _month_texts(first: dt.date, count: int) -> np.ndarray:
    """ISO first days of `count` consecutive months from `first`."""
    ordinals = range(_month_ordinal(first), _month_ordinal(first) + count)
    return np.asarray([dt.date(o // 12, o % 12 + 1, 1).isoformat() for o in ordinals], dtype=object)
