"""PostgreSQL IO manager for pandas DataFrames, in the shape of dagster-duckdb's.

A materialization replaces exactly the rows of its partition (a time window) in ONE transaction:

1. the DDL in `sql/` is applied once per process (idempotent; see `ensure_ddl_applied`);
2. the frame is checked and converted before anything is written: its columns must be columns of the
   table, every row's partition value must lie inside the window, values must convert;
3. for a table declaratively partitioned by month on the partition column, each month's table
   partition is created if missing (empty, then ATTACHed: that takes only a SHARE UPDATE EXCLUSIVE
   lock on the parent, so writers of other months are not blocked); then, in one transaction:
   `pg_advisory_xact_lock` per (table, month) so writers of the same month serialise, TRUNCATE of the
   month's table partitions (or DELETE `partition_expr >= start AND partition_expr < end` for a plain
   table), COPY of the frame (CSV built column by column, streamed in chunks), commit.
   Any failure rolls the whole transaction back: the previous rows stay.

Layout (as in dagster-duckdb): `TableSlice` says what is written; the "client" functions own the SQL
(identifiers always quoted with `psycopg.sql.Identifier`, values bound); the "DataFrame" functions own
the conversion of pandas values into COPY text and back; `PostgresPandasIOManager` wires them to
Dagster contexts.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from dagster import ConfigurableIOManager, Failure, InputContext, MetadataValue, OutputContext
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from pydantic import Field, field_validator

from credit_assets.resources.postgres import PostgresResource

DDL_DIR = Path(__file__).resolve().parents[2] / "sql"
"""`sql/` of the project: DDL files applied in file-name order inside the configured schema."""

DDL_LEDGER_TABLE = "applied_sql_files"
"""Per schema: which version (sha256) of each DDL file was applied, so later processes skip it."""

COPY_CHUNK_ROWS = 100_000
"""Rows formatted and sent to COPY at a time (bounds the memory of the CSV text)."""

IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

_PARTITION_COLUMN_PATTERN = re.compile(
    r'^\s*(?:"(?P<quoted>[A-Za-z_][A-Za-z0-9_]*)"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))\s*'
    r"(?:::\s*(?P<cast>date|timestamptz|timestamp(?:\s+with(?:out)?\s+time\s+zone)?))?\s*$",
    re.IGNORECASE,
)


_CAST_TYPES = {
    "date": "date",
    "timestamp": "timestamp without time zone",
    "timestamp without time zone": "timestamp without time zone",
    "timestamptz": "timestamp with time zone",
    "timestamp with time zone": "timestamp with time zone",
}


class PostgresWriteError(Failure, ValueError):
    """A frame cannot be written as asked; nothing was written. The message says what to fix.

    A `dagster.Failure` that bypasses retry policies: the same frame fails the same way on every attempt
    (only a lost connection is worth a retry).
    """

    def __init__(self, message: str) -> None:
        super().__init__(description=message, allow_retries=False)


def validate_identifier(name: str, what: str) -> str:
    """Return `name` if it is a plain PostgreSQL identifier (letters, digits, `_`; max 63), else raise."""
    if not isinstance(name, str) or not IDENTIFIER_PATTERN.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a valid identifier: use letters, digits and underscores, "
            "start with a letter or underscore, at most 63 characters."
        )
    return name


# --------------------------------------------------------------------------------------------------
# What is written or read
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionWindow:
    """A half-open time window `[start, end)` in wall-clock time of the partitions definition."""

    start: dt.datetime
    end: dt.datetime

    @classmethod
    def from_time_window(cls, start: dt.datetime, end: dt.datetime) -> PartitionWindow:
        return cls(start.replace(tzinfo=None), end.replace(tzinfo=None))

    @property
    def is_dates(self) -> bool:
        """True when both bounds are midnights: the window is a range of whole days."""
        return self.start.time() == dt.time(0) and self.end.time() == dt.time(0)

    @property
    def is_whole_months(self) -> bool:
        """True when the window starts and ends on the first of a month at midnight."""
        return self.is_dates and self.start.day == 1 and self.end.day == 1

    def bounds(self) -> tuple[str, str]:
        """The bounds as SQL literal text: `YYYY-MM-DD` for whole days, ISO timestamps otherwise."""
        if self.is_dates:
            return self.start.date().isoformat(), self.end.date().isoformat()
        return self.start.isoformat(sep=" "), self.end.isoformat(sep=" ")

    def months(self) -> list[dt.date]:
        """First days of every calendar month the window overlaps, in order."""
        month = dt.date(self.start.year, self.start.month, 1)
        months: list[dt.date] = []
        while dt.datetime.combine(month, dt.time(0)) < self.end:
            months.append(month)
            month = next_month(month)
        return months

    def describe(self) -> str:
        start, end = self.bounds()
        return f"[{start}, {end})"


def next_month(month: dt.date) -> dt.date:
    """The first day of the month after `month`."""
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


@dataclass(frozen=True)
class PartitionColumn:
    """A `partition_expr` that is a bare column, optionally cast (`snapshot_date`, `month_date::date`)."""

    name: str
    cast: str | None


def parse_partition_column(partition_expr: str) -> PartitionColumn | None:
    """The column behind `partition_expr`, or None when it is a more general SQL expression."""
    match = _PARTITION_COLUMN_PATTERN.fullmatch(partition_expr)
    if not match:
        return None
    name = match.group("quoted") or match.group("bare").lower()
    cast = match.group("cast")
    return PartitionColumn(name=name, cast=" ".join(cast.lower().split()) if cast else None)


@dataclass(frozen=True)
class TableSlice:
    """The rows one output or input covers: a whole table, or the rows of a time window."""

    schema: str
    table: str
    partition_expr: str | None = None
    window: PartitionWindow | None = None
    columns: Sequence[str] | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)


# --------------------------------------------------------------------------------------------------
# Client: the SQL
# --------------------------------------------------------------------------------------------------


class ColumnKind(Enum):
    INTEGER = "integer"
    NUMERIC = "numeric"
    FLOAT = "float"
    BOOLEAN = "boolean"
    DATE = "date"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"
    JSON = "json"
    TEXT = "text"


_KIND_BY_DATA_TYPE = {
    "smallint": ColumnKind.INTEGER,
    "integer": ColumnKind.INTEGER,
    "bigint": ColumnKind.INTEGER,
    "numeric": ColumnKind.NUMERIC,
    "real": ColumnKind.FLOAT,
    "double precision": ColumnKind.FLOAT,
    "boolean": ColumnKind.BOOLEAN,
    "date": ColumnKind.DATE,
    "timestamp without time zone": ColumnKind.TIMESTAMP,
    "timestamp with time zone": ColumnKind.TIMESTAMPTZ,
    "json": ColumnKind.JSON,
    "jsonb": ColumnKind.JSON,
}


@dataclass(frozen=True)
class ColumnType:
    """A table column as the COPY text needs it: its name, SQL type and (for NUMERIC) its scale."""

    name: str
    data_type: str
    numeric_scale: int | None = None
    numeric_precision: int | None = None

    @property
    def kind(self) -> ColumnKind:
        return _KIND_BY_DATA_TYPE.get(self.data_type, ColumnKind.TEXT)


@dataclass(frozen=True)
class TableInfo:
    """What the IO manager needs to know about an existing table."""

    oid: int
    columns: Mapping[str, ColumnType]
    range_partition_column: str | None
    """The single column of `PARTITION BY RANGE (column)`, None for a plain table."""
    is_partitioned: bool

    def monthly_partition_column(self) -> str | None:
        """The range partition column when its type lets the IO manager create month partitions."""
        column = self.range_partition_column
        if column and self.columns[column].kind in (ColumnKind.DATE, ColumnKind.TIMESTAMP):
            return column
        return None


_APPLIED_DDL: set[tuple[str, str]] = set()
_APPLIED_DDL_LOCK = threading.Lock()


def ensure_ddl_applied(
    connection: psycopg.Connection, url: str, schema: str, *, ddl_dir: Path = DDL_DIR, force: bool = False
) -> None:
    """Apply the DDL files once per process and (url, schema); later calls return at once."""
    key = (url, schema)
    with _APPLIED_DDL_LOCK:
        if key in _APPLIED_DDL and not force:
            return
        apply_ddl(connection, schema, ddl_dir=ddl_dir, force=force)
        _APPLIED_DDL.add(key)


def apply_ddl(
    connection: psycopg.Connection, schema: str, *, ddl_dir: Path = DDL_DIR, force: bool = False
) -> list[str]:
    """Create `schema` if missing and run every `*.sql` of `ddl_dir` in name order inside it.

    Every file is idempotent, but statements such as `CREATE INDEX IF NOT EXISTS` still queue for a
    SHARE lock behind a running COPY into the table (measured: they block). So a file that was already
    applied with the same content (recorded in `applied_sql_files`) is skipped unless `force`.
    One transaction under an advisory lock, so two processes never run the DDL at the same time.
    Returns the names of the files it ran.
    """
    validate_identifier(schema, "schema_name")
    files = sorted(ddl_dir.glob("*.sql"))
    if not files:
        raise FileNotFoundError(
            f"No DDL files (*.sql) in {ddl_dir}: the IO manager cannot create its tables."
        )
    ran: list[str] = []
    with connection.transaction(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"credit_assets:ddl:{schema}"]
        )
        # Checked first: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when it exists.
        if cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone() is None:
            cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cursor.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        cursor.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (file_name TEXT PRIMARY KEY, sha256 CHAR(64) NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            ).format(sql.Identifier(schema, DDL_LEDGER_TABLE))
        )
        applied = dict(
            cursor.execute(
                sql.SQL("SELECT file_name, sha256 FROM {}").format(sql.Identifier(schema, DDL_LEDGER_TABLE))
            ).fetchall()
        )
        for path in files:
            text = path.read_text(encoding="utf-8")
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            if applied.get(path.name) == digest and not force:
                continue
            try:
                cursor.execute(text)  # no parameters: sent as one simple query, several statements
            except psycopg.Error as exc:
                raise RuntimeError(f"DDL file {path} failed in schema {schema!r}: {exc}") from exc
            cursor.execute(
                sql.SQL(
                    "INSERT INTO {} (file_name, sha256) VALUES (%s, %s) ON CONFLICT (file_name)"
                    " DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()"
                ).format(sql.Identifier(schema, DDL_LEDGER_TABLE)),
                [path.name, digest],
            )
            ran.append(path.name)
    return ran


def describe_table(connection: psycopg.Connection, schema: str, table: str) -> TableInfo | None:
    """Columns and partitioning of `schema.table`, or None when there is no such table."""
    row = connection.execute(
        "SELECT c.oid, c.relkind, pg_get_partkeydef(c.oid) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')",
        [schema, table],
    ).fetchone()
    if row is None:
        return None
    oid, relkind, partition_key = row
    columns = {
        name: ColumnType(name=name, data_type=data_type, numeric_scale=scale, numeric_precision=precision)
        for name, data_type, scale, precision in connection.execute(
            "SELECT column_name, data_type, numeric_scale, numeric_precision FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
    }
    range_column = None
    if partition_key:
        match = re.fullmatch(r'RANGE \((?:"([^"]+)"|([A-Za-z_][A-Za-z0-9_]*))\)', partition_key)
        if match:
            range_column = match.group(1) or match.group(2)
    return TableInfo(
        oid=oid, columns=columns, range_partition_column=range_column, is_partitioned=relkind == "p"
    )


def month_partition_name(table: str, month: dt.date) -> str:
    """Name of the table partition holding `month` of `table`, e.g. `model_inference_y2024m01`."""
    name = f"{table}_y{month.year:04d}m{month.month:02d}"
    return validate_identifier(name, "table partition name")


def month_partition_bound(month: dt.date, info: TableInfo) -> str:
    """How PostgreSQL prints the bounds of `month`'s partition (DateStyle ISO), for matching."""
    column = info.monthly_partition_column()
    assert column is not None
    as_text = (
        (lambda day: day.isoformat())
        if info.columns[column].kind is ColumnKind.DATE
        else (lambda day: f"{day.isoformat()} 00:00:00")
    )
    return f"FOR VALUES FROM ('{as_text(month)}') TO ('{as_text(next_month(month))}')"


