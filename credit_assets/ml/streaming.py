"""A whole month of customers in memory that does not grow with the month.

The monthly assets hand whole-month frames from step to step, which is right for the real data (a few
hundred customers a month) and fine up to about a million customers. Beyond that, the raw text alone
(every value a Python string) outgrows a machine. This module runs the same functions (`sources`,
`cleaning`, `features`, `scoring`, `metrics`) over a month in batches of customers:

1. each source file is streamed in chunks of the month's rows; each chunk is cleaned at once (typed
   values are a fraction of the raw text) and split by a hash of the customer id into SPILL_BUCKETS
   buckets, appended to temporary files;
2. the buckets are grouped into batches of about `batch_rows` customers; each batch's attributes,
   financials and clickstream are joined by `build_features` (a customer's rows of every source are
   in the same bucket, so the join and the duplicate check see all of them);
3. `score_month` scores each batch with the champion (chunked by `score_in_chunks`), hands the rows to a
   writer (e.g. the IO manager's `PartitionWriter`, which spools them to disk), and keeps only what the
   month's metrics need: each graded customer's grade and probabilities, as float32.

Memory then follows `batch_rows`, not the month, except for that last small part (24 bytes per graded
customer and model).
"""

from __future__ import annotations

import datetime as dt
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from credit_assets.ml import cleaning
from credit_assets.ml.features import build_features
from credit_assets.ml.metrics import classification_metrics
from credit_assets.ml.models import CreditGradeModel
from credit_assets.ml.schema import GRADE, GRADES
from credit_assets.ml.scoring import PROBABILITY_COLUMNS, prediction_threads, score_customers
from credit_assets.ml.sources import (
    READ_CHUNK_ROWS,
    SourceDataError,
    as_month,
    empty_month_frame,
    find_source_file,
    iter_source_month_chunks,
)

SPILL_BUCKETS = 64
"""Buckets of the spill: a batch is one or more whole buckets (~1.6% of the month each)."""
DEFAULT_BATCH_ROWS = 250_000
DEFAULT_READ_CHUNK_ROWS = 100_000

_FEATURE_SOURCES: tuple[tuple[str, Callable[..., pd.DataFrame]], ...] = (
    ("attributes", cleaning.clean_attributes),
    ("financials", cleaning.clean_financials),
    ("clickstream", cleaning.clean_clickstream),
)


def read_cleaned_month(
    path: str | os.PathLike[str],
    source: str,
    month: dt.date | str,
    clean: Callable[..., pd.DataFrame],
    *,
    allow_empty: bool = False,
    chunk_rows: int = READ_CHUNK_ROWS,
) -> pd.DataFrame:
    """`clean(read_source_month(path, source, month))`, with the raw text held one chunk at a time.

    The cleaners work row by row, so cleaning each chunk as it is read gives the same frame (same
    index of file lines) while the month's raw text, every value a Python string and several times the
    size of the cleaned frame, never exists whole. A bad value fails as it would on the whole month,
    naming file, line, column and value, except that the first chunk holding one decides which, and the
    "N such value(s)" count of the message covers that chunk only.
    """
    cleaned = [
        clean(raw, source_name=str(path))
        for raw in iter_source_month_chunks(path, source, month, allow_empty=allow_empty, chunk_rows=chunk_rows)
    ]
    if not cleaned:  # an allowed empty month: the cleaned frame of no rows, with its columns and dtypes
        return clean(empty_month_frame(path), source_name=str(path))
    if len(cleaned) == 1:
        return cleaned[0]
    frame = pd.concat(cleaned)
    frame.attrs = dict(cleaned[0].attrs)
    return frame


def customer_buckets(customer_ids: pd.Series, buckets: int = SPILL_BUCKETS) -> np.ndarray:
    """Bucket of each customer id (stable across sources, processes and runs)."""
    hashes = pd.util.hash_pandas_object(customer_ids.astype(str), index=False).to_numpy()
    return (hashes % np.uint64(buckets)).astype(np.int64)


