"""DataFrames: pandas values <-> COPY CSV text, and the checks and conversions before any write."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from credit_assets.resources.postgres_io.tables import (
    ColumnKind,
    ColumnType,
    PostgresWriteError,
    TableInfo,
    TableSlice,
)

COPY_CHUNK_ROWS = 100_000
"""Rows formatted and sent to COPY at a time (bounds the memory of the CSV text)."""


def check_columns(frame: pd.DataFrame, target: TableSlice, info: TableInfo) -> list[str]:
    """The frame's columns, all of which must be columns of the table (else an error naming them)."""
    columns = [str(column) for column in frame.columns]
    if len(set(columns)) != len(columns):
        duplicated = sorted({column for column in columns if columns.count(column) > 1})
        raise PostgresWriteError(f"The frame for {target.qualified_name} repeats columns {duplicated}.")
    unknown = [column for column in columns if column not in info.columns]
    if unknown:
        raise PostgresWriteError(
            f"The frame has columns that {target.qualified_name} does not have: {unknown}. "
            f"Table columns: {list(info.columns)}. Rename or drop them (or add them to the DDL in sql/)."
        )
    if not columns:
        raise PostgresWriteError(f"The frame for {target.qualified_name} has no columns.")
    return columns


def check_rows_in_window(frame: pd.DataFrame, target: TableSlice, column: str) -> None:
    """Raise unless every row's `column` value lies in the target's window (nothing is written then)."""
    assert target.window is not None
    if column not in frame.columns:
        raise PostgresWriteError(
            f"The frame for {target.qualified_name} has no column {column!r}, the partition column of "
            f"partition_expr {target.partition_expr!r}: every row must say which month it belongs to."
        )
    values = to_timestamps(frame[column])
    start, end = pd.Timestamp(target.window.start), pd.Timestamp(target.window.end)
    outside = ~((values >= start) & (values < end))
    if outside.any():
        examples = frame.loc[outside.to_numpy(), column].astype(str).unique()[:5].tolist()
        raise PostgresWriteError(
            f"{int(outside.sum())} of {len(frame)} rows for {target.qualified_name} have {column} outside "
            f"the partition {target.window.describe()} (e.g. {examples}); nothing was written. "
            "A partition's output must hold only that partition's rows."
        )


def to_timestamps(series: pd.Series) -> pd.Series:
    """Naive datetime64 values of a column of datetimes, dates or ISO text (unparseable -> NaT)."""
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_localize(None)
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series
    codes, uniques = pd.factorize(series.astype(object), use_na_sentinel=True)  # parse each value once
    parsed = pd.to_datetime(pd.Series(uniques, dtype=object), errors="coerce", format="mixed")
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_localize(None)
    lookup = np.append(parsed.to_numpy(dtype="datetime64[ns]"), np.datetime64("NaT", "ns"))
    return pd.Series(lookup[codes], index=series.index)


def prepare_frame(frame: pd.DataFrame, columns: Sequence[str], info: TableInfo) -> dict[str, pd.Series]:
    """Coerce each column to what its table column accepts; raise (before any write) if one cannot.

    Integers stay integers (floats that are whole numbers become Int64), floats for NUMERIC(p, s)
    columns are rounded to s decimals, JSON values become JSON text (`allow_nan=False`), timezone-aware
    times become UTC.
    """
    return {column: _prepare_column(frame[column], info.columns[column]) for column in columns}


def copy_text_chunks(
    prepared: Mapping[str, pd.Series], info: TableInfo, chunk_rows: int = COPY_CHUNK_ROWS
) -> Iterator[str]:
    """CSV text of the prepared columns, `chunk_rows` rows at a time.

    NULL is an unquoted empty field; every text value is quoted (so "" is an empty string, and commas,
    quotes, backslashes, newlines and tabs pass through unchanged). Each column is formatted once per
    distinct value (`pandas.factorize`), then rows are joined with `str.join`: no Python code per row.
    """
    names = list(prepared)
    n_rows = len(next(iter(prepared.values()))) if names else 0
    for start in range(0, n_rows, chunk_rows):
        fields = [_format_fields(prepared[name].iloc[start : start + chunk_rows], info.columns[name]) for name in names]
        yield "\n".join(map(",".join, zip(*fields, strict=True))) + "\n"


def frame_from_rows(rows: Sequence[tuple[Any, ...]], names: Sequence[str], info: TableInfo) -> pd.DataFrame:
    """A DataFrame of fetched rows: NUMERIC as float64, DATE/TIMESTAMP as datetime64, NULL as NaN/NaT."""
    frame = pd.DataFrame.from_records(list(rows), columns=list(names))
    for name in names:
        kind = info.columns[name].kind
        if kind in (ColumnKind.NUMERIC, ColumnKind.FLOAT):
            frame[name] = pd.to_numeric(frame[name]).astype("float64")
        elif kind is ColumnKind.INTEGER:
            frame[name] = pd.to_numeric(frame[name])
        elif kind in (ColumnKind.DATE, ColumnKind.TIMESTAMP):
            frame[name] = to_timestamps(frame[name])
        elif kind is ColumnKind.TIMESTAMPTZ:
            frame[name] = pd.to_datetime(frame[name], utc=True)
        elif kind is ColumnKind.BOOLEAN and frame[name].notna().all():
            frame[name] = frame[name].astype(bool)
    return frame