def existing_month_partitions(
    connection: psycopg.Connection, info: TableInfo, months: Sequence[dt.date]
) -> dict[dt.date, str]:
    """The table partitions that hold exactly these months (by their bounds), by month.

    `pg_get_expr(relpartbound, 0)`: with the partition's oid instead of 0 it would take a lock on the
    partition and so wait for a writer that is truncating another month.
    """
    by_bound = {
        bound: name
        for name, bound in connection.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, 0) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s",
            [info.oid],
        ).fetchall()
    }
    found = {}
    for month in months:
        name = by_bound.get(month_partition_bound(month, info))
        if name is not None:
            found[month] = name
    return found


def ensure_month_partitions(
    connection: psycopg.Connection, target: TableSlice, info: TableInfo, months: Sequence[dt.date]
) -> dict[dt.date, str]:
    """Create the missing month partitions of `target.table` in their own short transaction.

    A partition is created empty with `CREATE TABLE ... (LIKE parent)` and then ATTACHed, which takes
    SHARE UPDATE EXCLUSIVE on the parent: unlike `CREATE TABLE ... PARTITION OF` (ACCESS EXCLUSIVE,
    measured to wait behind a running COPY of another month) it neither waits for nor blocks writers
    of other months. An empty partition left behind by a later failed write is harmless.
    Returns the partition name of every month.
    """
    partitions = existing_month_partitions(connection, info, months)
    missing = [month for month in months if month not in partitions]
    if not missing:
        return partitions
    parent = target.identifier
    with connection.transaction(), connection.cursor() as cursor:
        lock_partitions(cursor, target, missing)
        partitions.update(existing_month_partitions(connection, info, missing))  # created meanwhile?
        for month in missing:
            if month in partitions:
                continue
            name = month_partition_name(target.table, month)
            taken = cursor.execute(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = %s",
                [target.schema, name],
            ).fetchone()
            if taken:
                raise PostgresWriteError(
                    f"Cannot create the partition of {target.qualified_name} for {month:%Y-%m}: a relation "
                    f"named {target.schema}.{name} exists but is not that month's partition. "
                    "Rename or drop it."
                )
            start, end = month_partition_bound(month, info).split("'")[1::2]
            child = sql.Identifier(target.schema, name)
            cursor.execute(
                sql.SQL(
                    "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
                    " INCLUDING GENERATED INCLUDING STORAGE)"
                ).format(child, parent)
            )
            cursor.execute(
                sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                    parent, child, sql.Literal(start), sql.Literal(end)
                )
            )
            partitions[month] = name
    return partitions


