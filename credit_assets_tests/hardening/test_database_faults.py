"""Issue 4, kind 5: database faults and concurrency, against the real PostgreSQL server.

PostgreSQL unreachable: the step's retry policy retries it (and only it), and the error names the server but
never the password. A writer killed with SIGKILL in the middle of its COPY leaves the month exactly as it
was. Two processes writing different months both finish without waiting for each other; two processes
writing the same month end with exactly one complete set of rows.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterEventType, DagsterRunStatus, RunsFilter
from dagster._serdes import serialize_value
from psycopg import sql

from credit_assets.resources.io_managers import PostgresPandasIOManager
from credit_assets.resources.postgres import PostgresResource, PostgresUnavailableError
from credit_assets.resources.postgres_io.tables import partition_lock_key
from credit_assets_tests.hardening._writer import frame, write_table
from credit_assets_tests.hardening.conftest import (
    MODEL_MONTH,
    PasswordRole,
    Pipeline,
    error_text,
    query,
    retries,
    step_failures,
    table_rows,
)

REPO = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 120


# -- unreachable --------------------------------------------------------------------------------------


def test_unreachable_server_error_names_it_without_the_password(password_role: PasswordRole) -> None:
    url = password_role.url("postgresql://127.0.0.1:1/credit_assets")  # nothing listens on port 1
    with pytest.raises(PostgresUnavailableError) as raised:
        with PostgresResource(url=url).connect():
            pass
    message = str(raised.value)
    assert "host=127.0.0.1 port=1 dbname=credit_assets" in message
    assert password_role.secret not in message and "S3cr3t" not in message
    assert raised.value.__cause__ is None and raised.value.__context__ is None  # nothing chained that echoes it


def test_lost_database_is_retried_and_the_retry_names_the_server_but_not_the_password(
    pipeline: Pipeline, password_role: PasswordRole
) -> None:
    """scoring_job against a database that refuses connections until the first attempt has failed: the
    model_inference step is retried once (10 s later) and then succeeds. Nothing of the password reaches
    the event log."""
    with pipeline.database(owner=password_role.name) as url:
        dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        allow = sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}")
        with psycopg.connect(pipeline.admin_url, autocommit=True) as admin:
            admin.execute(allow.format(sql.Identifier(dbname), sql.SQL("false")))
        reopened = threading.Event()

        def reopen_after_first_retry() -> None:
            deadline = time.monotonic() + WAIT_SECONDS
            while time.monotonic() < deadline:
                started = pipeline.instance.get_runs(
                    RunsFilter(job_name="scoring_job", statuses=[DagsterRunStatus.STARTED])
                )
                for run in started:
                    if pipeline.instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY):
                        with psycopg.connect(pipeline.admin_url, autocommit=True) as admin:
                            admin.execute(allow.format(sql.Identifier(dbname), sql.SQL("true")))
                        reopened.set()
                        return
                time.sleep(0.1)

        watcher = threading.Thread(target=reopen_after_first_retry, daemon=True)
        watcher.start()
        result = pipeline.run("scoring_job", MODEL_MONTH, database_url=password_role.url(url))
        watcher.join(timeout=5)

        assert reopened.is_set()
        assert result.success
        retried = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
        assert [e.step_key for e in retried] == ["model_inference"]
        message = error_text(retried[0].event_specific_data.error)
        assert (
            f"Cannot connect to PostgreSQL at host=127.0.0.1 port=5432 dbname={dbname} user={password_role.name}"
            in (message)
        )
        cohort = len(pipeline.features(MODEL_MONTH))
        assert query(url, "SELECT count(*) FROM model_inference") == [(cohort,)]
        run_events = pipeline.instance.all_logs(result.run_id)
        assert run_events and all(password_role.secret not in serialize_value(e) for e in run_events)


# -- kill -9 in the middle of a write ------------------------------------------------------------------


def start_writer(url: str, month: str, label: str, **rows: int) -> subprocess.Popen[str]:
    """A writer process for ``month``: ``rows`` says how many rows it writes to which table, in order."""
    tables = [f"{table}={count}" for table, count in rows.items()]
    return subprocess.Popen(
        [sys.executable, "-m", "credit_assets_tests.hardening._writer", url, month, label, *tables],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(writer: subprocess.Popen[str]) -> None:
    out, err = writer.communicate(timeout=WAIT_SECONDS)
    assert writer.returncode == 0 and "written" in out, err[-3000:]


def test_writer_killed_in_the_middle_of_its_copy_leaves_the_month_as_it_was(postgres_url: str) -> None:
    month = "2024-01-01"
    write_table(postgres_url, "model_inference", frame("model_inference", month, 1_000, "before"), month)
    write_table(postgres_url, "model_inference", frame("model_inference", "2024-02-01", 300, "other"), "2024-02-01")
    before = table_rows(postgres_url, "model_inference")

    writer = start_writer(postgres_url, month, "killed", model_inference=400_000)
    with psycopg.connect(postgres_url, autocommit=True) as watch:
        deadline = time.monotonic() + WAIT_SECONDS
        while True:  # wait until the writer's COPY has sent rows, then kill it
            copying = watch.execute(
                "SELECT pid, tuples_processed FROM pg_stat_progress_copy WHERE datname = current_database()"
            ).fetchone()
            if copying and copying[1] > 0:
                break
            if writer.poll() is not None:
                pytest.fail(f"the writer ended before it could be killed mid-COPY: {writer.communicate()}")
            assert time.monotonic() < deadline, "the writer never started its COPY"
            time.sleep(0.005)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=WAIT_SECONDS)
        assert writer.returncode == -signal.SIGKILL
        backend = copying[0]
        while watch.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend]).fetchone():
            assert time.monotonic() < deadline, "the killed writer's backend never ended"
            time.sleep(0.05)

    assert table_rows(postgres_url, "model_inference") == before
    # Nothing is left behind that blocks the month (a lock, a half-made partition): it can be written again.
    write_table(postgres_url, "model_inference", frame("model_inference", month, 700, "after"), month)
    assert query(postgres_url, "SELECT model_name, count(*) FROM model_inference GROUP BY 1 ORDER BY 1") == [
        ("after", 700),
        ("other", 300),
    ]


# -- two writers at once ------------------------------------------------------------------------------


def hold_month_lock(connection: psycopg.Connection, table: str, month: str) -> str:
    key = partition_lock_key("public", table, dt.date.fromisoformat(month))
    connection.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [key])
    return key


def wait_for_lock_waiters(connection: psycopg.Connection, count: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        [(waiting,)] = connection.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = current_database()"
        ).fetchall()
        if waiting >= count:
            return
        assert time.monotonic() < deadline, f"{waiting} writer(s) waiting for the month's lock, expected {count}"
        time.sleep(0.05)


def test_two_processes_writing_the_same_month_leave_exactly_one_complete_set(postgres_url: str) -> None:
    """Two scoring-like writers of one month, each writing model_inference then model_metrics: for each
    table both queue behind the month's lock and race when it is released. Each table ends with exactly one
    writer's complete set (the same writer for both tables is not required: they are separate writes)."""
    month = "2024-01-01"
    sizes = {
        "writer_a": {"model_inference": 3_000, "model_metrics": 30},
        "writer_b": {"model_inference": 2_000, "model_metrics": 20},
    }
    for table in ("model_inference", "model_metrics"):
        write_table(postgres_url, table, frame(table, month, 5, "earlier"), month)
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        keys = [hold_month_lock(holder, table, month) for table in ("model_inference", "model_metrics")]
        writers = [start_writer(postgres_url, month, label, **rows) for label, rows in sizes.items()]
        for key in keys:  # release one table at a time, once both writers queue behind it
            wait_for_lock_waiters(holder, 2)
            holder.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])
    for writer in writers:
        finish(writer)

    for table in ("model_inference", "model_metrics"):
        counts = query(
            postgres_url, sql.SQL("SELECT model_name, count(*) FROM {} GROUP BY 1").format(sql.Identifier(table))
        )
        assert counts in ([("writer_a", sizes["writer_a"][table])], [("writer_b", sizes["writer_b"][table])]), table


