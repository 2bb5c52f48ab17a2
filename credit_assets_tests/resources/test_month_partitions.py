"""How a month of a table partitioned by month is laid out and replaced (postgres_io/month_partitions.py).

Against a real PostgreSQL server: the two-level layout, the swap of a month's leaf table, what readers
see while a month loads, failures in the load and in the index builds, the conversion of months written
by earlier versions, and months of another shape.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from credit_assets.resources import io_managers
from credit_assets.resources.io_managers import PostgresPandasIOManager
from credit_assets.resources.postgres import PostgresResource
from credit_assets.resources.postgres_io.month_partitions import MONTH_BOUNDS_CONSTRAINT, build_indexes_like
from credit_assets.resources.postgres_io.tables import DDL_DIR, apply_ddl
from credit_assets_tests.resources.test_io_managers import inference_frame, query, rows_by_month, write

JANUARY = "model_inference_y2024m01"


@pytest.fixture
def io_manager(postgres_resource: PostgresResource) -> PostgresPandasIOManager:
    return PostgresPandasIOManager(postgres=postgres_resource)


def children(url: str, parent: str) -> list[tuple[str, str, str]]:
    """(name, relkind, bound) of each partition of `parent`."""
    return query(
        url,
        "SELECT c.relname, c.relkind::text, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass ORDER BY 1",
        [parent],
    )


def oid(url: str, relation: str) -> int | None:
    return query(url, "SELECT to_regclass(%s)::oid", [relation])[0][0]


def leftover_load_tables(url: str) -> list[str]:
    return [name for (name,) in query(url, "SELECT relname FROM pg_class WHERE relname LIKE '%\\_load'")]


def leaf_indexes(url: str, leaf: str) -> list[tuple[str, bool]]:
    """(index name, attached to an index of the month's partition) of each index of `leaf`."""
    return query(
        url,
        "SELECT ic.relname, EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid)"
        " FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = %s::regclass ORDER BY 1",
        [leaf],
    )


def partition_index_count(url: str, partition: str) -> int:
    return query(url, "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass", [partition])[0][0]


def month_rows(url: str, month: str) -> list[tuple[Any, ...]]:
    return query(
        url,
        "SELECT id, customer_id, model_name, prediction_probability FROM model_inference"
        " WHERE snapshot_date = %s ORDER BY id",
        [month],
    )


# -- layout ------------------------------------------------------------------------------------------


def test_a_month_is_a_partitioned_table_whose_one_leaf_holds_its_rows(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4), "2024-01-01")

    bound = "FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')"
    assert children(postgres_url, "model_inference") == [(JANUARY, "p", bound)]
    assert children(postgres_url, JANUARY) == [(f"{JANUARY}_rows", "r", bound)]
    assert query(postgres_url, f"SELECT count(*) FROM ONLY {JANUARY}_rows") == [(4,)]
    checks = query(
        postgres_url,
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'c'",
        [f"{JANUARY}_rows"],
    )
    assert checks == [
        (
            MONTH_BOUNDS_CONSTRAINT,
            "CHECK (((snapshot_date IS NOT NULL) AND (snapshot_date >= '2024-01-01'::date)"
            " AND (snapshot_date < '2024-02-01'::date)))",
        )
    ]


def test_rewriting_a_month_swaps_in_a_new_leaf_with_its_indexes_and_leaves_nothing_behind(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4, "old"), "2024-01-01")
    write(io_manager, "model_inference", inference_frame("2024-02-01", 2, "february"), "2024-02-01")
    first_leaf = oid(postgres_url, f"{JANUARY}_rows")
    february = month_rows(postgres_url, "2024-02-01")

    metadata = write(io_manager, "model_inference", inference_frame("2024-01-01", 3, "new"), "2024-01-01")

    assert (metadata["rows_replaced"], metadata["dagster/row_count"]) == (4, 3)
    assert oid(postgres_url, f"{JANUARY}_rows") not in (None, first_leaf)
    assert {row[2] for row in month_rows(postgres_url, "2024-01-01")} == {"new"}
    assert rows_by_month(postgres_url) == {"2024-01-01": 3, "2024-02-01": 2}
    assert month_rows(postgres_url, "2024-02-01") == february
    assert leftover_load_tables(postgres_url) == []
    # Every index of the month's partition has exactly one attached counterpart on the new leaf (built
    # before the swap; none built twice by ATTACH), named after the leaf.
    indexes = leaf_indexes(postgres_url, f"{JANUARY}_rows")
    assert len(indexes) == partition_index_count(postgres_url, JANUARY) == 2
    assert all(attached for _, attached in indexes)
    assert all(name.startswith(f"{JANUARY}_rows_") for name, _ in indexes), indexes


