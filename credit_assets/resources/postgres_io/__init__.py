"""The parts of the PostgreSQL IO manager (`credit_assets.resources.io_managers`), by concern.

- `tables`: what is written (`TableSlice`, `PartitionWindow`), what a table looks like (`TableInfo`),
  and the SQL: DDL, advisory locks, TRUNCATE/DELETE, COPY, SELECT. Identifiers are always quoted with
  `psycopg.sql.Identifier`; values are bound.
- `month_partitions`: the month table partitions of a table partitioned by month.
- `copy_text`: pandas values to COPY CSV text and back (checks and conversions before any write).
- `copy_binary`: pandas values to COPY binary, built with numpy a chunk at a time.
"""
