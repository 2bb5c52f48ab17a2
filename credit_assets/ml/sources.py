"""Finding and reading the four monthly source files, one month at a time.

The sources are CSV files (plain or gzip) that hold every month in one file. A monthly partition needs only
its own rows, so the files are streamed in chunks and filtered on `snapshot_date`: memory follows the month,
not the file (at a million customers a month the files run to tens of millions of rows).

Every column is read as `str` with NA detection off: the dirt (`"_"`, `"NM"`, `"35547.71_"`, `""` ...) reaches
`cleaning.py` exactly as written, so cleaning decides what is missing, not the CSV reader's guesses.

The frames returned here are indexed by the 1-based line number of each row in its file (index name
LINE_INDEX_NAME) and carry the file path in `frame.attrs["source_path"]`, so that cleaning can name the file
and the line of a bad value. Line numbers assume one line per record (no embedded newlines in quoted fields,
no blank lines), which holds for these files.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd

from credit_assets.ml.schema import REQUIRED_COLUMNS, SOURCE_FILES

LINE_INDEX_NAME = "line"
SOURCE_PATH_ATTR = "source_path"
SNAPSHOT_COLUMN = "snapshot_date"

# Rows per chunk when streaming a file. Bounded memory: a chunk of the widest file (financials, 22 string
# columns) is a few hundred MB at most, whatever the file size.
READ_CHUNK_ROWS = 200_000

_ISO_MONTH_START = re.compile(r"^\d{4}-\d{2}-01$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HEADER_LINES = 1
# What reading a damaged file raises: truncated gzip (EOFError), corrupt deflate data (zlib.error), not gzip
# at all (gzip.BadGzipFile, an OSError), binary junk (UnicodeDecodeError), a malformed CSV row (ParserError).
_READ_ERRORS = (EOFError, zlib.error, OSError, UnicodeDecodeError, pd.errors.ParserError)


class SourceDataError(ValueError):
    """A source file cannot be used as it is.

    The message always names the file and, where it applies, the 1-based line, the column and the offending
    value, so that whoever reads it can open the file at the right place and fix it.
    """


def find_source_file(data_dir: str | os.PathLike[str], source: str) -> Path:
    """Return the file of `source` in `data_dir`: `<stem>.csv` or `<stem>.csv.gz`.

    Exactly one of the two must exist: with both present there is no way to know which is current, so that is
    an error rather than a silent pick.
    """
    directory = Path(data_dir)
    stem = _source_stem(source)
    candidates = [directory / f"{stem}.csv", directory / f"{stem}.csv.gz"]
    present = [path for path in candidates if path.is_file()]
    if len(present) == 1:
        return present[0]
    names = " or ".join(path.name for path in candidates)
    if not present:
        raise SourceDataError(f"no {source} file in {directory}: looked for {names}")
    raise SourceDataError(
        f"both {names} exist in {directory}: keep only one, the reader cannot tell which is current"
    )


def read_source_month(
    path: str | os.PathLike[str],
    source: str,
    month: dt.date | str,
    *,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """Return the rows of `path` whose `snapshot_date` is `month`, every column as `str`.

    `month` is the first day of a month (a `date`, or an ISO string such as a Dagster partition key). A month
    without rows is an error by default: an empty cohort usually means the wrong file or month. Pass
    `allow_empty=True` for a source that may legitimately lack a month (clickstream does not cover every
    cohort month: the real data has none for 2025-01); the result is then an empty frame with the file's
    columns.
    """
    month_start = as_month(month)
    return read_source_months(path, source, [month_start], allow_empty=allow_empty)[month_start]


def read_source_months(
    path: str | os.PathLike[str],
    source: str,
    months: Iterable[dt.date | str],
    *,
    allow_empty: bool = False,
) -> dict[dt.date, pd.DataFrame]:
    """Read several months of one file in a single pass: `{month: rows}` as `read_source_month` returns them.

    One pass instead of one per month matters when a whole range is needed (a backfill, the real-data checks):
    the file is decompressed and parsed once. Memory follows the months asked for.
    """
    file_path = Path(path)
    wanted = sorted({as_month(month) for month in months})
    _check_header(file_path, _required_columns(source))
    keys = {month.isoformat(): month for month in wanted}
    parts: dict[dt.date, list[pd.DataFrame]] = {month: [] for month in wanted}
    columns: list[str] = []
    for chunk in _iter_chunks(file_path):
        columns = list(chunk.columns)
        snapshot = chunk[SNAPSHOT_COLUMN]
        _check_snapshot_dates(snapshot, file_path)
        for key in set(snapshot.unique()).intersection(keys):
            parts[keys[key]].append(chunk[snapshot == key])
    empty_months = [month.isoformat() for month, frames in parts.items() if not frames]
    if empty_months and not allow_empty:
        raise SourceDataError(f"no rows for {', '.join(empty_months)} in {file_path}")
    if not columns:
        columns = _read_header(file_path)
    return {month: _month_frame(frames, columns, file_path) for month, frames in parts.items()}


def empty_month_frame(path: str | os.PathLike[str]) -> pd.DataFrame:
    """What `read_source_month(path, ..., allow_empty=True)` returns for a month without rows, from the
    header alone (no pass over the file)."""
    file_path = Path(path)
    return _month_frame([], _read_header(file_path), file_path)


def iter_source_month_chunks(
    path: str | os.PathLike[str],
    source: str,
    month: dt.date | str,
    *,
    allow_empty: bool = False,
    chunk_rows: int = READ_CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """Yield the rows of `month` chunk by chunk, as `read_source_month` would return them all at once.

    For months too large to hold as raw text (a million customers' financials as Python strings take
    well over a gigabyte): each chunk holds at most `chunk_rows` rows, indexed by file line and carrying
    `attrs["source_path"]`, so cleaning can run on it before the next chunk is read. Same checks and
    errors as `read_source_month`; the error for a month without rows comes after the whole file was
    read (nothing is yielded then).
    """
    file_path = Path(path)
    key = as_month(month).isoformat()
    _check_header(file_path, _required_columns(source))
    found = False
    for chunk in _iter_chunks(file_path, chunk_rows=chunk_rows):
        snapshot = chunk[SNAPSHOT_COLUMN]
        _check_snapshot_dates(snapshot, file_path)
        selected = snapshot.eq(key).to_numpy()
        if not selected.any():
            continue
        rows = chunk if selected.all() else chunk[selected]
        rows.attrs[SOURCE_PATH_ATTR] = str(file_path)
        found = True
        yield rows
    if not found and not allow_empty:
        raise SourceDataError(f"no rows for {key} in {file_path}")


def source_months(path: str | os.PathLike[str]) -> list[dt.date]:
    """Return the distinct months (first days) present in a source file, sorted.

    Reads only the `snapshot_date` column, so it is cheap enough to decide a backfill range from.
    """
    file_path = Path(path)
    _check_header(file_path, (SNAPSHOT_COLUMN,))
    seen: set[str] = set()
    for chunk in _iter_chunks(file_path, usecols=[SNAPSHOT_COLUMN]):
        snapshot = chunk[SNAPSHOT_COLUMN]
        _check_snapshot_dates(snapshot, file_path)
        seen.update(snapshot.unique())
    return sorted(dt.date.fromisoformat(value) for value in seen)


def as_month(month: dt.date | str) -> dt.date:
    """Normalise a month given as a date, datetime, Timestamp or ISO string to the `date` of its first day.

    A date that is not the first of a month is refused: silently rounding it could read the wrong cohort.
    """
    if isinstance(month, str):
        try:
            month = dt.date.fromisoformat(month.strip()[:10])
        except ValueError as exc:
            raise ValueError(f"month {month!r} is not an ISO date (YYYY-MM-DD)") from exc
    if isinstance(month, dt.datetime):  # also pd.Timestamp
        month = month.date()
    if not isinstance(month, dt.date):
        raise TypeError(f"month must be a date or an ISO string, got {type(month).__name__}")
    if month.day != 1:
        raise ValueError(f"month {month.isoformat()} is not the first day of a month")
    return month


def describe_rows(index_labels: Iterable[object], index_name: str | None) -> str:
    """Say where rows are: `line 17` when the index holds file line numbers, `row 3` otherwise."""
    labels = list(index_labels)
    word = "line" if index_name == LINE_INDEX_NAME else "row"
    if len(labels) > 1:
        word += "s"
    return f"{word} {', '.join(str(label) for label in labels)}"


def _source_stem(source: str) -> str:
    try:
        return SOURCE_FILES[source]
    except KeyError:
        raise SourceDataError(f"unknown source {source!r}: expected one of {sorted(SOURCE_FILES)}") from None


def _required_columns(source: str) -> tuple[str, ...]:
    _source_stem(source)
    return REQUIRED_COLUMNS[source]


def _read_header(path: Path) -> list[str]:
    """Return the column names of the file's first line (file errors become SourceDataError)."""
    if not path.is_file():
        raise SourceDataError(f"source file {path} does not exist")
    try:
        header = pd.read_csv(path, nrows=0, dtype=str)
    except pd.errors.EmptyDataError:
        raise SourceDataError(f"{path} is empty: expected a header line with the column names") from None
    except _READ_ERRORS as exc:
        raise _read_failure(path, exc, last_line=0) from exc
    return [str(column) for column in header.columns]


