"""Fixtures of the hardening tests (issue 4): the real Dagster jobs over a tiny generated data set, with a
real PostgreSQL database and a real MLflow store in a temporary directory.

One pipeline per package (``pipeline``): 16 sample months of 60 customers, the data job for the 12 months
of the first model month's training window and that month itself, one retraining run (few boosting
rounds) and one scoring run. Tests then break or change a copy of the data, or point a run at another
database or MLflow store, and check what the jobs did through the tables, the registry and the Dagster
event log. The instance is in memory (``DagsterInstance.ephemeral``): its SQLite twin spends most of a
tiny run writing events.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import psycopg
import pytest
from dagster import AssetKey, DagsterEventType, DagsterInstance, ExecuteInProcessResult
from psycopg import sql

from credit_assets.ml.sample_data import generate_sample
from credit_assets.ml.schema import SOURCE_FILES
from credit_assets.resources.mlflow import MlflowModelRegistry
from credit_assets_tests.conftest import fresh_database
from credit_assets_tests.hardening._writer import PARTITION_EXPR, write_table  # noqa: F401 (re-exported)

SAMPLE_MONTHS: tuple[str, ...] = (
    *(f"2023-{month:02d}-01" for month in range(1, 13)),
    "2024-01-01",
    "2024-02-01",
    "2024-03-01",
    "2024-04-01",
)
TRAINING_DATA_MONTHS = SAMPLE_MONTHS[:12]
MODEL_MONTH = "2024-01-01"  # trained, promoted and scored by the package fixture
CUSTOMERS_PER_MONTH = 60
FAST_TRAINING: dict[str, Any] = {
    "ops": {f"{family}_model": {"config": {"n_estimators": 20}} for family in ("lightgbm", "catboost")}
}

ENV_DATA_DIR = "CREDIT_ASSETS_DATA_DIR"
ENV_DATABASE_URL = "CREDIT_ASSETS_DATABASE_URL"
ENV_TRACKING_URI = "CREDIT_ASSETS_MLFLOW_TRACKING_URI"
ENV_ARTIFACTS = "CREDIT_ASSETS_MLFLOW_ARTIFACTS"


# -- source files -----------------------------------------------------------------------------------


def source_path(data_dir: Path, source: str) -> Path:
    return data_dir / f"{SOURCE_FILES[source]}.csv"


def read_source(data_dir: Path, source: str) -> pd.DataFrame:
    """A source file as text, exactly as written (no NA guessing), one row per line after the header."""
    return pd.read_csv(source_path(data_dir, source), dtype=str, keep_default_na=False)


def write_source(data_dir: Path, source: str, frame: pd.DataFrame) -> None:
    frame.to_csv(source_path(data_dir, source), index=False)


def edit_month(data_dir: Path, source: str, month: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    """Rewrite the rows of ``month`` in one source file with ``change`` (other months as they were)."""
    frame = read_source(data_dir, source)
    in_month = frame["snapshot_date"] == month
    changed = change(frame.loc[in_month].copy())
    write_source(data_dir, source, pd.concat([frame.loc[~in_month], changed]).sort_index(kind="stable"))


# -- tables -----------------------------------------------------------------------------------------


def table_rows(url: str, table: str) -> list[tuple[Any, ...]]:
    """Every row of a table, every column, in id order (the exact stored state)."""
    with psycopg.connect(url) as connection:
        return connection.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(table))).fetchall()


def tables_state(url: str) -> dict[str, list[tuple[Any, ...]]]:
    return {table: table_rows(url, table) for table in ("model_inference", "model_metrics")}


def query(url: str, statement: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as connection:
        return connection.execute(statement, params).fetchall()


# -- Dagster results --------------------------------------------------------------------------------


def step_failures(result: ExecuteInProcessResult) -> dict[str, str]:
    """Failed step -> its error text (message and causes): what an operator reads in the UI."""
    failures = {}
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            failures[event.step_key] = error_text(event.event_specific_data.error)
    return failures


def error_text(error: Any) -> str:
    texts = []
    while error is not None:
        texts.append(error.message)
        error = error.cause
    return "\n".join(texts)


def retries(result: ExecuteInProcessResult) -> list[str]:
    return [e.step_key for e in result.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]


def materialization_metadata(result: ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    [materialization] = [m for m in result.asset_materializations_for_node(asset) if m.asset_key == AssetKey(asset)]
    return {key: value.value for key, value in materialization.metadata.items()}


# -- the pipeline -----------------------------------------------------------------------------------


@dataclass
class Pipeline:
    """The package's Dagster instance, data, database and MLflow store, and a way to run jobs on them."""

    root: Path
    data_dir: Path
    database_url: str
    tracking_uri: str
    artifacts: str
    instance: DagsterInstance
    admin_url: str

    def run(
        self,
        job: str,
        partition: str,
        *,
        data_dir: Path | None = None,
        database_url: str | None = None,
        tracking_uri: str | None = None,
        run_config: Mapping[str, Any] | None = None,
        assets: Sequence[str] | None = None,
        raise_on_error: bool = True,
    ) -> ExecuteInProcessResult:
        """Run ``job`` for ``partition`` the way the deployment does, optionally on other data/stores."""
        from credit_assets.definitions import defs

        env = {
            ENV_DATA_DIR: str(data_dir or self.data_dir),
            ENV_DATABASE_URL: database_url or self.database_url,
            ENV_TRACKING_URI: tracking_uri or self.tracking_uri,
            # A store of its own keeps its artifacts apart (the experiment's location is set when it is created).
            ENV_ARTIFACTS: str(self.root / f"artifacts_{Path(tracking_uri).stem}") if tracking_uri else self.artifacts,
        }
        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            return defs.get_job_def(job).execute_in_process(
                partition_key=partition,
                instance=self.instance,
                run_config=dict(run_config or {}),
                asset_selection=[AssetKey(asset) for asset in assets] if assets else None,
                raise_on_error=raise_on_error,
            )

    def copy_data(self) -> Path:
        """A private copy of the sample files for a test to change."""
        target = self.root / f"data_{uuid.uuid4().hex[:8]}"
        shutil.copytree(self.data_dir, target)
        return target

    def new_tracking_uri(self) -> str:
        """An empty MLflow store of its own (sqlite in the package's temp dir)."""
        return f"sqlite:///{self.root / f'mlflow_{uuid.uuid4().hex[:8]}.db'}"

    def registry(self, tracking_uri: str | None = None) -> MlflowModelRegistry:
        return MlflowModelRegistry(tracking_uri=tracking_uri or self.tracking_uri)

    def features(self, month: str) -> pd.DataFrame:
        """The stored customer_features of a month (what the scoring assets read)."""
        from credit_assets.definitions import defs

        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(ENV_DATA_DIR, str(self.data_dir))
            patch.setenv(ENV_DATABASE_URL, self.database_url)
            patch.setenv(ENV_TRACKING_URI, self.tracking_uri)
            patch.setenv(ENV_ARTIFACTS, self.artifacts)
            return defs.load_asset_value("customer_features", partition_key=month, instance=self.instance)

    @contextmanager
    def database(self, owner: str | None = None) -> Iterator[str]:
        """A further empty database on the same server (owned by ``owner`` if given), dropped afterwards."""
        with fresh_database(self.admin_url) as url:
            if owner:
                dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
                with psycopg.connect(self.admin_url, autocommit=True) as admin:
                    admin.execute(
                        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(dbname), sql.Identifier(owner))
                    )
            yield url


