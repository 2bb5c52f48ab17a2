"""PostgresPandasIOManager against a real PostgreSQL server (no mocks, no SQLite)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from dagster import (
    AssetIn,
    MonthlyPartitionsDefinition,
    OutputContext,
    PartitionKeyRange,
    asset,
    build_input_context,
    build_output_context,
    materialize,
)
from pydantic import ValidationError

from credit_assets.resources import io_managers
from credit_assets.resources.io_managers import PostgresPandasIOManager, PostgresWriteError
from credit_assets.resources.postgres import PostgresResource
from credit_assets.resources.postgres_io.tables import DDL_DIR, apply_ddl, partition_lock_key, validate_identifier

MONTHLY = MonthlyPartitionsDefinition(start_date="2024-01-01")
INFERENCE_METADATA = {"partition_expr": "snapshot_date"}
METRICS_METADATA = {"partition_expr": "month_date::date"}
GRADES = ("Bad", "Good", "Standard")

MODEL_INFERENCE_COLUMNS = [
    ("id", "integer"),
    ("customer_id", "character varying(50)"),
    ("snapshot_date", "date"),
    ("predicted_grade", "character varying(10)"),
    ("prediction_probability", "numeric(5,4)"),
    ("model_name", "character varying(100)"),
    ("inference_date", "timestamp without time zone"),
    ("month_partition", "character varying(10)"),
    ("model_version", "integer"),
    ("model_family", "character varying(20)"),
    ("mlflow_run_id", "character varying(50)"),
    ("dagster_run_id", "character varying(64)"),
    ("prob_bad", "double precision"),
    ("prob_good", "double precision"),
    ("prob_standard", "double precision"),
]
MODEL_METRICS_COLUMNS = [
    ("id", "integer"),
    ("evaluation_date", "timestamp without time zone"),
    ("month_date", "character varying(10)"),
    ("mlflow_run_id", "character varying(50)"),
    ("model_name", "character varying(100)"),
    ("accuracy", "numeric(5,4)"),
    ("precision", "numeric(5,4)"),
    ("recall", "numeric(5,4)"),
    ("auc", "numeric(5,4)"),
    ("macro_f1", "numeric(5,4)"),
    ("weighted_f1", "numeric(5,4)"),
    ("total_samples", "integer"),
    ("f1_by_grade", "jsonb"),
    ("predictions_distribution", "jsonb"),
    ("created_at", "timestamp without time zone"),
    ("evaluation_kind", "character varying(20)"),
    ("model_version", "integer"),
    ("model_family", "character varying(20)"),
    ("model_role", "character varying(20)"),
    ("evaluated_month", "date"),
    ("dagster_run_id", "character varying(64)"),
    ("prediction_psi", "double precision"),
    ("feature_psi", "jsonb"),
]

# The original system's example queries: they must run unchanged.
SEED_QUERIES = [
    "SELECT * FROM model_metrics WHERE model_name = 'credit_scoring_model'"
    " ORDER BY evaluation_date DESC LIMIT 1;",
    "SELECT month_date, accuracy, precision, recall, auc, macro_f1 FROM model_metrics"
    " WHERE model_name = 'credit_scoring_model' ORDER BY month_date;",
    "SELECT * FROM model_inference WHERE customer_id = 'CUS_123' ORDER BY snapshot_date DESC;",
    "SELECT * FROM model_inference WHERE month_partition = '2024_01_01'"
    " AND model_name = 'credit_scoring_model';",
]


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def io_manager(postgres_resource: PostgresResource) -> PostgresPandasIOManager:
    return PostgresPandasIOManager(postgres=postgres_resource)


def inference_frame(
    month: str, n_rows: int, model_name: str = "credit_lightgbm", first_id: int = 0
) -> pd.DataFrame:
    """A scoring output for `month`: one row per customer, with all three grade probabilities."""
    rng = np.random.default_rng(first_id + n_rows)
    probabilities = rng.dirichlet([1.0, 1.0, 1.0], n_rows)
    return pd.DataFrame(
        {
            "customer_id": [f"CUS_{first_id + i:05d}" for i in range(n_rows)],
            "snapshot_date": pd.Timestamp(month),
            "predicted_grade": np.array(GRADES)[probabilities.argmax(axis=1)],
            "prediction_probability": probabilities.max(axis=1),
            "model_name": model_name,
            "month_partition": month.replace("-", "_"),
            "model_version": 1,
            "model_family": "lightgbm",
            "prob_bad": probabilities[:, 0],
            "prob_good": probabilities[:, 1],
            "prob_standard": probabilities[:, 2],
        }
    )


def metrics_frame(
    month: str, model_names: tuple[str, ...] = ("credit_lightgbm",), accuracy: float = 0.8
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "month_date": month,
            "model_name": list(model_names),
            "model_version": 1,
            "evaluation_kind": "monitoring",
            "accuracy": accuracy,
            "auc": 0.9,
            "total_samples": 100,
            "f1_by_grade": [{grade: 0.5 for grade in GRADES} for _ in model_names],
            "predictions_distribution": [{grade: 10 for grade in GRADES} for _ in model_names],
            "evaluated_month": pd.Timestamp(month),
        }
    )


@contextmanager
def output_context(
    table: str,
    metadata: Mapping[str, Any] | None,
    partition_key: str | None = None,
    key_range: PartitionKeyRange | None = None,
) -> Iterator[OutputContext]:
    partitioned = partition_key is not None or key_range is not None
    with build_output_context(
        asset_key=[table],
        definition_metadata=dict(metadata or {}),
        partition_key=partition_key,
        asset_partition_key_range=key_range,
        asset_partitions_def=MONTHLY if partitioned else None,
    ) as context:
        yield context


def write(
    io_manager: PostgresPandasIOManager,
    table: str,
    frame: pd.DataFrame,
    partition_key: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    key_range: PartitionKeyRange | None = None,
) -> dict[str, Any]:
    """handle_output for one partition (or range, or the whole table); returns its output metadata."""
    if metadata is None:
        metadata = INFERENCE_METADATA if table == "model_inference" else METRICS_METADATA
    with output_context(table, metadata, partition_key, key_range) as context:
        io_manager.handle_output(context, frame)
        return {key: value.value for key, value in context.get_logged_metadata().items()}


def read(io_manager: PostgresPandasIOManager, table: str, partition_key: str | None = None) -> pd.DataFrame:
    metadata = INFERENCE_METADATA if table == "model_inference" else METRICS_METADATA
    upstream = build_output_context(asset_key=[table], definition_metadata=metadata)
    with build_input_context(
        asset_key=[table],
        upstream_output=upstream,
        partition_key=partition_key,
        asset_partitions_def=MONTHLY if partition_key else None,
    ) as context:
        return io_manager.load_input(context)


def query(url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as connection:
        return connection.execute(statement, params).fetchall()


def rows_by_month(url: str, table: str = "model_inference", column: str = "snapshot_date") -> dict[str, int]:
    return {
        str(month): count
        for month, count in query(url, f"SELECT {column}, count(*) FROM {table} GROUP BY 1 ORDER BY 1")
    }


def inference_rows(url: str, month: str) -> list[tuple[Any, ...]]:
    return query(
        url,
        "SELECT id, customer_id, model_name, prediction_probability FROM model_inference"
        " WHERE snapshot_date = %s ORDER BY id",
        [month],
    )


# -- the tables ------------------------------------------------------------------------------------


def test_ddl_creates_every_seed_column_with_its_type_and_is_idempotent(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        every_file = sorted(path.name for path in DDL_DIR.glob("*.sql"))
        assert every_file[:2] == ["001_model_inference.sql", "002_model_metrics.sql"]
        assert apply_ddl(connection, "public") == every_file
        assert apply_ddl(connection, "public") == []  # unchanged files are skipped
        assert apply_ddl(connection, "public", force=True) == every_file

    def columns(table: str) -> list[tuple[str, str]]:
        return query(
            postgres_url,
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            [table],
        )

    assert columns("model_inference") == MODEL_INFERENCE_COLUMNS
    assert columns("model_metrics") == MODEL_METRICS_COLUMNS
    partitioning = query(postgres_url, "SELECT pg_get_partkeydef('model_inference'::regclass)")
    assert partitioning == [("RANGE (snapshot_date)",)]
    primary_key = query(
        postgres_url,
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'model_inference'::regclass"
        " AND contype = 'p'",
    )
    assert primary_key == [("PRIMARY KEY (id, snapshot_date)",)]
    indexes = {name for (name,) in query(postgres_url, "SELECT indexname FROM pg_indexes")}
    assert {"idx_model_inference_customer_date", "uq_model_metrics_month_model_version_kind"} <= indexes
    for statement in SEED_QUERIES:
        query(postgres_url, statement)  # raises if a seed column or type changed


def test_defaults_fill_id_and_timestamps(io_manager: PostgresPandasIOManager, postgres_url: str) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 3), "2024-01-01")
    ids, stamps = zip(
        *query(postgres_url, "SELECT id, inference_date FROM model_inference ORDER BY id"), strict=True
    )
    assert list(ids) == [1, 2, 3]
    assert all(isinstance(stamp, dt.datetime) for stamp in stamps)


# -- replacing partitions ------------------------------------------------------------------------


def test_rewriting_a_month_replaces_its_rows_instead_of_doubling_them(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    first = write(io_manager, "model_inference", inference_frame("2024-01-01", 5, "old_model"), "2024-01-01")
    second = write(io_manager, "model_inference", inference_frame("2024-01-01", 3, "new_model"), "2024-01-01")

    assert rows_by_month(postgres_url) == {"2024-01-01": 3}
    assert {row[2] for row in inference_rows(postgres_url, "2024-01-01")} == {"new_model"}
    assert (first["rows_replaced"], first["dagster/row_count"]) == (0, 5)
    assert (second["rows_replaced"], second["dagster/row_count"]) == (5, 3)


def test_rewriting_a_month_leaves_other_months_untouched(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4), "2024-01-01")
    write(io_manager, "model_inference", inference_frame("2024-02-01", 6), "2024-02-01")
    february = inference_rows(postgres_url, "2024-02-01")

    write(io_manager, "model_inference", inference_frame("2024-01-01", 2, "retrained"), "2024-01-01")

    assert inference_rows(postgres_url, "2024-02-01") == february
    assert rows_by_month(postgres_url) == {"2024-01-01": 2, "2024-02-01": 6}


def test_each_month_is_its_own_table_partition(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4), "2024-01-01")
    write(io_manager, "model_inference", inference_frame("2024-03-01", 2), "2024-03-01")

    partitions = query(
        postgres_url,
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'model_inference'::regclass ORDER BY 1",
    )
    assert partitions == [
        ("model_inference_y2024m01", "FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')"),
        ("model_inference_y2024m03", "FOR VALUES FROM ('2024-03-01') TO ('2024-04-01')"),
    ]
    # Each month's rows are in the one leaf table of its partition (see test_month_partitions.py).
    assert query(postgres_url, "SELECT count(*) FROM ONLY model_inference_y2024m01_rows") == [(4,)]
    # The leaves carry the parent's indexes.
    indexes = query(
        postgres_url, "SELECT indexdef FROM pg_indexes WHERE tablename = 'model_inference_y2024m03_rows'"
    )
    assert any("(customer_id, snapshot_date)" in definition for (definition,) in indexes)
    assert any("UNIQUE" in definition and "(id, snapshot_date)" in definition for (definition,) in indexes)


def test_plain_table_month_is_replaced_by_delete(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_metrics", metrics_frame("2024-01-01", ("a", "b")), "2024-01-01")
    write(io_manager, "model_metrics", metrics_frame("2024-02-01", ("a",)), "2024-02-01")
    metadata = write(
        io_manager, "model_metrics", metrics_frame("2024-01-01", ("c",), accuracy=0.5), "2024-01-01"
    )

    assert query(
        postgres_url, "SELECT month_date, model_name, accuracy::float FROM model_metrics ORDER BY 1, 2"
    ) == [
        ("2024-01-01", "c", 0.5),
        ("2024-02-01", "a", 0.8),
    ]
    assert metadata["rows_replaced"] == 2


def test_month_date_partition_expr_is_served_by_the_unique_index(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    metadata = {"partition_expr": "month_date"}  # text 'YYYY-MM-DD' ranges: index-friendly
    write(io_manager, "model_metrics", metrics_frame("2024-01-01", ("a",)), "2024-01-01", metadata)
    write(io_manager, "model_metrics", metrics_frame("2024-01-01", ("b",)), "2024-01-01", metadata)
    assert query(postgres_url, "SELECT model_name FROM model_metrics") == [("b",)]

    with psycopg.connect(postgres_url) as connection:
        connection.execute("SET enable_seqscan = off")
        plan = connection.execute(
            "EXPLAIN DELETE FROM model_metrics WHERE month_date >= %s AND month_date < %s",
            ["2024-01-01", "2024-02-01"],
        ).fetchall()
    assert "uq_model_metrics_month_model_version_kind" in "\n".join(line for (line,) in plan)


def test_multi_month_window_replaces_every_month_in_it(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    for month in ("2024-01-01", "2024-02-01", "2024-03-01"):
        write(io_manager, "model_inference", inference_frame(month, 3), month)
    march = inference_rows(postgres_url, "2024-03-01")
    backfill = pd.concat(
        [inference_frame("2024-01-01", 2, "backfill"), inference_frame("2024-02-01", 1, "backfill")]
    )

    metadata = write(
        io_manager, "model_inference", backfill, key_range=PartitionKeyRange("2024-01-01", "2024-02-01")
    )

    assert rows_by_month(postgres_url) == {"2024-01-01": 2, "2024-02-01": 1, "2024-03-01": 3}
    assert {
        row[2] for month in ("2024-01-01", "2024-02-01") for row in inference_rows(postgres_url, month)
    } == {"backfill"}
    assert inference_rows(postgres_url, "2024-03-01") == march
    assert metadata["rows_replaced"] == 6
    assert metadata["partition"] == "[2024-01-01, 2024-03-01)"


def test_unpartitioned_asset_replaces_the_whole_table(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_metrics", metrics_frame("2024-01-01", ("a", "b")))
    metadata = write(io_manager, "model_metrics", metrics_frame("2024-05-01", ("c",)))

    assert query(postgres_url, "SELECT month_date, model_name FROM model_metrics") == [("2024-05-01", "c")]
    assert (metadata["rows_replaced"], metadata["partition"]) == (2, "whole table")


def test_an_empty_frame_empties_the_month(io_manager: PostgresPandasIOManager, postgres_url: str) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4), "2024-01-01")
    metadata = write(io_manager, "model_inference", inference_frame("2024-01-01", 0), "2024-01-01")
    assert rows_by_month(postgres_url) == {}
    assert (metadata["rows_replaced"], metadata["dagster/row_count"]) == (4, 0)


def test_unpartitioned_output_into_the_partitioned_table_creates_the_months_it_holds(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 2), "2024-01-01")
    everything = pd.concat([inference_frame("2024-02-01", 3), inference_frame("2024-04-01", 1)])

    metadata = write(io_manager, "model_inference", everything, metadata={})

    assert rows_by_month(postgres_url) == {"2024-02-01": 3, "2024-04-01": 1}
    assert metadata["rows_replaced"] == 2
    assert query(postgres_url, "SELECT to_regclass('model_inference_y2024m04') IS NOT NULL") == [(True,)]


# -- failures leave the previous rows --------------------------------------------------------------


def test_a_constraint_violation_in_the_last_row_keeps_the_previous_rows(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4, "kept"), "2024-01-01")
    before = inference_rows(postgres_url, "2024-01-01")
    broken = inference_frame("2024-01-01", 250_000, "lost")
    broken.loc[broken.index[-1], "prediction_probability"] = 12.5  # overflows DECIMAL(5,4)

    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        write(io_manager, "model_inference", broken, "2024-01-01")

    assert inference_rows(postgres_url, "2024-01-01") == before


def test_a_not_null_violation_in_a_plain_table_keeps_the_previous_rows(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_metrics", metrics_frame("2024-01-01", ("kept",)), "2024-01-01")
    broken = metrics_frame("2024-01-01", ("x", "y", "z"))
    broken.loc[2, "evaluation_kind"] = None

    with pytest.raises(psycopg.errors.NotNullViolation):
        write(io_manager, "model_metrics", broken, "2024-01-01")

    assert query(postgres_url, "SELECT model_name FROM model_metrics") == [("kept",)]


def test_an_exception_inside_the_copy_stream_keeps_the_previous_rows(
    io_manager: PostgresPandasIOManager, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4, "kept"), "2024-01-01")
    before = inference_rows(postgres_url, "2024-01-01")
    # Whichever COPY format the write uses (binary here, CSV for other tables), its stream breaks.
    for generator in ("copy_text_chunks", "copy_binary_chunks"):
        real_chunks = getattr(io_managers, generator)

        def chunks_then_failure(*args: Any, _real: Any = real_chunks, **kwargs: Any) -> Iterator[Any]:
            chunks = _real(*args, **kwargs)
            yield next(chunks)  # some data reaches the server ...
            yield next(chunks)
            raise ConnectionResetError("stream broken")  # ... then the stream breaks

        monkeypatch.setattr(io_managers, generator, chunks_then_failure)
    with pytest.raises(ConnectionResetError, match="stream broken"):
        write(io_manager, "model_inference", inference_frame("2024-01-01", 10, "lost"), "2024-01-01")

    assert inference_rows(postgres_url, "2024-01-01") == before


def test_a_value_that_cannot_be_converted_fails_before_writing(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4, "kept"), "2024-01-01")
    broken = inference_frame("2024-01-01", 3).astype({"prediction_probability": object})
    broken.loc[2, "prediction_probability"] = "not a number"

    with pytest.raises(PostgresWriteError, match="prediction_probability.*not a number"):
        write(io_manager, "model_inference", broken, "2024-01-01")
    fractional = inference_frame("2024-01-01", 3).assign(model_version=[1.0, 2.5, None])
    with pytest.raises(PostgresWriteError, match="model_version.*2.5"):
        write(io_manager, "model_inference", fractional, "2024-01-01")

    assert {row[2] for row in inference_rows(postgres_url, "2024-01-01")} == {"kept"}


def test_a_row_outside_the_partition_is_rejected_and_nothing_changes(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4, "kept"), "2024-01-01")
    before = inference_rows(postgres_url, "2024-01-01")
    stray = pd.concat([inference_frame("2024-01-01", 3), inference_frame("2024-02-01", 1)], ignore_index=True)

    with pytest.raises(
        PostgresWriteError, match=r"1 of 4 rows .* snapshot_date outside .*2024-01-01, 2024-02-01"
    ):
        write(io_manager, "model_inference", stray, "2024-01-01")

    assert inference_rows(postgres_url, "2024-01-01") == before
    assert rows_by_month(postgres_url) == {"2024-01-01": 4}
    # The February partition was not even created.
    assert query(postgres_url, "SELECT to_regclass('model_inference_y2024m02')") == [(None,)]


def test_a_row_outside_the_partition_is_rejected_for_a_cast_partition_expr(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_metrics", metrics_frame("2024-01-01", ("kept",)), "2024-01-01")
    stray = pd.concat(
        [metrics_frame("2024-01-01", ("a",)), metrics_frame("2023-12-01", ("b",))], ignore_index=True
    )

    with pytest.raises(PostgresWriteError, match="month_date outside"):
        write(io_manager, "model_metrics", stray, "2024-01-01")

    assert query(postgres_url, "SELECT model_name FROM model_metrics") == [("kept",)]


def test_a_general_partition_expr_is_checked_inside_the_transaction(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    metadata = {"partition_expr": "to_date(month_date, 'YYYY-MM-DD')"}
    write(io_manager, "model_metrics", metrics_frame("2024-01-01", ("kept",)), "2024-01-01", metadata)
    stray = pd.concat(
        [metrics_frame("2024-01-01", ("a",)), metrics_frame("2024-03-01", ("b",))], ignore_index=True
    )

    with pytest.raises(PostgresWriteError, match="1 of 2 rows .* outside"):
        write(io_manager, "model_metrics", stray, "2024-01-01", metadata)

    assert query(postgres_url, "SELECT model_name FROM model_metrics") == [("kept",)]


def test_unknown_columns_are_named_in_the_error(io_manager: PostgresPandasIOManager) -> None:
    frame = inference_frame("2024-01-01", 2).assign(grade_score=1.0, Customer_ID="x")
    with pytest.raises(PostgresWriteError, match=r"\['grade_score', 'Customer_ID'\]"):
        write(io_manager, "model_inference", frame, "2024-01-01")


def test_partitioned_asset_without_partition_expr_is_an_error(io_manager: PostgresPandasIOManager) -> None:
    with pytest.raises(PostgresWriteError, match="partition_expr"):
        write(io_manager, "model_inference", inference_frame("2024-01-01", 1), "2024-01-01", metadata={})


# -- concurrency --------------------------------------------------------------------------------


def _run_in_threads(*writers: Any) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(writers))

    def run(writer: Any) -> None:
        try:
            barrier.wait()
            writer()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(writer,)) for writer in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.parametrize("table", ["model_inference", "model_metrics"])
def test_concurrent_writers_of_one_month_leave_exactly_one_complete_set(
    io_manager: PostgresPandasIOManager, postgres_url: str, table: str
) -> None:
    if table == "model_inference":
        frames = {f"writer_{i}": inference_frame("2024-01-01", 20_000 + i, f"writer_{i}") for i in range(4)}
    else:
        frames = {
            f"writer_{i}": metrics_frame("2024-01-01", tuple(f"writer_{i}_{j}" for j in range(20_000 + i)))
            for i in range(4)
        }
        for name, frame in frames.items():
            frame["model_family"] = name
    column = "model_name" if table == "model_inference" else "model_family"

    errors = _run_in_threads(
        *(lambda f=frame: write(io_manager, table, f, "2024-01-01") for frame in frames.values())
    )

    assert errors == []
    counts = dict(query(postgres_url, f"SELECT {column}, count(*) FROM {table} GROUP BY 1"))
    assert len(counts) == 1, f"rows of several writers survived: {counts}"
    ((winner, count),) = counts.items()
    assert count == len(frames[winner])


@pytest.mark.parametrize("table", ["model_inference", "model_metrics"])
def test_a_writer_waits_for_the_advisory_lock_of_its_month(
    io_manager: PostgresPandasIOManager, postgres_url: str, table: str
) -> None:
    def frame(name: str) -> pd.DataFrame:
        if table == "model_inference":
            return inference_frame("2024-01-01", 3, name)
        return metrics_frame("2024-01-01", (name,))

    def model_names() -> set[str]:
        return {name for (name,) in query(postgres_url, f"SELECT model_name FROM {table}")}

    write(io_manager, table, frame("old"), "2024-01-01")
    lock_key = partition_lock_key("public", table, dt.date(2024, 1, 1))
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [lock_key])
        writer = threading.Thread(target=write, args=(io_manager, table, frame("new"), "2024-01-01"))
        writer.start()
        time.sleep(1.0)
        assert writer.is_alive(), "the writer did not wait for the month's lock"
        assert model_names() == {"old"}
        holder.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [lock_key])
        writer.join(timeout=30)
    assert not writer.is_alive()
    assert model_names() == {"new"}


def test_a_new_month_is_written_while_another_month_is_being_written(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    """February's partition is created while a write into January is open (ATTACH, not PARTITION OF)."""
    write(io_manager, "model_inference", inference_frame("2024-01-01", 3), "2024-01-01")
    with psycopg.connect(postgres_url) as january_writer:  # an open transaction holding write locks
        january_writer.execute("TRUNCATE model_inference_y2024m01")
        january_writer.execute(
            "INSERT INTO model_inference (customer_id, snapshot_date) VALUES ('CUS_1', '2024-01-01')"
        )
        february = threading.Thread(
            target=write, args=(io_manager, "model_inference", inference_frame("2024-02-01", 4), "2024-02-01")
        )
        february.start()
        february.join(timeout=20)
        finished_while_january_was_open = not february.is_alive()
        january_writer.rollback()
    february.join(timeout=30)
    assert finished_while_january_was_open
    assert rows_by_month(postgres_url) == {"2024-01-01": 3, "2024-02-01": 4}