def partition_lock_key(schema: str, table: str, month: dt.date | None) -> str:
    """Text of the advisory lock a writer of `month` of `schema.table` holds (None: whole table).

    The lock id is `hashtextextended(key, 0)`: hold it from another session to pause writers.
    """
    return f"credit_assets:{schema}.{table}:{month.isoformat() if month else '*'}"


def lock_partitions(cursor: psycopg.Cursor, target: TableSlice, months: Sequence[dt.date] | None) -> None:
    """Take the transaction-scoped advisory locks of these months (None: the whole table), in order."""
    keys = (
        [partition_lock_key(target.schema, target.table, month) for month in sorted(months)]
        if (months is not None)
        else [partition_lock_key(target.schema, target.table, None)]
    )
    for key in keys:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [key])


def window_condition(partition_expr: str, start: sql.Composable, end: sql.Composable) -> sql.Composed:
    """`partition_expr >= start AND partition_expr < end` (a general expression in parentheses)."""
    is_column = parse_partition_column(partition_expr) is not None
    expression = sql.SQL(partition_expr.strip() if is_column else f"({partition_expr})")
    return sql.SQL("{expr} >= {start} AND {expr} < {end}").format(expr=expression, start=start, end=end)


def count_rows(
    cursor: psycopg.Cursor, relation: sql.Composable, condition: sql.Composable | None = None
) -> int:
    query = sql.SQL("SELECT count(*) FROM {}").format(relation)
    if condition is not None:
        query = sql.SQL("{} WHERE {}").format(query, condition)
    return int(cursor.execute(query).fetchone()[0])