def _prepare_column(series: pd.Series, column: ColumnType) -> pd.Series:
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    kind = column.kind
    if kind is ColumnKind.JSON:
        return _json_texts(series, column)
    if kind in (ColumnKind.INTEGER, ColumnKind.NUMERIC, ColumnKind.FLOAT):
        series = _to_numeric(series, column)
        if kind is ColumnKind.INTEGER and pd.api.types.is_float_dtype(series.dtype):
            present = series.dropna().to_numpy()
            if len(present) and not (np.isfinite(present).all() and (present == np.round(present)).all()):
                bad = present[~(np.isfinite(present) & (present == np.round(present)))][0]
                raise PostgresWriteError(
                    f"Column {column.name!r} ({column.data_type}) holds the non-integer value {bad!r}."
                )
            series = series.astype("Int64")
        elif kind is ColumnKind.NUMERIC and column.numeric_scale is not None:
            if pd.api.types.is_float_dtype(series.dtype):
                series = series.round(column.numeric_scale)
        return series
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        if kind is ColumnKind.DATE:
            return series.dt.tz_localize(None)  # the date where the time was recorded
        return series.dt.tz_convert("UTC").dt.tz_localize(None)  # the session runs in UTC
    return series


def _to_numeric(series: pd.Series, column: ColumnType) -> pd.Series:
    if pd.api.types.is_bool_dtype(series.dtype) or not (pd.api.types.is_numeric_dtype(series.dtype)):
        values = series.astype(object).map(lambda value: float(value) if isinstance(value, decimal.Decimal) else value)
        converted = pd.to_numeric(values, errors="coerce")
        failed = converted.isna() & ~pd.isna(values)
        if failed.any():
            bad = values[failed].iloc[0]
            raise PostgresWriteError(
                f"Column {column.name!r} ({column.data_type}) holds {bad!r}, which is not a number "
                f"({int(failed.sum())} such values); nothing was written."
            )
        return converted
    return series


def _json_texts(series: pd.Series, column: ColumnType) -> pd.Series:
    texts: list[str | None] = []
    for label, value in series.items():
        if _is_missing(value):
            texts.append(None)
        elif isinstance(value, str):
            texts.append(value)  # already JSON text: PostgreSQL validates it
        else:
            try:
                texts.append(json.dumps(value, allow_nan=False, default=_plain_json_value))
            except (ValueError, TypeError) as exc:
                raise PostgresWriteError(
                    f"Column {column.name!r}, row {label!r}: {value!r} cannot be stored as JSON ({exc}). "
                    "NaN and infinity are not JSON: write None for an undefined number."
                ) from None
    return pd.Series(texts, index=series.index, dtype=object)


def _plain_json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.date | dt.datetime | pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _format_fields(series: pd.Series, column: ColumnType) -> list[str]:
    """COPY CSV fields of one chunk of one column: formatted once per distinct value."""
    if column.kind is ColumnKind.FLOAT and pd.api.types.is_float_dtype(series.dtype):
        return _format_floats(series.to_numpy(dtype="float64"))
    try:
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    except TypeError:  # unhashable values (lists, dicts) in a text column
        return ["" if _is_missing(value) else _quote(str(value)) for value in series.tolist()]
    lookup = np.array([*format_uniques(uniques, column), ""], dtype=object)  # code -1 (NULL) -> ""
    return lookup[codes].tolist()


def _format_floats(values: np.ndarray) -> list[str]:
    """Shortest round-trip text of each float (mostly distinct values: no factorize); NaN -> NULL."""
    texts = list(map(repr, values.tolist()))
    for position in np.flatnonzero(np.isnan(values)).tolist():
        texts[position] = ""
    return texts


def format_uniques(uniques: Any, column: ColumnType, quoted: bool = True) -> list[str]:
    """Text of each distinct value as PostgreSQL reads it; other values CSV-quoted unless not `quoted`."""
    kind = column.kind
    values = pd.Index(uniques) if not isinstance(uniques, pd.Index) else uniques
    if kind in (ColumnKind.INTEGER, ColumnKind.NUMERIC, ColumnKind.FLOAT) and pd.api.types.is_numeric_dtype(
        values.dtype
    ):
        if pd.api.types.is_bool_dtype(values.dtype):
            values = values.astype(int)
        return values.astype(str).tolist()
    if kind is ColumnKind.BOOLEAN and pd.api.types.is_bool_dtype(values.dtype):
        return ["true" if value else "false" for value in values]
    if pd.api.types.is_datetime64_any_dtype(values.dtype) and not isinstance(values.dtype, pd.DatetimeTZDtype):
        stamps = values.to_numpy(dtype="datetime64[us]")
        if kind is ColumnKind.DATE:
            return np.datetime_as_string(stamps.astype("datetime64[D]")).tolist()
        texts = np.datetime_as_string(stamps, unit="us")
        return [f"{text}+00" for text in texts] if kind is ColumnKind.TIMESTAMPTZ else texts.tolist()
    if not quoted:
        return [str(value) for value in values]
    return [_quote(str(value)) for value in values]