# -- values ------------------------------------------------------------------------------------


def test_text_round_trips_exactly(io_manager: PostgresPandasIOManager, postgres_url: str) -> None:
    awkward = [
        'CUS_"x\\y,z',
        "line\nbreak",
        "tab\there",
        "carriage\r\nreturn",
        "",
        "\\N",
        "NULL",
        "  spaced  ",
        "naïve ünïcode ✓",
        "'single' \"double\"",
        None,
    ]
    frame = inference_frame("2024-01-01", len(awkward)).assign(customer_id=awkward)

    write(io_manager, "model_inference", frame, "2024-01-01")

    stored = [
        value for (value,) in query(postgres_url, "SELECT customer_id FROM model_inference ORDER BY id")
    ]
    assert stored == awkward
    loaded = read(io_manager, "model_inference", "2024-01-01").sort_values("id")
    assert loaded["customer_id"].tolist() == awkward


def test_nan_becomes_null_and_jsonb_holds_plain_numbers(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    frame = metrics_frame("2024-01-01", ("m",)).assign(
        accuracy=np.float64(0.123456),
        auc=np.nan,
        recall=None,
        total_samples=np.int64(42),
        f1_by_grade=[{"Bad": np.float64(0.25), "Good": np.float32(0.5), "Standard": 0.0}],
        predictions_distribution=[{"Bad": np.int64(3), "Good": 0, "Standard": np.int32(7)}],
    )

    write(io_manager, "model_metrics", frame, "2024-01-01")

    ((accuracy, auc, recall, total, f1_types, distribution),) = query(
        postgres_url,
        "SELECT accuracy, auc, recall, total_samples,"
        " (SELECT array_agg(DISTINCT jsonb_typeof(value)) FROM jsonb_each(f1_by_grade)),"
        " predictions_distribution FROM model_metrics",
    )
    assert str(accuracy) == "0.1235"
    assert auc is None and recall is None
    assert total == 42
    assert f1_types == ["number"]
    assert distribution == {"Bad": 3, "Good": 0, "Standard": 7}
    prob_nan = inference_frame("2024-01-01", 2).assign(prob_bad=[np.nan, 0.5], model_version=[np.nan, 3.0])
    write(io_manager, "model_inference", prob_nan, "2024-01-01")
    assert query(postgres_url, "SELECT prob_bad, model_version FROM model_inference ORDER BY id") == [
        (None, None),
        (0.5, 3),
    ]


def test_nan_inside_a_json_value_is_a_clear_error(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    frame = metrics_frame("2024-01-01", ("m",)).assign(f1_by_grade=[{"Bad": float("nan"), "Good": 0.5}])
    with pytest.raises(PostgresWriteError, match="f1_by_grade.*NaN"):
        write(io_manager, "model_metrics", frame, "2024-01-01")
    assert query(postgres_url, "SELECT count(*) FROM model_metrics") == [(0,)]


def test_dates_given_as_text_or_date_objects_are_accepted(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    as_text = inference_frame("2024-01-01", 2).assign(snapshot_date="2024-01-01")
    write(io_manager, "model_inference", as_text, "2024-01-01")
    as_dates = inference_frame("2024-02-01", 2).assign(snapshot_date=dt.date(2024, 2, 1))
    write(io_manager, "model_inference", as_dates, "2024-02-01")
    assert rows_by_month(postgres_url) == {"2024-01-01": 2, "2024-02-01": 2}


# -- metadata and reading ------------------------------------------------------------------------


def test_metadata_query_reads_exactly_the_partition(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4), "2024-01-01")
    write(io_manager, "model_inference", inference_frame("2024-03-01", 2), "2024-03-01")
    metadata = write(io_manager, "model_inference", inference_frame("2024-02-01", 3), "2024-02-01")

    assert metadata["table"] == "public.model_inference"
    assert metadata["partition"] == "[2024-02-01, 2024-03-01)"
    assert metadata["dagster/row_count"] == 3
    assert "'2024-02-01'" in metadata["query"] and "'2024-03-01'" in metadata["query"]
    rows = query(postgres_url, metadata["query"])
    assert len(rows) == 3
    assert {row[2] for row in rows} == {dt.date(2024, 2, 1)}


def test_schema_name_must_be_a_plain_identifier(
    postgres_resource: PostgresResource, postgres_url: str
) -> None:
    write(
        PostgresPandasIOManager(postgres=postgres_resource),
        "model_metrics",
        metrics_frame("2024-01-01"),
        "2024-01-01",
    )

    for hostile in ['x"; DROP TABLE model_metrics; --', "1starts_with_digit", "has space", "a" * 64, ""]:
        with pytest.raises(ValidationError, match="not a valid identifier"):
            PostgresPandasIOManager(postgres=postgres_resource, schema_name=hostile)
    with pytest.raises(ValueError, match="not a valid identifier"):
        validate_identifier("model_metrics; --", "table name")

    assert query(postgres_url, "SELECT count(*) FROM model_metrics") == [(1,)]


def test_a_configured_schema_is_created_and_used(
    postgres_resource: PostgresResource, postgres_url: str
) -> None:
    io_manager = PostgresPandasIOManager(postgres=postgres_resource, schema_name="Credit_Models")
    metadata = write(io_manager, "model_inference", inference_frame("2024-01-01", 2), "2024-01-01")

    assert metadata["table"] == "Credit_Models.model_inference"
    assert query(postgres_url, 'SELECT count(*) FROM "Credit_Models".model_inference') == [(2,)]
    assert query(postgres_url, "SELECT to_regclass('public.model_inference')") == [(None,)]
    assert len(query(postgres_url, metadata["query"])) == 2


def test_load_input_reads_the_partition_with_pandas_types(io_manager: PostgresPandasIOManager) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 3), "2024-01-01")
    written = inference_frame("2024-02-01", 4)
    write(io_manager, "model_inference", written, "2024-02-01")

    loaded = read(io_manager, "model_inference", "2024-02-01").sort_values("id").reset_index(drop=True)

    assert loaded["customer_id"].tolist() == written["customer_id"].tolist()
    assert loaded["snapshot_date"].dtype == "datetime64[ns]"
    assert (loaded["snapshot_date"] == pd.Timestamp("2024-02-01")).all()
    assert loaded["prediction_probability"].dtype == "float64"
    np.testing.assert_allclose(loaded["prediction_probability"], written["prediction_probability"].round(4))
    np.testing.assert_array_equal(loaded["prob_good"], written["prob_good"])  # DOUBLE PRECISION: exact
    assert len(read(io_manager, "model_inference")) == 7  # unpartitioned read: whole table


