"""DataFrames: pandas values -> COPY binary."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from credit_assets.resources.postgres_io.copy_text import (
    format_uniques,
)
from credit_assets.resources.postgres_io.tables import (
    ColumnKind,
    ColumnType,
    TableInfo,
)

# --------------------------------------------------------------------------------------------------
# DataFrames: pandas values -> COPY binary
# --------------------------------------------------------------------------------------------------
#
# PostgreSQL parses COPY text at a cost (measured: binary COPY of 1M model_inference rows took about
# two thirds of the CSV COPY of the same rows), and formatting CSV in Python costs more than that. So
# when every column of a write has a type listed below and its values fit it, the rows are sent in
# COPY's binary format, built with numpy a chunk at a time: each column becomes a NULL mask and a
# matrix of big-endian payload bytes (or, for text of mixed lengths, a byte buffer and offsets), and
# the rows are laid out in one uint8 buffer per chunk. There is no Python code per row; text is
# encoded once per distinct value of a chunk. Anything else (a type not listed, a value the binary
# form cannot carry, such as an out-of-range integer, so that the server reports it exactly as
# before) falls back to CSV for the whole write.

BINARY_COPY_CHUNK_ROWS = 50_000
"""Rows encoded and sent to a binary COPY at a time (the index arrays of a chunk stay small)."""

BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
BINARY_TRAILER = b"\xff\xff"
_POSTGRES_EPOCH_DAYS = 10_957  # 2000-01-01 in days since 1970-01-01
_NS_PER_DAY = 86_400 * 10**9
_INTEGER_WIDTHS = {"smallint": 2, "integer": 4, "bigint": 8}
_FLOAT_TYPES = {"real": ">f4", "double precision": ">f8"}
_BINARY_TEXT_TYPES = {"character varying", "text", "character"}
_NUMERIC_MAX_DIGITS = 18  # scaled numeric values (padded to whole base-10000 groups) must fit an int64


@dataclass
class BinaryField:
    """One column of one chunk, ready to be laid into COPY binary rows."""

    null: np.ndarray
    """bool (n,): the row's value is NULL (no payload)."""
    lengths: np.ndarray
    """int64 (n,): payload bytes of each row (0 where NULL)."""
    fixed: np.ndarray | None = None
    """uint8 (n, width): each row's payload, when every non-NULL payload has the same width."""
    blob: np.ndarray | None = None
    """uint8: payload bytes of variable width, each row's starting at `starts`."""
    starts: np.ndarray | None = None


BinaryEncoder = Any  # Callable[[int, int], BinaryField]: encodes rows [start, stop) of one column


def binary_copy_encoders(prepared: Mapping[str, pd.Series], info: TableInfo) -> list[BinaryEncoder] | None:
    """One encoder per prepared column when the whole write can go as COPY binary, else None (CSV)."""
    encoders = []
    for name, series in prepared.items():
        encoder = _binary_encoder(series, info.columns[name])
        if encoder is None:
            return None
        encoders.append(encoder)
    return encoders


def copy_binary_chunks(
    encoders: Sequence[BinaryEncoder], n_rows: int, chunk_rows: int = BINARY_COPY_CHUNK_ROWS
) -> Iterator[bytes]:
    """COPY binary data (signature, rows, trailer) of the encoded columns, `chunk_rows` rows a chunk."""
    yield BINARY_SIGNATURE
    yield from binary_row_chunks(encoders, n_rows, chunk_rows)
    yield BINARY_TRAILER


def binary_row_chunks(
    encoders: Sequence[BinaryEncoder], n_rows: int, chunk_rows: int = BINARY_COPY_CHUNK_ROWS
) -> Iterator[bytes]:
    """The COPY binary tuples alone (no signature or trailer), `chunk_rows` rows a chunk."""
    for start in range(0, n_rows, chunk_rows):
        stop = min(start + chunk_rows, n_rows)
        yield binary_rows([encode(start, stop) for encode in encoders], stop - start)


def binary_rows(fields: Sequence[BinaryField], n_rows: int) -> bytes:
    """COPY binary tuples of `n_rows` rows: field count, then per field its length (-1: NULL) and bytes."""
    if n_rows == 0:
        return b""
    row_lengths = np.full(n_rows, 2 + 4 * len(fields), dtype=np.int64)
    for field in fields:
        row_lengths += field.lengths
    ends = np.cumsum(row_lengths)
    offsets = ends - row_lengths
    buffer = np.empty(int(ends[-1]), dtype=np.uint8)
    buffer[offsets[:, None] + np.arange(2)] = np.frombuffer(len(fields).to_bytes(2, "big"), dtype=np.uint8)
    offsets += 2
    for field in fields:
        headers = np.where(field.null, -1, field.lengths).astype(">i4").view(np.uint8).reshape(n_rows, 4)
        buffer[offsets[:, None] + np.arange(4)] = headers
        offsets += 4
        if field.fixed is not None:
            width = field.fixed.shape[1]
            if width:
                present = ~field.null
                if present.all():
                    buffer[offsets[:, None] + np.arange(width)] = field.fixed
                else:
                    buffer[offsets[present][:, None] + np.arange(width)] = field.fixed[present]
        else:
            assert field.blob is not None and field.starts is not None
            total = int(field.lengths.sum())
            if total:
                within = np.arange(total) - np.repeat(np.cumsum(field.lengths) - field.lengths, field.lengths)
                buffer[np.repeat(offsets, field.lengths) + within] = field.blob[
                    np.repeat(field.starts, field.lengths) + within
                ]
        offsets += field.lengths
    return buffer.tobytes()