def test_two_processes_writing_different_months_both_succeed_without_waiting(postgres_url: str) -> None:
    table = "model_inference"
    write_table(postgres_url, table, frame(table, "2024-01-01", 5, "earlier"), "2024-01-01")
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        key = hold_month_lock(holder, table, "2024-01-01")
        january = start_writer(postgres_url, "2024-01-01", "january", model_inference=3_000)
        february = start_writer(postgres_url, "2024-02-01", "february", model_inference=2_000)  # a new partition
        wait_for_lock_waiters(holder, 1)
        finish(february)  # while January's writer is still waiting for its month
        assert january.poll() is None
        holder.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])
    finish(january)

    assert query(
        postgres_url, "SELECT snapshot_date::text, model_name, count(*) FROM model_inference GROUP BY 1, 2 ORDER BY 1"
    ) == [("2024-01-01", "january", 3_000), ("2024-02-01", "february", 2_000)]


def test_a_frame_the_table_cannot_take_fails_at_once_under_the_retry_policy(postgres_url: str) -> None:
    """The retry policy of the database assets is for connection errors: a frame the IO manager refuses
    (here a column the table does not have) fails the step on its first attempt, without the 10 s wait."""
    from dagster import DagsterInstance, MonthlyPartitionsDefinition, asset, materialize

    from credit_assets.assets._retry import DATABASE_RETRY_POLICY

    @asset(
        name="model_metrics",
        partitions_def=MonthlyPartitionsDefinition(start_date="2023-01-01"),
        io_manager_key="postgres_io_manager",
        metadata={"partition_expr": "month_date"},
        retry_policy=DATABASE_RETRY_POLICY,
    )
    def bad_metrics():
        return frame("model_metrics", "2024-01-01", 1, "bad").assign(not_a_column=1)

    started = time.monotonic()
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [bad_metrics],
            partition_key="2024-01-01",
            resources={"postgres_io_manager": PostgresPandasIOManager(postgres=PostgresResource(url=postgres_url))},
            instance=instance,
            raise_on_error=False,
        )
    assert not result.success
    assert retries(result) == []
    assert "does not have: ['not_a_column']" in step_failures(result)["model_metrics"]
    assert time.monotonic() - started < DATABASE_RETRY_POLICY.delay
