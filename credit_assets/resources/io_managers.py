"""PostgreSQL IO manager for pandas DataFrames, in the shape of dagster-duckdb's.

A materialization replaces exactly the rows of its partition (a time window) in ONE transaction:

1. the DDL in `sql/` is applied once per process (idempotent; see `ensure_ddl_applied`);
2. the frame is checked and converted before anything is written: its columns must be columns of the
   table, every row's partition value must lie inside the window, values must convert;
3. for a table declaratively partitioned by month on the partition column, each month's table
   partition is created if missing (empty, then ATTACHed: that takes only a SHARE UPDATE EXCLUSIVE
   lock on the parent, so writers of other months are not blocked); then, in one transaction:
   `pg_advisory_xact_lock` per (table, month) so writers of the same month serialise, and the month's
   rows are replaced: a one-month window by loading a new leaf table with COPY, indexing it and
   swapping it in for the month's old leaf (`postgres_io.month_partitions`), a wider window by
   TRUNCATE of its month partitions + COPY, a plain table by DELETE `partition_expr >= start AND
   partition_expr < end` + COPY (COPY binary where every column allows it, else CSV); commit.
   Any failure rolls the whole transaction back: the previous rows stay.

Layout (as in dagster-duckdb): `PostgresPandasIOManager` and `PartitionWriter` here wire Dagster
contexts to the parts in `credit_assets.resources.postgres_io`: `tables` says what is written
(`TableSlice`) and owns the SQL (identifiers always quoted with `psycopg.sql.Identifier`, values bound),
`month_partitions` the month table partitions, `copy_text` and `copy_binary` the conversion of pandas
values into COPY data and back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
from dagster import ConfigurableIOManager, InputContext, MetadataValue, OutputContext
from psycopg import sql
from pydantic import Field, field_validator

from credit_assets.resources.postgres import PostgresResource
from credit_assets.resources.postgres_io.copy_binary import (
    BINARY_SIGNATURE,
    BINARY_TRAILER,
    binary_copy_encoders,
    binary_row_chunks,
    copy_binary_chunks,
)
from credit_assets.resources.postgres_io.copy_text import (
    check_columns,
    check_rows_in_window,
    copy_text_chunks,
    frame_from_rows,
    prepare_frame,
    to_timestamps,
)
from credit_assets.resources.postgres_io.month_partitions import (
    ensure_month_partitions,
    replace_month_rows,
    swappable_month,
)
from credit_assets.resources.postgres_io.tables import (
    CAST_TYPES,
    DDL_DIR,
    PartitionWindow,
    PostgresWriteError,
    TableInfo,
    TableSlice,
    copy_into,
    count_rows,
    delete_window,
    describe_table,
    ensure_ddl_applied,
    load_statement,
    lock_partitions,
    parse_partition_column,
    prepare_session,
    select_statement,
    truncate_partitions,
    truncate_table,
    validate_identifier,
    window_condition,
)

LOAD_CHUNK_ROWS = 100_000
"""Rows `load_input` fetches at a time before turning them into a frame."""

# --------------------------------------------------------------------------------------------------
# The IO manager
# --------------------------------------------------------------------------------------------------


class PostgresPandasIOManager(ConfigurableIOManager):
    """Stores pandas DataFrames in PostgreSQL tables, one Dagster partition's rows at a time.

    The table is the last component of the asset key, in `schema_name`. For a time-partitioned asset,
    set the definition metadata `partition_expr` to the column (or SQL expression) that places a row
    in its partition, e.g. `@asset(metadata={"partition_expr": "snapshot_date"})`. Materializing a
    partition replaces exactly that partition's rows in one transaction (for a table partitioned by
    month, a new leaf table loaded by COPY, indexed and swapped in for the month's old one; for a plain
    table, DELETE of the window then COPY); a failed write leaves the previous rows, which stay readable
    while the new ones load. An unpartitioned asset replaces the whole table. Each write
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
            raise TypeError(f"{type(self).__name__} stores pandas DataFrames; the output is a {type(obj).__name__}.")
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
            target = TableSlice(target.schema, target.table, target.partition_expr, target.window, list(columns))
        with self.postgres.connect(autocommit=True) as connection:
            prepare_session(connection)
            info = describe_table(connection, target.schema, target.table)
            if info is None:
                raise PostgresWriteError(f"Table {target.qualified_name} does not exist: materialize its asset first.")
            # A server-side cursor read LOAD_CHUNK_ROWS rows at a time: the rows as Python tuples (about ten
            # times the size of the frame) exist for one chunk only, not for the whole month.
            with connection.transaction(), connection.cursor(name="credit_assets_load", binary=True) as cursor:
                cursor.itersize = LOAD_CHUNK_ROWS
                cursor.execute(load_statement(target, info), target.window.bounds() if target.window else None)
                names = [column.name for column in cursor.description or []]
                chunks = [
                    frame_from_rows(rows, names, info)
                    for rows in iter(lambda: cursor.fetchmany(LOAD_CHUNK_ROWS), [])
                ]
        if not chunks:
            return frame_from_rows([], names, info)
        return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]

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
                    window_months = target.window.months()
                    names = [partitions[month] for month in window_months]
                    if len(names) == 1:
                        leaf = swappable_month(cursor, target.schema, names[0], window_months[0], info)
                        if leaf is not None:  # load a new leaf table and swap it in (month_partitions.py)
                            return replace_month_rows(cursor, target, info, window_months[0], leaf, send)
                        relation = sql.Identifier(target.schema, names[0])  # no routing through the parent
                    rows_replaced = truncate_partitions(cursor, target.schema, names)
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
            and (partition_column.cast is None or CAST_TYPES[partition_column.cast] == info.columns[key].data_type)
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
        stamps = to_timestamps(frame[key]).dropna()
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
    transaction exactly as `handle_output` does (advisory lock, then the month's new leaf table loaded
    and swapped in, or DELETE of the window + COPY), streaming the spool into COPY. Other writers of the
    month therefore wait only while the spool is copied, not while the frames are being computed, and a
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
            yield BINARY_SIGNATURE
        remaining = size
        while remaining:
            block = self._spool.read(min(_SPOOL_BLOCK_BYTES, remaining))
            if not block:
                raise PostgresWriteError("the spool file ended early; nothing was written")
            remaining -= len(block)
            yield block
        if is_binary:
            yield BINARY_TRAILER