def _fixed_field(null: np.ndarray, payload: np.ndarray) -> BinaryField:
    """A field whose payloads are rows of `payload` (big-endian numbers viewed as bytes)."""
    width = payload.dtype.itemsize * (payload.shape[1] if payload.ndim == 2 else 1)
    matrix = np.ascontiguousarray(payload).view(np.uint8).reshape(len(null), width)
    return BinaryField(null=null, lengths=np.where(null, 0, width).astype(np.int64), fixed=matrix)


def _binary_encoder(series: pd.Series, column: ColumnType) -> BinaryEncoder | None:
    """The encoder of one prepared column, or None when the column must go as CSV text."""
    kind, dtype = column.kind, series.dtype
    is_bool = pd.api.types.is_bool_dtype(dtype)
    if kind is ColumnKind.INTEGER:
        if column.data_type not in _INTEGER_WIDTHS or is_bool or not pd.api.types.is_integer_dtype(dtype):
            return None
        width = _INTEGER_WIDTHS[column.data_type]
        null = series.isna().to_numpy()
        if pd.api.types.is_unsigned_integer_dtype(dtype) and series.max() > np.iinfo(np.int64).max:
            return None
        values = series.to_numpy(dtype=np.int64, na_value=0)
        low, high = -(2 ** (8 * width - 1)), 2 ** (8 * width - 1) - 1
        if len(values) and (values.min() < low or values.max() > high):
            return None  # the server says which value is out of range
        return lambda a, b: _fixed_field(null[a:b], values[a:b].astype(f">i{width}"))
    if kind is ColumnKind.FLOAT:
        if column.data_type not in _FLOAT_TYPES or is_bool or not pd.api.types.is_numeric_dtype(dtype):
            return None
        floats = series.to_numpy(dtype=np.float64, na_value=np.nan)
        null = np.isnan(floats)
        target = _FLOAT_TYPES[column.data_type]
        return lambda a, b: _fixed_field(null[a:b], floats[a:b].astype(target))
    if kind is ColumnKind.NUMERIC:
        return _numeric_encoder(series, column)
    if kind is ColumnKind.BOOLEAN:
        if not is_bool:
            return None
        null = series.isna().to_numpy()
        flags = series.to_numpy(dtype=np.uint8, na_value=0)
        return lambda a, b: _fixed_field(null[a:b], flags[a:b])
    if kind in (ColumnKind.DATE, ColumnKind.TIMESTAMP, ColumnKind.TIMESTAMPTZ):
        nanoseconds = _datetime_nanoseconds(series)
        if nanoseconds is None:
            return None
        null = nanoseconds == np.iinfo(np.int64).min  # NaT
        if kind is ColumnKind.DATE:
            values = np.floor_divide(nanoseconds, _NS_PER_DAY) - _POSTGRES_EPOCH_DAYS
            return lambda a, b: _fixed_field(null[a:b], values[a:b].astype(">i4"))
        values = np.floor_divide(nanoseconds, 1000) - _POSTGRES_EPOCH_DAYS * 86_400 * 10**6
        return lambda a, b: _fixed_field(null[a:b], values[a:b].astype(">i8"))
    if kind is ColumnKind.JSON:
        # Prepared JSON is text (or None); jsonb's binary form is a version byte, then the text.
        prefix = b"\x01" if column.data_type == "jsonb" else b""
        return lambda a, b: _text_field(series.iloc[a:b], column, prefix)
    if column.data_type in _BINARY_TEXT_TYPES:
        try:
            pd.factorize(series.iloc[:1000])
        except TypeError:  # unhashable values (lists, dicts): formatted row by row as CSV
            return None
        return lambda a, b: _text_field(series.iloc[a:b], column, b"")
    return None


