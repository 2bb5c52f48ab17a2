"""A small world for Dagster-level tests: generated sample data, its own PostgreSQL database, a real
MLflow store in a temp dir and a Dagster test instance, with every data month already materialized."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dagster import DagsterInstance, ExecuteInProcessResult, instance_for_test

from credit_assets.definitions import defs
from credit_assets.ml.sample_data import generate_sample
from credit_assets.resources.mlflow import MlflowModelRegistry
from credit_assets_tests.conftest import fresh_database

DATA_MONTHS = [f"2023-{m:02d}-01" for m in range(1, 13)] + [f"2024-{m:02d}-01" for m in range(1, 5)]
CUSTOMERS_PER_MONTH = 150


def training_config(n_estimators: int, learning_rate: float) -> dict[str, Any]:
    config = {"n_estimators": n_estimators, "learning_rate": learning_rate}
    return {"ops": {"lightgbm_model": {"config": config}, "catboost_model": {"config": config}}}


@dataclass
class SmallWorld:
    instance: DagsterInstance
    database_url: str
    registry: MlflowModelRegistry
    data_dir: Path

    def run(self, job: str, partition: str, run_config: dict[str, Any] | None = None) -> ExecuteInProcessResult:
        return defs.resolve_job_def(job).execute_in_process(
            partition_key=partition, instance=self.instance, run_config=run_config or {}, raise_on_error=False
        )

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(statement, params).fetchall()


@pytest.fixture(scope="package")
def data_world(postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmallWorld]:
    """Sample data, a database and a Dagster instance with every data month materialized (shared by the
    modules of this package: the data stage is the slow, unchanging part)."""
    root = tmp_path_factory.mktemp("data_world")
    data_dir = root / "data"
    generate_sample(data_dir, months=DATA_MONTHS, customers_per_month=CUSTOMERS_PER_MONTH, seed=7)
    with fresh_database(postgres_admin_url) as database_url, instance_for_test() as instance:
        mp = pytest.MonkeyPatch()
        mp.setenv("CREDIT_ASSETS_DATA_DIR", str(data_dir))
        mp.setenv("CREDIT_ASSETS_DATABASE_URL", database_url)
        try:
            world = SmallWorld(instance, database_url, None, data_dir)  # type: ignore[arg-type]
            for month in DATA_MONTHS:
                result = world.run("monthly_data_job", month)
                assert result.success, f"data run for {month} failed"
            yield world
        finally:
            mp.undo()


@pytest.fixture(scope="module")
def small_world(data_world: SmallWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmallWorld]:
    """The data world with an MLflow store of this module's own (no model registered yet) and empty tables."""
    root = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    with psycopg.connect(data_world.database_url) as conn:
        for table in ("model_inference", "model_metrics"):
            exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
            if exists:
                conn.execute(f"TRUNCATE {table}")
    mp = pytest.MonkeyPatch()
    mp.setenv("CREDIT_ASSETS_MLFLOW_TRACKING_URI", tracking_uri)
    mp.setenv("CREDIT_ASSETS_MLFLOW_ARTIFACTS", str(root / "artifacts"))
    try:
        yield SmallWorld(
            data_world.instance,
            data_world.database_url,
            MlflowModelRegistry(tracking_uri=tracking_uri),
            data_world.data_dir,
        )
    finally:
        mp.undo()