@pytest.fixture(scope="package")
def pipeline(postgres_admin_url: str) -> Iterator[Pipeline]:
    root = Path(tempfile.mkdtemp(prefix="credit_assets_hardening_"))
    try:
        data_dir = root / "data"
        generate_sample(data_dir, months=SAMPLE_MONTHS, customers_per_month=CUSTOMERS_PER_MONTH, compress=False)
        with (
            fresh_database(postgres_admin_url) as database_url,
            DagsterInstance.ephemeral(tempdir=str(root / "dagster")) as instance,
        ):
            built = Pipeline(
                root=root,
                data_dir=data_dir,
                database_url=database_url,
                tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
                artifacts=str(root / "artifacts"),
                instance=instance,
                admin_url=postgres_admin_url,
            )
            for month in (*TRAINING_DATA_MONTHS, MODEL_MONTH):
                built.run("monthly_data_job", month)
            built.run("retraining_job", MODEL_MONTH, run_config=FAST_TRAINING)
            built.run("scoring_job", MODEL_MONTH)
            yield built
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- a PostgreSQL role with a password ---------------------------------------------------------------


@dataclass(frozen=True)
class PasswordRole:
    name: str
    password: str

    @property
    def secret(self) -> str:
        """The part of the password that must never appear anywhere (also inside its URL-encoded form)."""
        return self.password.split("@", 1)[1]

    def url(self, database_url: str, *, port: int | None = None) -> str:
        """``database_url`` logged in as this role with its password (URL-encoded as a URL needs)."""
        params = psycopg.conninfo.conninfo_to_dict(database_url)
        host = params.get("host") or "127.0.0.1"
        return (
            f"postgresql://{self.name}:{quote(self.password, safe='')}@{host}:{port or params.get('port') or 5432}"
            f"/{params['dbname']}"
        )


@pytest.fixture(scope="package")
def password_role(postgres_admin_url: str) -> Iterator[PasswordRole]:
    """A login role with a password (dropped afterwards). The server may trust local logins: the tests
    check where the password travels, not that the server verifies it."""
    role = PasswordRole(name=f"credit_writer_{uuid.uuid4().hex[:8]}", password=f"Pw@S3cr3t-{uuid.uuid4().hex}")
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role.name), sql.Literal(role.password))
        )
    try:
        yield role
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role.name)))


def mlflow_texts(tracking_uri: str) -> list[str]:
    """Every param, tag and metric name of every run in the store, and every experiment's name and tags."""
    registry = MlflowModelRegistry(tracking_uri=tracking_uri)
    client = registry.client
    texts = []
    experiments = client.search_experiments(view_type=3)  # ViewType.ALL
    for experiment in experiments:
        texts.append(json.dumps({"name": experiment.name, "tags": experiment.tags}))
    for run in client.search_runs([e.experiment_id for e in experiments], max_results=10_000, run_view_type=3):
        texts.append(json.dumps({"params": run.data.params, "tags": run.data.tags, "metrics": run.data.metrics}))
    return texts