def _numeric_encoder(series: pd.Series, column: ColumnType) -> BinaryEncoder | None:
    """NUMERIC(p, s) with p <= 18 from integers or (already rounded) floats, as fixed-width digits.

    Every value is sent with the same number of base-10000 digits, leading and trailing zero digits
    included (the server strips them); the server still applies the column's precision and scale.
    """
    scale, precision = column.numeric_scale, column.numeric_precision
    dtype = series.dtype
    if scale is None or precision is None or scale < 0 or precision < scale:
        return None
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return None
    padding = (-scale) % 4
    if precision + padding > _NUMERIC_MAX_DIGITS:
        return None
    if pd.api.types.is_float_dtype(dtype):
        floats = series.to_numpy(dtype=np.float64, na_value=np.nan)
        null = np.isnan(floats)
        present = floats[~null]
        if not np.isfinite(present).all() or (len(present) and np.abs(present).max() >= 10.0 ** (precision - scale)):
            return None  # infinite or too large: the server reports it
        scaled = np.rint(np.where(null, 0.0, floats) * 10.0**scale).astype(np.int64)
    else:
        if pd.api.types.is_unsigned_integer_dtype(dtype) and series.max() > np.iinfo(np.int64).max:
            return None
        null = series.isna().to_numpy()
        integers = series.to_numpy(dtype=np.int64, na_value=0)
        if len(integers) and np.abs(integers).max() >= 10 ** (precision - scale):
            return None
        scaled = integers * 10**scale
    if len(scaled) and np.abs(scaled).max() >= 10**precision:
        return None
    integer_groups = -(-(precision - scale) // 4)
    groups = integer_groups + (scale + padding) // 4
    header = np.array([groups, integer_groups - 1, 0, scale], dtype=">i2").view(">u2")
    powers = 10_000 ** np.arange(groups - 1, -1, -1, dtype=np.int64)

    def encode(a: int, b: int) -> BinaryField:
        values = scaled[a:b]
        magnitude = np.abs(values) * 10**padding
        payload = np.empty((len(values), 4 + groups), dtype=">u2")
        payload[:, :4] = header
        payload[:, 2] = np.where(values < 0, 0x4000, 0)
        payload[:, 4:] = (magnitude[:, None] // powers) % 10_000
        return _fixed_field(null[a:b], payload)

    return encode


def _datetime_nanoseconds(series: pd.Series) -> np.ndarray | None:
    """Naive datetimes as int64 nanoseconds since 1970 (NaT: int64 min), or None to let CSV decide.

    datetime64 columns, and object columns holding only `date`/`datetime`/`Timestamp` values without
    a time zone; text and anything else goes as CSV, which the server parses as before.
    """
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            return None
        return series.to_numpy(dtype="datetime64[ns]").view(np.int64)
    if series.dtype != object:
        return None
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    values = list(uniques)
    if not all(isinstance(value, dt.date) for value in values):
        return None
    if any(isinstance(value, dt.datetime) and value.tzinfo is not None for value in values):
        return None
    try:
        stamps = pd.to_datetime(pd.Series(values, dtype=object)).to_numpy(dtype="datetime64[ns]")
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        return None
    lookup = np.append(stamps.view(np.int64), np.iinfo(np.int64).min)
    return lookup[codes]


def _text_field(series: pd.Series, column: ColumnType, prefix: bytes) -> BinaryField:
    """Text payloads (UTF-8, after `prefix`), encoded once per distinct value of the chunk."""
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    texts = format_uniques(uniques, column, quoted=False) if len(uniques) else []
    matrix, lengths = _encoded_texts(texts, prefix)
    null = codes < 0
    safe_codes = np.where(null, 0, codes)
    row_lengths = np.where(null, 0, lengths[safe_codes] if len(lengths) else 0).astype(np.int64)
    present_lengths = row_lengths[~null]
    if len(present_lengths) == 0 or (present_lengths == present_lengths[0]).all():
        width = int(present_lengths[0]) if len(present_lengths) else 0
        fixed = matrix[safe_codes, :width] if len(texts) else np.zeros((len(codes), 0), dtype=np.uint8)
        return BinaryField(null=null, lengths=row_lengths, fixed=fixed)
    return BinaryField(
        null=null, lengths=row_lengths, blob=matrix.ravel(), starts=safe_codes.astype(np.int64) * matrix.shape[1]
    )


def _encoded_texts(texts: list[str], prefix: bytes) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of `texts` as a zero-padded uint8 matrix (one row per text) and their lengths."""
    if not texts:
        return np.zeros((0, 1), dtype=np.uint8), np.zeros(0, dtype=np.int64)
    try:  # ASCII (nearly always): numpy encodes the lot in C, and characters are bytes
        encoded = np.array(texts, dtype=object).astype(np.bytes_)
        lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    except UnicodeEncodeError:
        as_bytes = [text.encode("utf-8") for text in texts]
        encoded = np.array(as_bytes, dtype=np.bytes_)
        lengths = np.fromiter(map(len, as_bytes), dtype=np.int64, count=len(as_bytes))
    width = max(encoded.dtype.itemsize, 1)
    matrix = encoded.view(np.uint8).reshape(len(texts), encoded.dtype.itemsize)
    if matrix.shape[1] < width:
        matrix = np.zeros((len(texts), width), dtype=np.uint8)
    if prefix:
        matrix = np.hstack([np.tile(np.frombuffer(prefix, dtype=np.uint8), (len(texts), 1)), matrix])
        lengths = lengths + len(prefix)
    return np.ascontiguousarray(matrix), lengths