def truncate_partitions(cursor: psycopg.Cursor, schema: str, partitions: Sequence[str]) -> int:
    """Count, then TRUNCATE these table partitions; returns how many rows they held."""
    relations = [sql.Identifier(schema, name) for name in partitions]
    rows = sum(count_rows(cursor, relation) for relation in relations)
    cursor.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(relations)))
    return rows


def delete_window(cursor: psycopg.Cursor, target: TableSlice) -> int:
    """DELETE the window's rows (bounds bound as parameters); returns how many rows it deleted."""
    assert target.partition_expr is not None and target.window is not None
    condition = window_condition(target.partition_expr, sql.Placeholder(), sql.Placeholder())
    cursor.execute(
        sql.SQL("DELETE FROM {} WHERE {}").format(target.identifier, condition), target.window.bounds()
    )
    return cursor.rowcount


def truncate_table(cursor: psycopg.Cursor, target: TableSlice) -> int:
    rows = count_rows(cursor, target.identifier)
    cursor.execute(sql.SQL("TRUNCATE {}").format(target.identifier))
    return rows


def copy_into(
    cursor: psycopg.Cursor,
    target: TableSlice,
    columns: Sequence[str],
    chunks: Iterator[str] | Iterator[bytes] | Iterator[str | bytes],
    *,
    relation: sql.Composable | None = None,
    binary: bool = False,
) -> None:
    """COPY CSV text (unquoted empty field = NULL), or COPY binary data, into these columns.

    `relation` is the table written (default the target table; a month's table partition takes the
    rows without routing them). psycopg's queued writer sends each chunk from a worker thread while
    the next one is formatted, so formatting overlaps the server's work instead of adding to it.
    """
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
        relation if relation is not None else target.identifier,
        sql.SQL(", ").join(sql.Identifier(column) for column in columns),
        sql.SQL("binary" if binary else "csv"),
    )
    with cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy:
        for chunk in chunks:
            copy.write(chunk)


def select_statement(target: TableSlice) -> sql.Composed:
    """A SELECT of exactly the slice's rows, with literal bounds: it can be pasted into psql."""
    columns = (
        sql.SQL(", ").join(sql.Identifier(column) for column in target.columns)
        if target.columns
        else sql.SQL("*")
    )
    query = sql.SQL("SELECT {} FROM {}").format(columns, target.identifier)
    if target.window is None or target.partition_expr is None:
        return query
    start, end = target.window.bounds()
    return sql.SQL("{} WHERE {}").format(
        query, window_condition(target.partition_expr, sql.Literal(start), sql.Literal(end))
    )


