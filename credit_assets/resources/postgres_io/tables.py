"""What the IO manager writes or reads, what a table looks like, and the SQL it runs."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import psycopg
from dagster import Failure
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

DDL_DIR = Path(__file__).resolve().parents[3] / "sql"
"""`sql/` of the project: DDL files applied in file-name order inside the configured schema."""

DDL_LEDGER_TABLE = "applied_sql_files"
"""Per schema: which version (sha256) of each DDL file was applied, so later processes skip it."""

IDENTIFIER_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

_PARTITION_COLUMN_PATTERN = re.compile(
    r'^\s*(?:"(?P<quoted>[A-Za-z_][A-Za-z0-9_]*)"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))\s*'
    r"(?:::\s*(?P<cast>date|timestamptz|timestamp(?:\s+with(?:out)?\s+time\s+zone)?))?\s*$",
    re.IGNORECASE,
)


CAST_TYPES = {
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
        raise FileNotFoundError(f"No DDL files (*.sql) in {ddl_dir}: the IO manager cannot create its tables.")
    ran: list[str] = []
    with connection.transaction(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"credit_assets:ddl:{schema}"])
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
    return TableInfo(oid=oid, columns=columns, range_partition_column=range_column, is_partitioned=relkind == "p")


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


def count_rows(cursor: psycopg.Cursor, relation: sql.Composable, condition: sql.Composable | None = None) -> int:
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
    cursor.execute(sql.SQL("DELETE FROM {} WHERE {}").format(target.identifier, condition), target.window.bounds())
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
        sql.SQL(", ").join(sql.Identifier(column) for column in target.columns) if target.columns else sql.SQL("*")
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