SCORES_DDL = (
    "CREATE TABLE scores (id BIGINT NOT NULL, day DATE NOT NULL, name TEXT, score DOUBLE PRECISION,"
    " UNIQUE (id, day)) PARTITION BY RANGE (day);"
    " CREATE INDEX scores_high ON scores (score) WHERE score > 0.5;"
    " CREATE INDEX scores_lower_name ON scores (lower(name));"
    " CREATE INDEX scores_day_incl ON scores (day) INCLUDE (score);"
)


def test_build_indexes_like_builds_each_kind_of_index_of_the_partitioned_table(postgres_url: str) -> None:
    """A unique constraint, a partial, an expression and an INCLUDE index, each as the parent defines it."""
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(SCORES_DDL)
        connection.execute("CREATE TABLE scores_copy (LIKE scores)")
        with connection.cursor() as cursor:
            build_indexes_like(cursor, oid(postgres_url, "scores"), sql.Identifier("public", "scores_copy"))

    def definitions(table: str) -> list[str]:
        return sorted(
            definition.split(" USING ", 1)[1]
            for (definition,) in query(postgres_url, "SELECT indexdef FROM pg_indexes WHERE tablename = %s", [table])
        )

    assert (
        definitions("scores_copy")
        == definitions("scores")
        == [
            "btree (day) INCLUDE (score)",
            "btree (id, day)",
            "btree (lower(name))",
            "btree (score) WHERE (score > (0.5)::double precision)",
        ]
    )
    constraints = query(
        postgres_url, "SELECT contype::text FROM pg_constraint WHERE conrelid = 'scores_copy'::regclass"
    )
    assert constraints == [("u",)]


def test_a_month_with_indexes_of_every_kind_swaps_with_each_index_attached_once(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        apply_ddl(connection, "public")
        connection.execute(SCORES_DDL)
    manager = PostgresPandasIOManager(postgres=PostgresResource(url=postgres_url))
    metadata = {"partition_expr": "day"}
    for names in (["a", "b", "c"], ["d", "e"]):
        frame = pd.DataFrame({"id": range(len(names)), "day": pd.Timestamp("2024-01-05"), "name": names, "score": 0.75})
        write(manager, "scores", frame, "2024-01-01", metadata=metadata)

    indexes = leaf_indexes(postgres_url, "scores_y2024m01_rows")
    assert len(indexes) == partition_index_count(postgres_url, "scores_y2024m01") == 4
    assert all(attached for _, attached in indexes), indexes
    assert query(postgres_url, "SELECT name FROM scores ORDER BY name") == [("d",), ("e",)]


class CopyPause:
    """Holds the next binary COPY after its first chunk, until `resume()`; other COPYs run through."""

    def __init__(self) -> None:
        self.paused = threading.Event()
        self._resume = threading.Event()
        self._armed = False
        self._lock = threading.Lock()

    def hold_next(self) -> None:
        self.paused.clear()
        self._resume.clear()
        self._armed = True

    def resume(self) -> None:
        self._resume.set()

    def take(self) -> bool:
        with self._lock:
            armed, self._armed = self._armed, False
            return armed


@pytest.fixture
def copy_pause(monkeypatch: pytest.MonkeyPatch) -> Iterator[CopyPause]:
    pause = CopyPause()
    real_chunks = io_managers.copy_binary_chunks

    def chunks_with_a_pause(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        chunks = real_chunks(*args, **kwargs)
        if pause.take():
            yield next(chunks)
            pause.paused.set()
            assert pause._resume.wait(timeout=30), "the test never resumed the COPY"
        yield from chunks

    monkeypatch.setattr(io_managers, "copy_binary_chunks", chunks_with_a_pause)
    yield pause
    pause.resume()


def start_write(
    io_manager: PostgresPandasIOManager, frame: pd.DataFrame, partition_key: str
) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            write(io_manager, "model_inference", frame, partition_key)
        except BaseException as exc:  # noqa: BLE001 - the test asserts on it
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def test_the_old_rows_stay_readable_while_their_month_loads(
    io_manager: PostgresPandasIOManager, postgres_url: str, copy_pause: CopyPause
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4, "old"), "2024-01-01")
    write(io_manager, "model_inference", inference_frame("2024-02-01", 2, "february"), "2024-02-01")
    copy_pause.hold_next()
    writer, errors = start_write(io_manager, inference_frame("2024-01-01", 3, "new"), "2024-01-01")
    try:
        assert copy_pause.paused.wait(timeout=30), "the January write never started its COPY"
        with psycopg.connect(postgres_url, autocommit=True) as reader:
            reader.execute("SET lock_timeout = '2s'")  # a blocked read fails instead of waiting
            # TRUNCATE + COPY held an ACCESS EXCLUSIVE lock on the month for the whole load: this read waited.
            january = reader.execute(
                "SELECT model_name, count(*) FROM model_inference WHERE snapshot_date = '2024-01-01' GROUP BY 1"
            ).fetchall()
            everything = reader.execute("SELECT count(*) FROM model_inference").fetchone()
    finally:
        copy_pause.resume()
        writer.join(timeout=60)
    assert january == [("old", 4)]
    assert everything == (6,)
    assert not writer.is_alive() and errors == []
    assert dict(query(postgres_url, "SELECT model_name, count(*) FROM model_inference GROUP BY 1")) == {
        "new": 3,
        "february": 2,
    }


def test_a_month_is_replaced_while_another_month_is_loading(
    io_manager: PostgresPandasIOManager, postgres_url: str, copy_pause: CopyPause
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4, "old"), "2024-01-01")
    write(io_manager, "model_inference", inference_frame("2024-02-01", 2, "old february"), "2024-02-01")
    copy_pause.hold_next()
    january, january_errors = start_write(io_manager, inference_frame("2024-01-01", 3, "new"), "2024-01-01")
    try:
        assert copy_pause.paused.wait(timeout=30)
        # January's transaction is open in the middle of its COPY; February's swap does not wait for it.
        february, february_errors = start_write(
            io_manager, inference_frame("2024-02-01", 5, "new february"), "2024-02-01"
        )
        february.join(timeout=20)
        finished_while_january_was_loading = not february.is_alive()
    finally:
        copy_pause.resume()
        january.join(timeout=60)
        february.join(timeout=60)
    assert finished_while_january_was_loading
    assert january_errors == [] and february_errors == []
    assert dict(query(postgres_url, "SELECT model_name, count(*) FROM model_inference GROUP BY 1")) == {
        "new": 3,
        "new february": 5,
    }


