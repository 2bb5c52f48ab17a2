"""The month table partitions of a table declaratively partitioned by month."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import psycopg
from psycopg import sql

from credit_assets.resources.postgres_io.tables import (
    ColumnKind,
    PostgresWriteError,
    TableInfo,
    TableSlice,
    lock_partitions,
    next_month,
    validate_identifier,
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