def load_statement(target: TableSlice, info: TableInfo) -> sql.Composed:
    """The slice's SELECT for `load_input`: NUMERIC read as double precision (no Decimal objects)."""
    names = list(target.columns) if target.columns else list(info.columns)
    unknown = [name for name in names if name not in info.columns]
    if unknown:
        raise PostgresWriteError(f"{target.qualified_name} has no columns {unknown} (asked by 'columns').")
    selected = [
        sql.SQL("{}::double precision AS {}").format(sql.Identifier(name), sql.Identifier(name))
        if info.columns[name].kind is ColumnKind.NUMERIC
        else sql.Identifier(name)
        for name in names
    ]
    query = sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(selected), target.identifier)
    if target.window is None or target.partition_expr is None:
        return query
    return sql.SQL("{} WHERE {}").format(
        query, window_condition(target.partition_expr, sql.Placeholder(), sql.Placeholder())
    )


def prepare_session(connection: psycopg.Connection) -> None:
    """Fix the settings the IO manager's text formats rely on (UTC, ISO dates)."""
    connection.execute("SET TIME ZONE 'UTC'")
    connection.execute("SET DateStyle = 'ISO, YMD'")


# --------------------------------------------------------------------------------------------------
# DataFrames: pandas values <-> COPY text
# --------------------------------------------------------------------------------------------------


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
    values = _to_timestamps(frame[column])
    start, end = pd.Timestamp(target.window.start), pd.Timestamp(target.window.end)
    outside = ~((values >= start) & (values < end))
    if outside.any():
        examples = frame.loc[outside.to_numpy(), column].astype(str).unique()[:5].tolist()
        raise PostgresWriteError(
            f"{int(outside.sum())} of {len(frame)} rows for {target.qualified_name} have {column} outside "
            f"the partition {target.window.describe()} (e.g. {examples}); nothing was written. "
            "A partition's output must hold only that partition's rows."
        )


def _to_timestamps(series: pd.Series) -> pd.Series:
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
        fields = [
            _format_fields(prepared[name].iloc[start : start + chunk_rows], info.columns[name])
            for name in names
        ]
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
            frame[name] = _to_timestamps(frame[name])
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
        values = series.astype(object).map(
            lambda value: float(value) if isinstance(value, decimal.Decimal) else value
        )
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
    lookup = np.array([*_format_uniques(uniques, column), ""], dtype=object)  # code -1 (NULL) -> ""
    return lookup[codes].tolist()


def _format_floats(values: np.ndarray) -> list[str]:
    """Shortest round-trip text of each float (mostly distinct values: no factorize); NaN -> NULL."""
    texts = list(map(repr, values.tolist()))
    for position in np.flatnonzero(np.isnan(values)).tolist():
        texts[position] = ""
    return texts


def _format_uniques(uniques: Any, column: ColumnType, quoted: bool = True) -> list[str]:
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
    if pd.api.types.is_datetime64_any_dtype(values.dtype) and not isinstance(
        values.dtype, pd.DatetimeTZDtype
    ):
        stamps = values.to_numpy(dtype="datetime64[us]")
        if kind is ColumnKind.DATE:
            return np.datetime_as_string(stamps.astype("datetime64[D]")).tolist()
        texts = np.datetime_as_string(stamps, unit="us")
        return [f"{text}+00" for text in texts] if kind is ColumnKind.TIMESTAMPTZ else texts.tolist()
    if not quoted:
        return [str(value) for value in values]
    return [_quote(str(value)) for value in values]


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

_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_BINARY_TRAILER = b"\xff\xff"
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
    yield _BINARY_SIGNATURE
    yield from binary_row_chunks(encoders, n_rows, chunk_rows)
    yield _BINARY_TRAILER


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
    texts = _format_uniques(uniques, column, quoted=False) if len(uniques) else []
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


# --------------------------------------------------------------------------------------------------
# The IO manager
# --------------------------------------------------------------------------------------------------


