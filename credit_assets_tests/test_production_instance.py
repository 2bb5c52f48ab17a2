"""The production instance (dagster.production.yaml) for real: Dagster's runs, event logs and schedules in
PostgreSQL through dagster-postgres, runs queued by the QueuedRunCoordinator and launched by a real
``dagster-daemon`` (own process group, always stopped), backfills submitted with ``dagster job backfill``
exactly as the README says, results read back through the instance and the model tables.

The scenario is the smallest that proves it on two shared cores, where each daemon-launched run is a new
process paying ~10 s of imports before its first step (a model month needs 12 data months before it, so an
all-daemon scenario is 15+ runs and several minutes):

* in this process, on the same PostgreSQL-backed instance: every data month (2023-01 .. 2024-02) and the
  2024-01 model (small boosting config). Their outputs land in the instance's storage, where the daemon's
  run workers read them, as if earlier backfills had produced them;
* through the daemon: ``dagster job backfill -j scoring_job`` over 2024-01 .. 2024-02 (the 2024-01
  champion scores both months: ``model_inference`` and ``model_metrics`` in the model tables);
* the queue's retraining limit (``credit_assets/stage: retraining``, 1 at a time): with a retraining run in
  progress (a run record, as a run worker would leave it; a real one takes ~30 s here), a retraining
  backfill submitted first stays queued while the scoring runs submitted after it are launched.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg
import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.utils import make_new_run_id

from credit_assets.definitions import defs
from credit_assets.devtools import demo
from credit_assets.ml.sample_data import generate_sample
from credit_assets_tests._processes import (
    PRODUCTION_YAML,
    assert_running,
    dagster_pg_environment,
    log_tail,
    service_environment,
    stop_process_group,
)
from credit_assets_tests.conftest import fresh_database

pytestmark = [pytest.mark.slow]

WINDOW_MONTHS = [f"2023-{m:02d}-01" for m in range(1, 13)]  # what the 2024-01 model learns from
MODEL_MONTHS = ["2024-01-01", "2024-02-01"]
CUSTOMERS_PER_MONTH = 200
SMALL_TRAINING = {"n_estimators": 40, "learning_rate": 0.2}
BACKFILL_TIMEOUT_S = 150
STAGE_TAG = "credit_assets/stage"
LAUNCHED_STATUSES = [
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.SUCCESS,
    DagsterRunStatus.FAILURE,
]


@dataclass
class ProductionDeployment:
    dagster_home: Path
    workdir: Path
    env: dict[str, str]
    dagster_db_url: str
    tables_db_url: str
    tmp: Path

    @property
    def daemon_log(self) -> Path:
        return self.tmp / "dagster-daemon.log"


@pytest.fixture
def deployment(
    postgres_admin_url: str, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ProductionDeployment]:
    """A DAGSTER_HOME holding dagster.production.yaml verbatim, with Dagster's storage in a fresh database of
    its own and the model tables in another (the test's ``postgres_url``), and an MLflow store in tmp_path.
    This process sees the same settings (DagsterInstance.get() reads that DAGSTER_HOME)."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copyfile(PRODUCTION_YAML, dagster_home / "dagster.yaml")
    workdir = tmp_path / "workdir"  # the services' cwd: no .env there (see credit_assets_tests/_processes.py)
    workdir.mkdir()
    with fresh_database(postgres_admin_url) as dagster_db_url:
        settings = {
            "DAGSTER_HOME": str(dagster_home),
            **dagster_pg_environment(dagster_db_url),
            "CREDIT_ASSETS_DATA_DIR": str(tmp_path / "data"),
            "CREDIT_ASSETS_DATABASE_URL": postgres_url,
            "CREDIT_ASSETS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "CREDIT_ASSETS_MLFLOW_ARTIFACTS": str(tmp_path / "mlflow_artifacts"),
        }
        for key, value in settings.items():
            monkeypatch.setenv(key, value)
        yield ProductionDeployment(
            dagster_home=dagster_home,
            workdir=workdir,
            env=service_environment(settings),
            dagster_db_url=dagster_db_url,
            tables_db_url=postgres_url,
            tmp=tmp_path,
        )


def test_instance_loads_postgres_storage_and_queue_limits(deployment: ProductionDeployment) -> None:
    """What the yaml configures, as Dagster 1.13 / dagster-postgres 0.29 read it: PostgreSQL for runs,
    events and schedules with the psycopg2 driver pinned, the queue limits, run monitoring, no telemetry."""
    assert yaml.safe_load(PRODUCTION_YAML.read_text())["telemetry"] == {"enabled": False}
    with DagsterInstance.get() as instance:
        storages = {
            "runs": instance.run_storage,
            "event_log": instance.event_log_storage,
            "schedules": instance.schedule_storage,
        }
        for name, storage in storages.items():
            assert type(storage).__module__.startswith("dagster_postgres"), (
                f"{name} storage is {type(storage)}"
            )
            url = storage._engine.url  # the SQLAlchemy engine dagster-postgres built from the yaml
            assert url.drivername == "postgresql+psycopg2", f"{name}: {url.drivername}"
            assert url.database == deployment.env["DAGSTER_PG_DB"]
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None and queue.max_concurrent_runs == 2
        assert queue.tag_concurrency_limits == [{"key": STAGE_TAG, "value": "retraining", "limit": 1}]
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 0  # DefaultRunLauncher cannot resume runs
        assert not instance.telemetry_enabled
    with psycopg.connect(deployment.dagster_db_url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"runs", "event_logs", "jobs", "job_ticks", "bulk_actions", "alembic_version"} <= tables
    assert not list(deployment.dagster_home.glob("**/*.db")), "SQLite storage was created in DAGSTER_HOME"


def test_daemon_runs_multi_month_backfills_on_postgres(deployment: ProductionDeployment) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}
    data_dir = Path(deployment.env["CREDIT_ASSETS_DATA_DIR"])
    months = WINDOW_MONTHS + MODEL_MONTHS
    generate_sample(data_dir, months=months, customers_per_month=CUSTOMERS_PER_MONTH, seed=11)

    # A retraining run in progress, as a run worker would have left it (a real one takes ~30 s here). The
    # daemon must hold every other retraining run while it is in progress, and launch the runs behind them.
    with DagsterInstance.get() as instance:
        in_progress = instance.add_run(
            DagsterRun(
                job_name="retraining_job",
                run_id=make_new_run_id(),
                status=DagsterRunStatus.STARTED,
                tags={STAGE_TAG: "retraining", "dagster/partition": MODEL_MONTHS[0]},
            )
        )

    daemon = demo.start_daemon(deployment.env, deployment.daemon_log, cwd=deployment.workdir)

    def daemon_alive() -> None:
        assert_running(daemon, "dagster-daemon", deployment.daemon_log)

    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            # The retraining backfill goes into the queue while this thread prepares the data and the model.
            held_backfill = pool.submit(
                demo.backfill,
                "retraining_job",
                MODEL_MONTHS[1],
                MODEL_MONTHS[1],
                deployment.env,
                deployment.workdir,
            )
            # Every data month and the 2024-01 model, in this process, on the same PostgreSQL-backed instance:
            # the outputs land in its storage, where the daemon's run workers read them.
            with DagsterInstance.get() as instance:
                for month in months:
                    result = defs.resolve_job_def("monthly_data_job").execute_in_process(
                        partition_key=month, instance=instance
                    )
                    assert result.success, f"data for {month}"
                training = {
                    "ops": {f"{f}_model": {"config": SMALL_TRAINING} for f in ("lightgbm", "catboost")}
                }
                result = defs.resolve_job_def("retraining_job").execute_in_process(
                    partition_key=MODEL_MONTHS[0], instance=instance, run_config=training
                )
                assert result.success, "the 2024-01 model was not trained and promoted"
            timings["in-process preparation"] = time.monotonic() - started
            held_id = held_backfill.result(timeout=BACKFILL_TIMEOUT_S)

        t0 = time.monotonic()
        score_id = demo.backfill(
            "scoring_job", MODEL_MONTHS[0], MODEL_MONTHS[-1], deployment.env, deployment.workdir
        )
        timings["scoring: `dagster job backfill`"] = time.monotonic() - t0
        t0 = time.monotonic()
        # The first scoring run, queued behind the retraining run, is launched while that one stays held.
        with DagsterInstance.get() as instance:
            while not instance.get_runs(
                filters=RunsFilter(tags={"dagster/backfill": score_id}, statuses=LAUNCHED_STATUSES)
            ):
                daemon_alive()
                assert time.monotonic() - t0 < BACKFILL_TIMEOUT_S, "the daemon launched no scoring run"
                time.sleep(0.5)
            (held,) = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": held_id}))
            held_starts = instance.get_records_for_run(
                held.run_id, of_type=DagsterEventType.RUN_STARTING
            ).records
            # Done with the limit: take the held run out of the queue, then end the one in progress.
            instance.run_coordinator.cancel_run(held.run_id)
            instance.delete_run(held.run_id)
            instance.delete_run(in_progress.run_id)
        assert held.status == DagsterRunStatus.QUEUED and not held_starts, (
            f"a second retraining run was launched ({held.status}) while one was in progress"
        )
        statuses = demo.wait_for_backfill(
            score_id, len(MODEL_MONTHS), timeout_s=BACKFILL_TIMEOUT_S, on_poll=daemon_alive
        )
        timings["scoring: runs"] = time.monotonic() - t0
        assert statuses == {"SUCCESS": MODEL_MONTHS}, (
            f"scoring backfill {score_id}: {statuses}\ndaemon log:\n{log_tail(deployment.daemon_log)}"
        )
        daemon_alive()
    finally:
        stop_process_group(daemon)
        timings["total"] = time.monotonic() - started
        print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))

    # The instance (PostgreSQL): every run succeeded; the scoring runs went through the queue and the daemon.
    with DagsterInstance.get() as instance:
        records = instance.get_run_records()
        scoring_runs = instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": score_id}))
        queue_events = {
            run.run_id: {
                record.event_log_entry.dagster_event_type
                for record in instance.get_records_for_run(
                    run.run_id, of_type={DagsterEventType.RUN_ENQUEUED, DagsterEventType.RUN_STARTING}
                ).records
            }
            for run in scoring_runs
        }
    assert {r.dagster_run.status for r in records} == {DagsterRunStatus.SUCCESS}
    assert len(records) == len(months) + 1 + len(MODEL_MONTHS), "runs nobody asked for (a sensor?)"
    through_queue = {DagsterEventType.RUN_ENQUEUED, DagsterEventType.RUN_STARTING}
    assert all(events == through_queue for events in queue_events.values()), queue_events
    with psycopg.connect(deployment.dagster_db_url) as conn:
        stored_runs = conn.execute("SELECT count(*) FROM runs").fetchone()[0]
        materialized = conn.execute(
            "SELECT count(DISTINCT run_id) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        ).fetchone()[0]
    assert stored_runs == materialized == len(records)
    assert not list(deployment.dagster_home.glob("**/*.db")), "SQLite storage was created in DAGSTER_HOME"

    # The tables: every customer of each scored month exactly once, written by that month's scoring run.
    attributes = pd.read_csv(
        data_dir / "features_attributes.csv.gz", usecols=["Customer_ID", "snapshot_date"]
    )
    cohort = attributes.groupby("snapshot_date")["Customer_ID"].nunique().to_dict()
    scoring_run_of = {run.tags["dagster/partition"]: run.run_id for run in scoring_runs}
    with psycopg.connect(deployment.tables_db_url) as conn:
        inference = conn.execute(
            """SELECT snapshot_date::text, count(*), count(DISTINCT customer_id), array_agg(DISTINCT dagster_run_id)
               FROM model_inference GROUP BY 1 ORDER BY 1"""
        ).fetchall()
        monitored = conn.execute(
            """SELECT DISTINCT month_date::text, dagster_run_id FROM model_metrics
               WHERE evaluation_kind = 'monitoring' AND model_role = 'champion' ORDER BY 1"""
        ).fetchall()
    assert [(month, n, distinct) for month, n, distinct, _ in inference] == [
        (month, cohort[month], cohort[month]) for month in MODEL_MONTHS
    ]
    assert {month: run_ids for month, _, _, run_ids in inference} == {
        m: [scoring_run_of[m]] for m in MODEL_MONTHS
    }
    assert monitored == [(m, scoring_run_of[m]) for m in MODEL_MONTHS]