def test_load_input_reads_in_chunks_and_gives_the_frame_a_whole_read_gives(
    io_manager: PostgresPandasIOManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = inference_frame("2024-02-01", 2_500)
    written.loc[1_500:, "model_version"] = None  # NULLs in the last chunks only
    written.loc[:999, "predicted_grade"] = None  # and in the first chunk only
    write(io_manager, "model_inference", written, "2024-02-01")
    whole = read(io_manager, "model_inference", "2024-02-01")

    monkeypatch.setattr(io_managers, "LOAD_CHUNK_ROWS", 1_000)
    chunked = read(io_manager, "model_inference", "2024-02-01")

    assert len(chunked) == 2_500
    pd.testing.assert_frame_equal(
        chunked.sort_values("id", ignore_index=True), whole.sort_values("id", ignore_index=True)
    )
    assert chunked["model_version"].isna().sum() == 1_000 and chunked["predicted_grade"].isna().sum() == 1_000


def test_load_input_reads_json_and_only_the_requested_columns(io_manager: PostgresPandasIOManager) -> None:
    write(io_manager, "model_metrics", metrics_frame("2024-01-01", ("a", "b")), "2024-01-01")
    upstream = build_output_context(asset_key=["model_metrics"], definition_metadata=METRICS_METADATA)
    with build_input_context(
        asset_key=["model_metrics"],
        upstream_output=upstream,
        partition_key="2024-01-01",
        asset_partitions_def=MONTHLY,
        definition_metadata={"columns": ["model_name", "f1_by_grade", "accuracy"]},
    ) as context:
        loaded = io_manager.load_input(context).sort_values("model_name")

    assert list(loaded.columns) == ["model_name", "f1_by_grade", "accuracy"]
    assert loaded["f1_by_grade"].tolist() == [{grade: 0.5 for grade in GRADES}] * 2
    assert loaded["accuracy"].tolist() == [0.8, 0.8]


def test_materialize_partitioned_assets_end_to_end(
    postgres_resource: PostgresResource, postgres_url: str
) -> None:
    @asset(partitions_def=MONTHLY, metadata=INFERENCE_METADATA)
    def model_inference(context) -> pd.DataFrame:  # noqa: ANN001 - Dagster context
        return inference_frame(context.partition_key, 5)

    @asset(partitions_def=MONTHLY, metadata=METRICS_METADATA, ins={"model_inference": AssetIn()})
    def model_metrics(context, model_inference: pd.DataFrame) -> pd.DataFrame:  # noqa: ANN001
        return metrics_frame(context.partition_key).assign(total_samples=len(model_inference))

    resources = {"io_manager": PostgresPandasIOManager(postgres=postgres_resource)}
    for month in ("2024-01-01", "2024-02-01", "2024-01-01"):
        result = materialize([model_inference, model_metrics], partition_key=month, resources=resources)
        assert result.success

    assert rows_by_month(postgres_url) == {"2024-01-01": 5, "2024-02-01": 5}
    assert query(postgres_url, "SELECT month_date, total_samples FROM model_metrics ORDER BY 1") == [
        ("2024-01-01", 5),
        ("2024-02-01", 5),
    ]
    materialization = result.asset_materializations_for_node("model_inference")[0]
    assert materialization.metadata["dagster/row_count"].value == 5
    assert materialization.metadata["rows_replaced"].value == 5