def iter_feature_batches(
    data_dir: str | os.PathLike[str],
    month: dt.date | str,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    read_chunk_rows: int = DEFAULT_READ_CHUNK_ROWS,
    spill_dir: str | os.PathLike[str] | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield the month's feature frame (as `build_features` builds it) in batches of whole customers.

    Every customer of the month is in exactly one batch; the batches together hold the rows of
    `build_features` over the whole month (in another order). Errors are those of the sources,
    cleaning and features modules, naming file, line, column and value. A month in which no customer
    has both attributes and financials raises as `build_features` does (the month as a whole is checked:
    one batch may well hold only customers that one file lacks).
    """
    if batch_rows < 1:
        raise ValueError(f"batch_rows must be at least 1, got {batch_rows}")
    month_start = as_month(month)
    with tempfile.TemporaryDirectory(prefix="credit_assets_spill_", dir=spill_dir) as tmp:
        spill = Path(tmp)
        customers = np.zeros(SPILL_BUCKETS, dtype=np.int64)
        source_rows: dict[str, tuple[Path, int]] = {}
        for source, clean in _FEATURE_SOURCES:
            path = find_source_file(data_dir, source)
            rows = 0
            files = [open(spill / f"{source}_{bucket}.pkl", "wb") for bucket in range(SPILL_BUCKETS)]
            try:
                for raw in iter_source_month_chunks(
                    path, source, month_start, allow_empty=source == "clickstream", chunk_rows=read_chunk_rows
                ):
                    cleaned = clean(raw, source_name=str(path))
                    del raw
                    rows += len(cleaned)
                    buckets = customer_buckets(cleaned[cleaning.CUSTOMER_ID_COLUMN])
                    if source == "attributes":
                        customers += np.bincount(buckets, minlength=SPILL_BUCKETS)
                    order = np.argsort(buckets, kind="stable")
                    bounds = np.searchsorted(buckets[order], np.arange(SPILL_BUCKETS + 1))
                    for bucket in range(SPILL_BUCKETS):
                        if bounds[bucket] < bounds[bucket + 1]:
                            part = cleaned.iloc[order[bounds[bucket] : bounds[bucket + 1]]]
                            pickle.dump(part, files[bucket], protocol=pickle.HIGHEST_PROTOCOL)
            finally:
                for file in files:
                    file.close()
            source_rows[source] = (path, rows)
        cohort = 0
        for group in _bucket_groups(customers, batch_rows):
            parts = {source: _load_buckets(spill, source, group) for source, _ in _FEATURE_SOURCES}
            if parts["attributes"] is None or parts["financials"] is None:
                continue
            features = build_features(
                parts["attributes"], parts["financials"], parts["clickstream"], require_cohort=False
            )
            del parts
            cohort += len(features)
            if len(features):
                yield features
        if cohort == 0:
            _raise_empty_month(month_start, source_rows)


def _raise_empty_month(month: dt.date, source_rows: dict[str, tuple[Path, int]]) -> None:
    """The streamed month's counterpart of `features.raise_empty_cohort` (which needs whole frames)."""
    held = "; ".join(
        f"{source} ({path}): {rows} row(s) for {month.isoformat()}"
        for source, (path, rows) in source_rows.items()
        if source != "clickstream"
    )
    raise SourceDataError(
        "no customer has both attributes and financials for this month, so the cohort is empty: "
        f"{held}. Check that both files hold the month and use the same Customer_ID values."
    )


def _bucket_groups(customers: np.ndarray, batch_rows: int) -> list[list[int]]:
    """Consecutive buckets grouped so that each group holds about `batch_rows` customers."""
    groups: list[list[int]] = []
    current: list[int] = []
    size = 0
    for bucket, count in enumerate(customers.tolist()):
        if current and size + count > batch_rows:
            groups.append(current)
            current, size = [], 0
        current.append(bucket)
        size += count
    if current:
        groups.append(current)
    return groups


def _load_buckets(spill: Path, source: str, buckets: Iterable[int]) -> pd.DataFrame | None:
    frames = []
    for bucket in buckets:
        with open(spill / f"{source}_{bucket}.pkl", "rb") as file:
            while True:
                try:
                    frames.append(pickle.load(file))
                except EOFError:
                    break
    if not frames:
        return None
    return pd.concat(frames) if len(frames) > 1 else frames[0]


@dataclass
class _GradedScores:
    """Grades and probabilities of one model's graded customers, kept compact across batches."""

    codes: list[np.ndarray] = field(default_factory=list)
    probabilities: list[np.ndarray] = field(default_factory=list)

    def add(self, grades: pd.Series, probabilities: np.ndarray) -> None:
        self.codes.append(pd.Categorical(grades, categories=list(GRADES)).codes.astype(np.int8))
        self.probabilities.append(np.asarray(probabilities, dtype=np.float32))

    def metrics(self) -> dict[str, Any]:
        codes = np.concatenate(self.codes) if self.codes else np.zeros(0, dtype=np.int8)
        probabilities = (
            np.concatenate(self.probabilities)
            if self.probabilities
            else np.zeros((0, len(GRADES)), np.float32)
        )
        grades = pd.Series(np.asarray(GRADES, dtype=object)[codes])
        return classification_metrics(
            grades, pd.DataFrame(probabilities.astype(np.float64), columns=list(GRADES))
        )


@dataclass(frozen=True)
class MonthScoring:
    """What scoring a month produced besides the written rows."""

    customers: int
    graded: int
    champion_metrics: dict[str, Any]
    shadow_metrics: dict[str, Any] | None


def score_month(
    batches: Iterable[pd.DataFrame],
    champion: CreditGradeModel,
    write: Callable[[pd.DataFrame], None],
    *,
    shadow: CreditGradeModel | None = None,
    chunk_rows: int = 100_000,
    threads: int | None = None,
) -> MonthScoring:
    """Score every customer of every batch with `champion` and pass each chunk of scores to `write`.

    The month's metrics are computed as the monitoring asset computes them: the champion on every
    graded customer (from the same probabilities that were written), the `shadow` model (if any) on
    the graded customers only. Each model is the loaded model object, used for every chunk.
    `threads`: prediction threads (see `scoring.score_customers`).
    """
    champion_scores, shadow_scores = _GradedScores(), _GradedScores()
    customers = graded_count = 0
    probability_columns = list(PROBABILITY_COLUMNS.values())
    for features in batches:
        customers += len(features)
        for start in range(0, len(features), chunk_rows):
            chunk = features.iloc[start : start + chunk_rows]
            scores = score_customers(champion, chunk, threads=threads)
            write(scores)
            is_graded = chunk[GRADE].notna().to_numpy()
            if is_graded.any():
                graded = chunk.loc[is_graded]
                graded_count += len(graded)
                champion_scores.add(graded[GRADE], scores.loc[is_graded, probability_columns].to_numpy())
                if shadow is not None:
                    with prediction_threads(shadow, threads):
                        shadow_scores.add(graded[GRADE], shadow.predict_proba(graded).to_numpy())
    return MonthScoring(
        customers=customers,
        graded=graded_count,
        champion_metrics=champion_scores.metrics(),
        shadow_metrics=shadow_scores.metrics() if shadow is not None else None,
    )