class PostgresPandasIOManager(ConfigurableIOManager):
    """Stores pandas DataFrames in PostgreSQL tables, one Dagster partition's rows at a time.

    The table is the last component of the asset key, in `schema_name`. For a time-partitioned asset,
    set the definition metadata `partition_expr` to the column (or SQL expression) that places a row
    in its partition, e.g. `@asset(metadata={"partition_expr": "snapshot_date"})`. Materializing a
    partition replaces exactly that partition's rows in one transaction (TRUNCATE of the month's table
    partition for a table partitioned by month, DELETE of the window otherwise, then COPY); a failed
    write leaves the previous rows. An unpartitioned asset replaces the whole table. Each write
    reports its row count, the rows it replaced, and a SQL query that reads them back.
    """

    postgres: PostgresResource = Field(description="The PostgreSQL server holding the tables.")
    schema_name: str = Field(
        default="public",
        description=(
            "Schema of the tables (created if missing; the DDL in sql/ is applied inside it). "
            "Letters, digits and underscores only."
        ),
    )

    @field_validator("schema_name")
    @classmethod
    def _schema_name_is_identifier(cls, value: str) -> str:
        return validate_identifier(value, "schema_name")

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise TypeError(
                f"{type(self).__name__} stores pandas DataFrames; the output is a {type(obj).__name__}."
            )
        target = self._table_slice(context, context.definition_metadata or {})
        with self.postgres.connect(autocommit=True) as connection:
            prepare_session(connection)
            info = self._table_info(connection, target)
            columns = check_columns(obj, target, info)
            self._check_window(obj, target, info)
            prepared = prepare_frame(obj, columns, info)
            rows_replaced = self._replace_rows(connection, target, info, columns, prepared, obj)
            query = select_statement(target).as_string(connection)
        context.add_output_metadata(
            {
                "dagster/row_count": MetadataValue.int(len(obj)),
                "dagster/table_name": MetadataValue.text(target.qualified_name),
                "table": MetadataValue.text(target.qualified_name),
                "partition": MetadataValue.text(target.window.describe() if target.window else "whole table"),
                "rows_replaced": MetadataValue.int(rows_replaced),
                "query": MetadataValue.text(query),
            }
        )

    def load_input(self, context: InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        metadata = upstream.definition_metadata if upstream is not None else {}
        target = self._table_slice(context, metadata or {})
        columns = (context.definition_metadata or {}).get("columns")
        if columns:
            target = TableSlice(
                target.schema, target.table, target.partition_expr, target.window, list(columns)
            )
        with self.postgres.connect(autocommit=True) as connection:
            prepare_session(connection)
            info = describe_table(connection, target.schema, target.table)
            if info is None:
                raise PostgresWriteError(
                    f"Table {target.qualified_name} does not exist: materialize its asset first."
                )
            with connection.cursor(binary=True) as cursor:
                cursor.execute(
                    load_statement(target, info), target.window.bounds() if target.window else None
                )
                rows = cursor.fetchall()
                names = [column.name for column in cursor.description or []]
        return frame_from_rows(rows, names, info)

    # -- helpers ------------------------------------------------------------------------------------

    def _table_slice(self, context: OutputContext | InputContext, metadata: Mapping[str, Any]) -> TableSlice:
        if context.has_asset_key:
            table = context.asset_key.path[-1]
        else:
            table = str(metadata.get("table") or context.name)
        validate_identifier(table, "table name (last component of the asset key)")
        if not context.has_asset_partitions:
            return TableSlice(schema=self.schema_name, table=table)
        partition_expr = metadata.get("partition_expr")
        if not isinstance(partition_expr, str) or not partition_expr.strip():
            raise PostgresWriteError(
                f"Asset {table!r} is partitioned but has no 'partition_expr' metadata, so the IO manager "
                "does not know which rows a partition owns. Set e.g. "
                '@asset(metadata={"partition_expr": "snapshot_date"}).'
            )
        if ";" in partition_expr or "--" in partition_expr:
            raise PostgresWriteError(f"partition_expr {partition_expr!r} must be one SQL expression.")
        try:
            time_window = context.asset_partitions_time_window
        except Exception as exc:  # dagster raises several types for "not time-partitioned"
            raise PostgresWriteError(
                f"Asset {table!r}: {type(self).__name__} supports time-window partitions only ({exc})."
            ) from exc
        window = PartitionWindow.from_time_window(time_window.start, time_window.end)
        return TableSlice(schema=self.schema_name, table=table, partition_expr=partition_expr, window=window)

    def _table_info(self, connection: psycopg.Connection, target: TableSlice) -> TableInfo:
        ensure_ddl_applied(connection, self.postgres.url, target.schema)
        info = describe_table(connection, target.schema, target.table)
        if info is None:  # dropped since this process applied the DDL: re-apply once
            ensure_ddl_applied(connection, self.postgres.url, target.schema, force=True)
            info = describe_table(connection, target.schema, target.table)
        if info is None:
            raise PostgresWriteError(
                f"Table {target.qualified_name} does not exist and no DDL file in {DDL_DIR} creates it. "
                "Add a CREATE TABLE IF NOT EXISTS for it to sql/."
            )
        return info

    def _check_window(self, frame: pd.DataFrame, target: TableSlice, info: TableInfo) -> None:
        if target.window is None or target.partition_expr is None:
            return
        partition_column = parse_partition_column(target.partition_expr)
        if partition_column is not None:
            if partition_column.name not in info.columns:
                raise PostgresWriteError(
                    f"partition_expr {target.partition_expr!r} names column {partition_column.name!r}, "
                    f"which {target.qualified_name} does not have."
                )
            check_rows_in_window(frame, target, partition_column.name)

    def _replace_rows(
        self,
        connection: psycopg.Connection,
        target: TableSlice,
        info: TableInfo,
        columns: Sequence[str],
        prepared: Mapping[str, pd.Series],
        frame: pd.DataFrame,
    ) -> int:
        partitioned_on_expr = self._partitioned_on_expr(target, info)
        months = self._months_to_partition(target, info, frame, partitioned_on_expr)
        encoders = binary_copy_encoders(prepared, info)

        def send(cursor: psycopg.Cursor, relation: sql.Composable) -> None:
            if encoders is not None:
                chunks: Iterator[str | bytes] = copy_binary_chunks(encoders, len(frame))
            else:
                chunks = copy_text_chunks(prepared, info)
            copy_into(cursor, target, columns, chunks, relation=relation, binary=encoders is not None)

        return self._replace_with(connection, target, info, months, send, len(frame))

    def _replace_with(
        self,
        connection: psycopg.Connection,
        target: TableSlice,
        info: TableInfo,
        months: Sequence[dt.date],
        send: Any,
        n_rows: int,
    ) -> int:
        """Replace the target's rows with what `send(cursor, relation)` COPYs, in one transaction."""
        partitioned_on_expr = self._partitioned_on_expr(target, info)
        partitions = ensure_month_partitions(connection, target, info, months) if months else {}
        fast_path = target.window is not None and target.window.is_whole_months and partitioned_on_expr
        relation: sql.Composable = target.identifier
        with connection.transaction(), connection.cursor() as cursor:
            if target.window is None:
                lock_partitions(cursor, target, None)
                rows_replaced = truncate_table(cursor, target)
            else:
                lock_partitions(cursor, target, target.window.months())
                if fast_path:
                    names = [partitions[month] for month in target.window.months()]
                    rows_replaced = truncate_partitions(cursor, target.schema, names)
                    if len(names) == 1:  # straight into the month's table: no routing per row
                        relation = sql.Identifier(target.schema, names[0])
                else:
                    rows_replaced = delete_window(cursor, target)
            send(cursor, relation)
            if target.window is not None and parse_partition_column(target.partition_expr or "") is None:
                self._check_copied_rows_in_window(cursor, target, n_rows)
        return rows_replaced

    def partition_writer(
        self,
        table: str,
        *,
        partition_expr: str | None = None,
        window: PartitionWindow | None = None,
        spool_dir: str | Path | None = None,
    ) -> PartitionWriter:
        """A writer that replaces one partition (or the whole table) with frames added one at a time.

        For outputs too large to hold in memory at once (a month of millions of scored customers):
        see `PartitionWriter`. Same checks, conversions, locking and replacement as `handle_output`.
        """
        validate_identifier(table, "table name")
        if (partition_expr is None) != (window is None):
            raise ValueError("partition_expr and window go together: give both or neither")
        target = TableSlice(self.schema_name, table, partition_expr, window)
        return PartitionWriter(self, target, spool_dir=spool_dir)

    def _partitioned_on_expr(self, target: TableSlice, info: TableInfo) -> bool:
        partition_column = parse_partition_column(target.partition_expr or "")
        key = info.monthly_partition_column()
        return (
            key is not None
            and partition_column is not None
            and partition_column.name == key
            and (
                partition_column.cast is None
                or _CAST_TYPES[partition_column.cast] == info.columns[key].data_type
            )
        )

    def _months_to_partition(
        self, target: TableSlice, info: TableInfo, frame: pd.DataFrame, partitioned_on_expr: bool
    ) -> list[dt.date]:
        """Months whose table partitions must exist before the COPY (none for a plain table).

        The window's months when the table is partitioned on partition_expr, else the months of the
        frame's partition-key values (an unpartitioned output, or a table partitioned on another column).
        """
        key = info.monthly_partition_column()
        if key is None:
            return []
        if target.window is not None and partitioned_on_expr:
            return target.window.months()
        if key not in frame.columns or frame.empty:
            return []
        stamps = _to_timestamps(frame[key]).dropna()
        return sorted({period.start_time.date() for period in stamps.dt.to_period("M").unique()})

    @staticmethod
    def _check_copied_rows_in_window(cursor: psycopg.Cursor, target: TableSlice, expected: int) -> None:
        """For a general partition_expr: after DELETE + COPY the window must hold exactly the frame."""
        assert target.window is not None and target.partition_expr is not None
        start, end = target.window.bounds()
        in_window = count_rows(
            cursor,
            target.identifier,
            window_condition(target.partition_expr, sql.Literal(start), sql.Literal(end)),
        )
        if in_window != expected:
            raise PostgresWriteError(
                f"{expected - in_window} of {expected} rows written to {target.qualified_name} fall outside "
                f"the partition {target.window.describe()} by {target.partition_expr!r}; the write was "
                "rolled back. A partition's output must hold only that partition's rows."
            )


_SPOOL_BLOCK_BYTES = 8 << 20


class PartitionWriter:
    """Replaces one partition's rows with frames added one at a time, in memory bounded by a frame.

    `add(frame)` checks, converts and encodes a frame (COPY binary, or CSV where a column needs it)
    and appends the bytes to a temporary spool file; `commit()` then replaces the partition in ONE
    transaction exactly as `handle_output` does (advisory lock, TRUNCATE of the month's table
    partition or DELETE of the window, COPY), streaming the spool into COPY. The month's rows are
    therefore locked only while the spool is copied, not while the frames are being computed, and a
    failure before or during `commit()` leaves the previous rows. Use it as a context manager: leaving
    the block without `commit()` discards the spool and writes nothing.
    """

    def __init__(
        self, manager: PostgresPandasIOManager, target: TableSlice, spool_dir: str | Path | None = None
    ) -> None:
        import tempfile

        self._manager = manager
        self._target = target
        self._connection_context = manager.postgres.connect(autocommit=True)
        self._connection = self._connection_context.__enter__()
        try:
            prepare_session(self._connection)
            self._info = manager._table_info(self._connection, target)
        except BaseException:
            self.close()
            raise
        self._spool = tempfile.TemporaryFile(dir=spool_dir)
        self._segments: list[list[Any]] = []  # [is_binary, bytes]
        self._columns: list[str] | None = None
        self._months: set[dt.date] = set()
        self.rows = 0
        self._closed = False

    def __enter__(self) -> PartitionWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def add(self, frame: pd.DataFrame) -> None:
        """Check, convert and spool the rows of `frame` (its columns must match the first frame's)."""
        if self._closed:
            raise RuntimeError("this PartitionWriter was committed or closed; open a new one")
        target, info = self._target, self._info
        columns = check_columns(frame, target, info)
        if self._columns is None:
            self._columns = columns
        elif set(columns) != set(self._columns):
            raise PostgresWriteError(
                f"A frame for {target.qualified_name} has columns {columns}; the first frame had "
                f"{self._columns}. Every frame of one write must have the same columns."
            )
        frame = frame[self._columns]
        self._manager._check_window(frame, target, info)
        partitioned_on_expr = self._manager._partitioned_on_expr(target, info)
        self._months.update(self._manager._months_to_partition(target, info, frame, partitioned_on_expr))
        prepared = prepare_frame(frame, self._columns, info)
        encoders = binary_copy_encoders(prepared, info)
        if encoders is not None:
            chunks: Iterator[bytes] = binary_row_chunks(encoders, len(frame))
        else:
            chunks = (text.encode("utf-8") for text in copy_text_chunks(prepared, info))
        written = sum(self._spool.write(chunk) for chunk in chunks)
        if self._segments and self._segments[-1][0] == (encoders is not None):
            self._segments[-1][1] += written
        else:
            self._segments.append([encoders is not None, written])
        self.rows += len(frame)

    def commit(self) -> dict[str, Any]:
        """Replace the partition with every row added; returns the write's metadata (as handle_output)."""
        if self._closed:
            raise RuntimeError("this PartitionWriter was committed or closed; open a new one")
        target, info = self._target, self._info
        columns = self._columns or []  # no frame at all: nothing to COPY, the partition is emptied

        def send(cursor: psycopg.Cursor, relation: sql.Composable) -> None:
            self._spool.seek(0)
            for is_binary, size in self._segments:
                copy_into(cursor, target, columns, self._spooled(is_binary, size), relation=relation, binary=is_binary)

        try:
            rows_replaced = self._manager._replace_with(
                self._connection, target, info, sorted(self._months), send, self.rows
            )
            query = select_statement(target).as_string(self._connection)
        finally:
            self.close()
        return {
            "dagster/row_count": self.rows,
            "dagster/table_name": target.qualified_name,
            "table": target.qualified_name,
            "partition": target.window.describe() if target.window else "whole table",
            "rows_replaced": rows_replaced,
            "query": query,
        }

    def close(self) -> None:
        """Discard the spool and the connection (nothing is written unless `commit()` ran)."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        spool = getattr(self, "_spool", None)
        if spool is not None:
            spool.close()
        self._connection_context.__exit__(None, None, None)

    def _spooled(self, is_binary: bool, size: int) -> Iterator[bytes]:
        if is_binary:
            yield _BINARY_SIGNATURE
        remaining = size
        while remaining:
            block = self._spool.read(min(_SPOOL_BLOCK_BYTES, remaining))
            if not block:
                raise PostgresWriteError("the spool file ended early; nothing was written")
            remaining -= len(block)
            yield block
        if is_binary:
            yield _BINARY_TRAILER