def _check_header(path: Path, required: Iterable[str]) -> None:
    """Refuse a file that lacks a required column, naming the file and every missing column.

    A file written with another delimiter (`;`, tab) parses as one wide column; the message says so, since
    "all columns missing" alone would send the reader looking in the wrong place.
    """
    columns = _read_header(path)
    missing = [column for column in required if column not in columns]
    if not missing:
        return
    message = f"{path} is missing required column(s) {', '.join(missing)} (found: {', '.join(columns)})"
    if len(columns) == 1 and re.search(r"[;\t|]", columns[0]):
        message += "; the header has a single column: the file is not comma-delimited"
    raise SourceDataError(message)


def _iter_chunks(
    path: Path, usecols: list[str] | None = None, chunk_rows: int = READ_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Stream the file as string chunks indexed by line number; read failures become SourceDataError.

    A truncated or corrupt gzip and a malformed CSV row surface while iterating, so the line reached so far is
    part of the message.
    """
    last_line = _HEADER_LINES
    reader = pd.read_csv(
        path,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        usecols=usecols,
        chunksize=chunk_rows,
        encoding="utf-8",
    )
    try:
        with reader:
            for chunk in reader:
                chunk.index = pd.RangeIndex(last_line + 1, last_line + 1 + len(chunk), name=LINE_INDEX_NAME)
                last_line += len(chunk)
                yield chunk
    except _READ_ERRORS as exc:
        raise _read_failure(path, exc, last_line) from exc


def _read_failure(path: Path, exc: BaseException, last_line: int) -> SourceDataError:
    """The error for a file that stops being readable after `last_line` (0: not even the header)."""
    where = f"after line {last_line}" if last_line else "in its header"
    if isinstance(exc, (EOFError, zlib.error)):
        return SourceDataError(f"{path} is truncated or corrupt {where}: {exc}")
    return SourceDataError(f"{path}: cannot read {where}: {exc}")


def _check_snapshot_dates(snapshot: pd.Series, path: Path) -> None:
    """Refuse a `snapshot_date` that is not an ISO first-of-month date, naming the file, line and value.

    A chunk holds a few distinct dates, so only the distinct values are checked (fast on millions of rows).
    """
    for value in snapshot.unique():
        problem = _snapshot_problem(value)
        if problem is None:
            continue
        rows = snapshot.eq(value) if isinstance(value, str) else snapshot.isna()
        first_line = snapshot.index[rows.to_numpy()][0]
        raise SourceDataError(f"{path} line {first_line}, column {SNAPSHOT_COLUMN}: {value!r} {problem}")


def _snapshot_problem(value: object) -> str | None:
    """Why `value` is not a usable snapshot date, or None when it is one."""
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        return "is not a date in ISO format YYYY-MM-DD"
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return "is not a valid calendar date"
    if not _ISO_MONTH_START.match(value):
        return "is not the first day of a month (snapshots are monthly)"
    return None


def _month_frame(frames: list[pd.DataFrame], columns: list[str], path: Path) -> pd.DataFrame:
    if frames:
        frame = pd.concat(frames) if len(frames) > 1 else frames[0].copy()
    else:
        frame = pd.DataFrame({column: pd.Series(dtype=object) for column in columns})
        frame.index = pd.RangeIndex(0, name=LINE_INDEX_NAME)
    frame.attrs[SOURCE_PATH_ATTR] = str(path)
    return frame