# -- failures ----------------------------------------------------------------------------------------


def test_a_failed_load_keeps_the_old_leaf_and_leaves_no_load_table(
    io_manager: PostgresPandasIOManager, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4, "kept"), "2024-01-01")
    leaf, before = oid(postgres_url, f"{JANUARY}_rows"), month_rows(postgres_url, "2024-01-01")
    real_chunks = io_managers.copy_binary_chunks

    def chunks_then_failure(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        chunks = real_chunks(*args, **kwargs)
        yield next(chunks)
        raise ConnectionResetError("stream broken")

    monkeypatch.setattr(io_managers, "copy_binary_chunks", chunks_then_failure)
    with pytest.raises(ConnectionResetError):
        write(io_manager, "model_inference", inference_frame("2024-01-01", 10, "lost"), "2024-01-01")

    assert oid(postgres_url, f"{JANUARY}_rows") == leaf
    assert month_rows(postgres_url, "2024-01-01") == before
    assert leftover_load_tables(postgres_url) == []


def test_a_key_violation_found_by_the_index_build_keeps_the_old_rows(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    """The primary key is built after the load: duplicates are still refused, and nothing changes."""
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4, "kept"), "2024-01-01")
    before = month_rows(postgres_url, "2024-01-01")
    duplicated = inference_frame("2024-01-01", 3, "lost").assign(id=[7, 8, 7])

    with pytest.raises(psycopg.errors.UniqueViolation, match=r"\(id, snapshot_date\)=\(7, 2024-01-01\)"):
        write(io_manager, "model_inference", duplicated, "2024-01-01")

    assert month_rows(postgres_url, "2024-01-01") == before
    assert leftover_load_tables(postgres_url) == []


def test_a_table_squatting_on_the_load_name_is_reported_and_nothing_changes(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 4, "kept"), "2024-01-01")
    before = month_rows(postgres_url, "2024-01-01")
    query_and_commit(postgres_url, f"CREATE TABLE {JANUARY}_load (x int)")

    with pytest.raises(io_managers.PostgresWriteError, match=f"public.{JANUARY}_load exists"):
        write(io_manager, "model_inference", inference_frame("2024-01-01", 2, "lost"), "2024-01-01")

    assert month_rows(postgres_url, "2024-01-01") == before


def query_and_commit(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(statement)


# -- months of earlier versions and of other shapes ---------------------------------------------------


def legacy_database(url: str, tmp_path: Path) -> None:
    """model_inference as earlier versions left it: DDL 001-003, and plain month partitions with rows."""
    legacy_ddl = tmp_path / "legacy_sql"
    legacy_ddl.mkdir()
    for path in sorted(DDL_DIR.glob("*.sql")):
        if path.name < "004":
            shutil.copy(path, legacy_ddl / path.name)
    with psycopg.connect(url, autocommit=True) as connection:
        apply_ddl(connection, "public", ddl_dir=legacy_ddl)
        for month, end in (("2024-01-01", "2024-02-01"), ("2024-02-01", "2024-03-01")):
            name = f"model_inference_y{month[:4]}m{month[5:7]}"
            connection.execute(
                f"CREATE TABLE {name} (LIKE model_inference INCLUDING DEFAULTS INCLUDING CONSTRAINTS"
                " INCLUDING GENERATED INCLUDING STORAGE)"
            )
            connection.execute(
                f"ALTER TABLE model_inference ATTACH PARTITION {name} FOR VALUES FROM ('{month}') TO ('{end}')"
            )
            connection.execute(
                "INSERT INTO model_inference (customer_id, snapshot_date, predicted_grade, prediction_probability,"
                " model_name, month_partition)"
                " SELECT 'CUS_' || g, %s, 'Good', 0.5, 'legacy', %s FROM generate_series(1, 5) g",
                [month, month.replace("-", "_")],
            )


def test_months_written_by_earlier_versions_are_converted_with_every_row(
    io_manager: PostgresPandasIOManager, postgres_url: str, tmp_path: Path
) -> None:
    legacy_database(postgres_url, tmp_path)
    january, february = month_rows(postgres_url, "2024-01-01"), month_rows(postgres_url, "2024-02-01")
    assert [kind for _, kind, _ in children(postgres_url, "model_inference")] == ["r", "r"]

    # The first write of this version applies sql/004, which converts both months; it then writes March.
    write(io_manager, "model_inference", inference_frame("2024-03-01", 2, "march"), "2024-03-01")

    assert [(name, kind) for name, kind, _ in children(postgres_url, "model_inference")] == [
        (JANUARY, "p"),
        ("model_inference_y2024m02", "p"),
        ("model_inference_y2024m03", "p"),
    ]
    assert [name for name, _, _ in children(postgres_url, JANUARY)] == [f"{JANUARY}_rows"]
    assert month_rows(postgres_url, "2024-01-01") == january
    assert month_rows(postgres_url, "2024-02-01") == february
    # A converted month is then replaced by the swap like any other.
    metadata = write(io_manager, "model_inference", inference_frame("2024-01-01", 3, "new"), "2024-01-01")
    assert metadata["rows_replaced"] == 5
    assert {row[2] for row in month_rows(postgres_url, "2024-01-01")} == {"new"}
    assert month_rows(postgres_url, "2024-02-01") == february


def test_a_month_partition_of_another_shape_is_replaced_by_truncate_and_copy(
    io_manager: PostgresPandasIOManager, postgres_url: str
) -> None:
    write(io_manager, "model_inference", inference_frame("2024-01-01", 1), "2024-01-01")  # applies the DDL
    query_and_commit(
        postgres_url,
        "CREATE TABLE hand_made_june (LIKE model_inference INCLUDING DEFAULTS INCLUDING CONSTRAINTS);"
        " ALTER TABLE model_inference ATTACH PARTITION hand_made_june FOR VALUES FROM ('2024-06-01') TO ('2024-07-01')",
    )
    write(io_manager, "model_inference", inference_frame("2024-06-01", 4, "old"), "2024-06-01")

    metadata = write(io_manager, "model_inference", inference_frame("2024-06-01", 2, "new"), "2024-06-01")

    assert metadata["rows_replaced"] == 4
    assert {row[2] for row in month_rows(postgres_url, "2024-06-01")} == {"new"}
    assert [name for name, _, _ in children(postgres_url, "model_inference")] == [
        "hand_made_june",
        JANUARY,
    ]


def test_a_table_name_too_long_for_leaf_names_gets_one_level_months_replaced_whole(postgres_url: str) -> None:
    table = "scores_of_a_table_with_a_name_of_fifty_characters0"  # + _y2024m01 + _rows = 64 > 63
    assert len(table) == 50
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        apply_ddl(connection, "public")
        columns = "id BIGINT NOT NULL, day DATE NOT NULL, name TEXT"
        connection.execute(
            sql.SQL("CREATE TABLE {} (" + columns + ") PARTITION BY RANGE (day)").format(sql.Identifier(table))
        )
    manager = PostgresPandasIOManager(postgres=PostgresResource(url=postgres_url))
    for names in (["a", "b", "c"], ["d", "e"]):
        frame = pd.DataFrame({"id": range(len(names)), "day": pd.Timestamp("2024-01-05"), "name": names})
        metadata = write(manager, table, frame, "2024-01-01", metadata={"partition_expr": "day"})

    bounds = "FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')"
    assert children(postgres_url, table) == [(f"{table}_y2024m01", "r", bounds)]
    assert query(postgres_url, sql.SQL("SELECT name FROM {} ORDER BY name").format(sql.Identifier(table))) == [
        ("d",),
        ("e",),
    ]
    assert metadata["rows_replaced"] == 3
