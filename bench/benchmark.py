"""`make bench`: write, month, training and backfill performance of credit_assets, measured in one run.

Every figure that is compared with another is measured in the same run, on the same machine, against
the same PostgreSQL server (timings on a shared machine are noisy: the ratios are what is checked):

write     one month of N prediction rows into `model_inference` through the project's IO manager (a new
          month, then replacing that month), against row-by-row `executemany` of INSERTs from
          `DataFrame.iterrows()` (psycopg2, the original system's way; on --seed-rows rows, scaled),
          `pandas.DataFrame.to_sql` (SQLAlchemy 2 + psycopg 3) and a plain `COPY ... FROM STDIN` of the
          same rows as CSV text prepared in memory, straight into the month's indexed leaf table (the
          limit), all into the same table;
month     one whole month end to end at each size of --month-sizes, each in its own child process (so
          its peak RSS is its own): read, clean and join the three feature sources, score every customer
          with the champion (LightGBM) and the graded ones with the shadow model (CatBoost), write
          `model_inference` and `model_metrics` (the batch pipeline of credit_assets.ml.streaming); the
          sizes of --dagster-month-sizes also through the Dagster jobs a user runs, monthly_data_job (its
          feature assets) and scoring_job, with the champion retraining_job promoted (whole-month frames
          from step to step, stored by the filesystem IO manager);
train     the `lightgbm_model` and `catboost_model` assets on --train-months months of --train-customers
          customers (Dagster `materialize`, MLflow in a temporary SQLite store): wall time of each asset
          step against a bare `fit()` of the same estimator on the same encoded frame;
backfill  the real data (../shared/data/cs611): `dagster job backfill` of monthly_data_job, retraining_job
          and scoring_job with dagster-daemon, as `make demo` runs them; wall time and the share of it
          spent outside model and database work.

It prints a table and, last, one line `BENCH key=value ...`. The database is a throwaway one it creates
and drops, on the server at CREDIT_ASSETS_BENCH_ADMIN_URL (a superuser URL; default
postgresql://postgres@127.0.0.1:5432/postgres), or on a local cluster it starts when that is unreachable.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

ADMIN_URL_ENV_VAR = "CREDIT_ASSETS_BENCH_ADMIN_URL"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_PREFIX = "bench_credit_assets_"
REAL_DATA_DIR = REPO.parent / "shared" / "data" / "cs611"
BENCH_MONTH = dt.date(2024, 1, 1)
GRADES = ("Bad", "Good", "Standard")
SECTIONS = ("write", "month", "train", "backfill")


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass
class Results:
    """Rows of the printed table and the key=value pairs of the BENCH line."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    keys: dict[str, Any] = field(default_factory=dict)

    def row(self, section: str, what: str, value: str) -> None:
        self.rows.append((section, what, value))
        print(f"  [{section}] {what}: {value}", flush=True)

    def key(self, name: str, value: Any) -> None:
        self.keys[name] = value

    def table(self) -> str:
        widths = [max(len(row[i]) for row in [("section", "measure", "value"), *self.rows]) for i in range(3)]
        lines = [" | ".join(h.ljust(w) for h, w in zip(("section", "measure", "value"), widths, strict=True))]
        lines.append("-+-".join("-" * w for w in widths))
        lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in self.rows]
        return "\n".join(lines)

    def bench_line(self) -> str:
        def fmt(value: Any) -> str:
            if isinstance(value, float):
                return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
            return str(value)

        return "BENCH " + " ".join(f"{name}={fmt(value)}" for name, value in self.keys.items())


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s" if seconds > 0 else "n/a"


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """`with timed() as t: ...` then `t[0]` holds the wall seconds of the block."""
    holder: list[float] = []
    start = time.perf_counter()
    try:
        yield holder
    finally:
        holder.append(time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------
# The throwaway database
# --------------------------------------------------------------------------------------------------


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def admin_server() -> Iterator[str]:
    """A superuser URL: CREDIT_ASSETS_BENCH_ADMIN_URL, the default server, else a local cluster."""
    explicit = os.environ.get(ADMIN_URL_ENV_VAR)
    if explicit:
        if not _reachable(explicit):
            raise SystemExit(f"{ADMIN_URL_ENV_VAR} is set but does not connect")
        yield explicit
        return
    if _reachable(DEFAULT_ADMIN_URL):
        yield DEFAULT_ADMIN_URL
        return
    from credit_assets.devtools.local_postgres import ensure_local_cluster, find_free_port, stop_local_cluster
    from credit_assets.resources.postgres import url_with_database

    state_dir = Path(tempfile.mkdtemp(prefix="credit_assets_bench_pg_"))
    print(f"No server at {DEFAULT_ADMIN_URL}: starting a local cluster in {state_dir}", flush=True)
    try:
        yield url_with_database(ensure_local_cluster(state_dir, find_free_port()), "postgres")
    finally:
        stop_local_cluster(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)


@contextlib.contextmanager
def throwaway_database(admin_url: str) -> Iterator[str]:
    """Create database bench_credit_assets_<random>, yield its URL, drop it WITH (FORCE) afterwards."""
    from credit_assets.resources.postgres import url_with_database

    name = f"{DATABASE_PREFIX}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url_with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --------------------------------------------------------------------------------------------------
# write: IO manager against executemany, to_sql and plain COPY
# --------------------------------------------------------------------------------------------------


def inference_frame(n_rows: int, month: dt.date = BENCH_MONTH, seed: int = 0) -> pd.DataFrame:
    """A month of `model_inference` rows shaped as the model_inference asset builds them."""
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet([2.0, 2.0, 3.0], n_rows)
    numbers = np.arange(n_rows) + 0x10000
    return pd.DataFrame(
        {
            "customer_id": pd.Series(numbers).map("CUS_0x{:x}".format),
            "snapshot_date": month,  # date objects, as the asset writes them
            "predicted_grade": np.asarray(GRADES, dtype=object)[probabilities.argmax(axis=1)],
            "prediction_probability": probabilities.max(axis=1),
            "model_name": "credit_grade_model",
            "month_partition": month.strftime("%Y_%m_%d"),
            "model_version": 7,
            "model_family": "lightgbm",
            "mlflow_run_id": uuid.UUID(int=seed + 1).hex,
            "dagster_run_id": str(uuid.UUID(int=seed + 2)),
            "prob_bad": probabilities[:, 0],
            "prob_good": probabilities[:, 1],
            "prob_standard": probabilities[:, 2],
        }
    )


def io_manager_for(url: str) -> Any:
    from credit_assets.resources.io_managers import PostgresPandasIOManager
    from credit_assets.resources.postgres import PostgresResource

    return PostgresPandasIOManager(postgres=PostgresResource(url=url))


def io_manager_write(url: str, frame: pd.DataFrame, month: dt.date = BENCH_MONTH) -> dict[str, Any]:
    """handle_output of the model_inference asset for `month`, as Dagster calls it; returns metadata."""
    from dagster import MonthlyPartitionsDefinition, build_output_context

    partitions = MonthlyPartitionsDefinition(start_date="2020-01-01")
    with build_output_context(
        asset_key=["model_inference"],
        definition_metadata={"partition_expr": "snapshot_date"},
        partition_key=month.isoformat(),
        asset_partitions_def=partitions,
    ) as context:
        io_manager_for(url).handle_output(context, frame)
        return {key: value.value for key, value in context.get_logged_metadata().items()}


def month_partition(month: dt.date = BENCH_MONTH) -> str:
    from credit_assets.resources.postgres_io.month_partitions import month_partition_name

    return month_partition_name("model_inference", month)


def empty_month(url: str, month: dt.date = BENCH_MONTH) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(month_partition(month))))


def month_count(url: str, month: dt.date = BENCH_MONTH) -> int:
    with psycopg.connect(url) as connection:
        return int(
            connection.execute(
                "SELECT count(*) FROM model_inference WHERE snapshot_date = %s", [month]
            ).fetchone()[0]
        )


def csv_text(url: str, frame: pd.DataFrame) -> list[str]:
    """The rows as COPY CSV text chunks (what the plain COPY baseline sends; prepared before timing)."""
    from credit_assets.resources import io_managers

    with psycopg.connect(url) as connection:
        info = io_managers.describe_table(connection, "public", "model_inference")
    assert info is not None
    prepared = io_managers.prepare_frame(frame, list(frame.columns), info)
    return list(io_managers.copy_text_chunks(prepared, info))


def plain_copy(url: str, columns: list[str], chunks: list[str]) -> float:
    """COPY ... FROM STDIN (FORMAT csv) of prepared text into the month's table, committed; seconds.

    Straight into the leaf table that holds the month's rows, with its indexes (no routing through the
    parent and the month's partition): the fastest plain COPY into the indexed table.
    """
    from credit_assets.resources.postgres_io.month_partitions import month_leaf_name

    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        sql.Identifier(month_leaf_name(month_partition())),
        sql.SQL(", ").join(sql.Identifier(column) for column in columns),
    )
    with psycopg.connect(url) as connection:
        start = time.perf_counter()
        with connection.cursor() as cursor, cursor.copy(statement) as copy:
            for chunk in chunks:
                copy.write(chunk)
        connection.commit()
        return time.perf_counter() - start


def seed_executemany(url: str, frame: pd.DataFrame) -> float:
    """The original system's write: one INSERT per row from iterrows(), psycopg2 executemany; seconds."""
    import psycopg2

    columns = list(frame.columns)
    statement = (
        f"INSERT INTO model_inference ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    )
    connection = psycopg2.connect(url)
    try:
        start = time.perf_counter()
        with connection.cursor() as cursor:
            rows = [tuple(row[column] for column in columns) for _, row in frame.iterrows()]
            cursor.executemany(statement, rows)
        connection.commit()
        return time.perf_counter() - start
    finally:
        connection.close()


def pandas_to_sql(url: str, frame: pd.DataFrame) -> float:
    """pandas.DataFrame.to_sql (append, SQLAlchemy 2 + psycopg 3, pandas' default method); seconds."""
    from sqlalchemy import create_engine

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        start = time.perf_counter()
        frame.to_sql("model_inference", engine, if_exists="append", index=False)
        return time.perf_counter() - start
    finally:
        engine.dispose()


def run_write(url: str, n_rows: int, seed_rows: int, to_sql_rows: int, rounds: int, results: Results) -> None:
    print(f"\n== write: {n_rows:,} prediction rows into model_inference ==", flush=True)
    frame = inference_frame(n_rows)
    columns = list(frame.columns)

    with timed() as first:
        metadata = io_manager_write(url, frame)  # creates the month's table partition
    assert metadata["dagster/row_count"] == n_rows and month_count(url) == n_rows
    chunks = csv_text(url, frame)

    seed_frame = frame.iloc[: min(seed_rows, n_rows)]
    sql_frame = frame.iloc[: min(to_sql_rows, n_rows)]
    io_times: list[float] = []
    copy_times: list[float] = []
    seed_times: list[float] = []
    to_sql_times: list[float] = []
    # Every method once per round, rounds one after the other, best of each kept: load from other users
    # of the machine (which moves a lot within minutes) then weighs on every method alike.
    for _ in range(rounds):
        with timed() as replace:
            metadata = io_manager_write(url, frame)
        if metadata["rows_replaced"] != n_rows or month_count(url) != n_rows:
            raise AssertionError(f"IO manager replace wrote {month_count(url)} rows, expected {n_rows}")
        io_times.append(replace[0])
        empty_month(url)
        copy_times.append(plain_copy(url, columns, chunks))
        if month_count(url) != n_rows:
            raise AssertionError("plain COPY did not write every row")
        empty_month(url)
        seed_times.append(seed_executemany(url, seed_frame))
        if month_count(url) != len(seed_frame):
            raise AssertionError("executemany did not write every row")
        empty_month(url)
        to_sql_times.append(pandas_to_sql(url, sql_frame))
        if month_count(url) != len(sql_frame):
            raise AssertionError("to_sql did not write every row")
        io_manager_write(url, frame)  # the month holds the IO manager's rows again: the next round replaces them
    io_s, copy_s, seed_s, to_sql_s = min(io_times), min(copy_times), min(seed_times), min(to_sql_times)
    seed_rate = len(seed_frame) / seed_s
    to_sql_rate = len(sql_frame) / to_sql_s

    write_rate = n_rows / io_s
    results.row(
        "write", f"IO manager, new month ({n_rows:,} rows)", f"{first[0]:.2f} s ({rate(n_rows, first[0])})"
    )
    results.row(
        "write",
        f"IO manager, replace month (best of {rounds})",
        f"{io_s:.2f} s ({rate(n_rows, io_s)}); all: {', '.join(f'{t:.2f}' for t in io_times)}",
    )
    results.row(
        "write",
        f"plain COPY csv, prepared text (best of {rounds})",
        f"{copy_s:.2f} s ({rate(n_rows, copy_s)}); all: {', '.join(f'{t:.2f}' for t in copy_times)}",
    )
    results.row(
        "write",
        f"executemany from iterrows ({len(seed_frame):,} rows, best of {rounds})",
        f"{seed_s:.2f} s ({seed_rate:,.0f} rows/s; {n_rows / seed_rate:.0f} s scaled to {n_rows:,}); "
        f"all: {', '.join(f'{t:.2f}' for t in seed_times)}",
    )
    results.row(
        "write",
        f"pandas.to_sql ({len(sql_frame):,} rows, best of {rounds})",
        f"{to_sql_s:.2f} s ({to_sql_rate:,.0f} rows/s); all: {', '.join(f'{t:.2f}' for t in to_sql_times)}",
    )
    results.row(
        "write", "copy_ratio (IO manager replace / plain COPY)", f"{io_s / copy_s:.3f} (target <= 1.25)"
    )
    results.row("write", "seed_speedup", f"{write_rate / seed_rate:.1f}x (target >= 25)")
    results.row("write", "to_sql_speedup", f"{write_rate / to_sql_rate:.1f}x (target >= 5)")
    results.key("write_rows", n_rows)
    results.key("write_rows_per_s", round(write_rate))
    results.key("copy_rows_per_s", round(n_rows / copy_s))
    results.key("copy_ratio", io_s / copy_s)
    results.key("seed_rows_per_s", round(seed_rate))
    results.key("seed_speedup", write_rate / seed_rate)
    results.key("to_sql_rows_per_s", round(to_sql_rate))
    results.key("to_sql_speedup", write_rate / to_sql_rate)


# --------------------------------------------------------------------------------------------------
# Sample data and models
# --------------------------------------------------------------------------------------------------

FEATURE_SOURCES = ("attributes", "financials", "clickstream")


def generate(out_dir: Path, months: list[dt.date], customers: int, compress: bool) -> float:
    """The project's sample generator (no loan file: not a model input); seconds."""
    from credit_assets.ml.sample_data import generate_sample

    with timed() as seconds:
        generate_sample(
            out_dir, months=months, customers_per_month=customers, compress=compress, sources=FEATURE_SOURCES
        )
    return seconds[0]


def month_features(data_dir: Path, months: list[dt.date]) -> dict[dt.date, pd.DataFrame]:
    """The feature frame of each month, built as the ingestion and features assets build it."""
    from credit_assets.ml import cleaning
    from credit_assets.ml.features import build_features
    from credit_assets.ml.sources import find_source_file, read_source_months

    cleaners = {
        "attributes": cleaning.clean_attributes,
        "financials": cleaning.clean_financials,
        "clickstream": cleaning.clean_clickstream,
    }
    cleaned: dict[str, dict[dt.date, pd.DataFrame]] = {}
    for source in FEATURE_SOURCES:
        path = find_source_file(data_dir, source)
        raw = read_source_months(path, source, months, allow_empty=source == "clickstream")
        cleaned[source] = {
            month: cleaners[source](frame, source_name=str(path)) for month, frame in raw.items()
        }
        del raw
    return {
        month: build_features(
            cleaned["attributes"][month], cleaned["financials"][month], cleaned["clickstream"][month]
        )
        for month in months
    }


def months_before(month: dt.date, count: int) -> list[dt.date]:
    first = pd.Timestamp(month) - pd.DateOffset(months=count)
    return [(first + pd.DateOffset(months=i)).date() for i in range(count)]


# --------------------------------------------------------------------------------------------------
# train: assets against bare fit()
# --------------------------------------------------------------------------------------------------

TRAINING_PARAMS = {"n_estimators": 300, "learning_rate": 0.05}  # TrainingConfig defaults


def run_train(work: Path, customers: int, n_months: int, results: Results) -> dict[str, Path]:
    """Materialize both training assets for BENCH_MONTH against bare fits; returns the models saved."""
    import dagster as dg

    from credit_assets.assets.training import catboost_model, lightgbm_model
    from credit_assets.ml.encoding import FeatureEncoder
    from credit_assets.ml.models import _CATEGORICAL_OUTPUT, _build_estimator, resolve_params, save_model
    from credit_assets.ml.schema import GRADE
    from credit_assets.ml.split import time_split
    from credit_assets.partitions import data_months
    from credit_assets.resources.mlflow import MlflowModelRegistry

    print(f"\n== train: {n_months} months x {customers:,} customers ==", flush=True)
    months = months_before(BENCH_MONTH, n_months)
    data_dir = work / "train_data"
    generated_s = generate(data_dir, months, customers, compress=True)
    with timed() as built:
        frames = month_features(data_dir, months)
    results.row(
        "train", "sample data", f"{generated_s:.1f} s to generate, {built[0]:.1f} s to read + clean + join"
    )

    @dg.asset(name="customer_features", partitions_def=data_months)
    def stored_features(context) -> pd.DataFrame:  # type: ignore[no-untyped-def]  (local dg: no string annotation)
        return frames[dt.date.fromisoformat(context.partition_key)]

    storage = work / "dagster_storage"
    tracking = work / "mlflow"
    tracking.mkdir(parents=True, exist_ok=True)
    # The code location's own resources (whatever the training assets require), configured from the
    # environment as in a deployment; pickled inputs through the filesystem IO manager.
    os.environ.setdefault("CREDIT_ASSETS_DATA_DIR", str(data_dir))
    os.environ.setdefault("CREDIT_ASSETS_DATABASE_URL", "postgresql://unused@127.0.0.1:1/unused")
    os.environ["CREDIT_ASSETS_MLFLOW_TRACKING_URI"] = f"sqlite:///{tracking / 'mlflow.db'}"
    os.environ["CREDIT_ASSETS_MLFLOW_ARTIFACTS"] = str(tracking / "artifacts")
    from credit_assets.definitions import defs

    resources = {**defs.resources, "io_manager": dg.FilesystemIOManager(base_dir=str(storage))}
    registry = MlflowModelRegistry(
        tracking_uri=os.environ["CREDIT_ASSETS_MLFLOW_TRACKING_URI"],
        artifact_location=os.environ["CREDIT_ASSETS_MLFLOW_ARTIFACTS"],
    )
    instance = dg.DagsterInstance.ephemeral()
    for month in months:  # the upstream partitions, pickled by the filesystem IO manager as in a real run
        dg.materialize(
            [stored_features], partition_key=month.isoformat(), resources=resources, instance=instance
        )

    frame = pd.concat(frames.values(), ignore_index=True)
    train, _ = time_split(frame, holdout_month=months[-1])
    graded = train.loc[train[GRADE].notna()]
    labels = graded[GRADE].astype(object).to_numpy(dtype=str)
    del frame, train

    def bare_fit(family: str) -> float:
        """fit() of the estimator the asset builds, on the frame it encodes, timed alone."""
        params = resolve_params(family, TRAINING_PARAMS, 0)
        encoder = FeatureEncoder(categorical_output=_CATEGORICAL_OUTPUT[family]).fit(graded)
        encoded = encoder.transform(graded)
        estimator = _build_estimator(family, params, encoder)
        with timed() as fitted:
            estimator.fit(encoded, labels)
        return fitted[0]

    def asset_step(asset: Any) -> tuple[float, float]:
        """(step seconds from the event log, materialize wall seconds) of one training asset."""
        with timed() as run_s:
            result = dg.materialize(
                [stored_features, asset],
                selection=[asset],
                partition_key=BENCH_MONTH.isoformat(),
                resources=resources,
                instance=instance,
            )
        if not result.success:
            raise RuntimeError(f"the {asset.key.to_user_string()} asset failed")
        return step_durations(instance, result.run_id)[asset.key.to_user_string()], run_s[0]

    # A B B A: bare LightGBM fit, its asset, the CatBoost asset, its bare fit. Load from other users of
    # the machine that drifts during the run then weighs on both sides alike.
    fit_s: dict[str, float] = {}
    step_s: dict[str, float] = {}
    wall_s: dict[str, float] = {}
    fit_s["lightgbm"] = bare_fit("lightgbm")
    step_s["lightgbm_model"], wall_s["lightgbm"] = asset_step(lightgbm_model)
    step_s["catboost_model"], wall_s["catboost"] = asset_step(catboost_model)
    fit_s["catboost"] = bare_fit("catboost")

    asset_total = step_s["lightgbm_model"] + step_s["catboost_model"]
    fit_total = fit_s["lightgbm"] + fit_s["catboost"]
    for family in ("lightgbm", "catboost"):
        asset = step_s[f"{family}_model"]
        results.row(
            "train",
            f"{family}: asset step vs bare fit() ({len(graded):,} graded rows)",
            f"{asset:.1f} s vs {fit_s[family]:.1f} s = {asset / fit_s[family]:.3f}",
        )
    results.row(
        "train", "materialize wall, lightgbm / catboost", f"{wall_s['lightgbm']:.1f} s / {wall_s['catboost']:.1f} s"
    )
    results.row(
        "train",
        "train_overhead_ratio (asset steps / bare fits)",
        f"{asset_total / fit_total:.3f} (target <= 1.2)",
    )
    results.key("train_rows", len(graded))
    results.key("train_asset_s", asset_total)
    results.key("train_fit_s", fit_total)
    results.key("train_overhead_ratio", asset_total / fit_total)

    saved = {}
    for version in registry.all_versions():
        saved[version.family] = save_model(registry.load(version), work / "models" / version.family)
    import mlflow

    while mlflow.active_run() is not None:  # a parent run left open would be ended at exit, store gone
        mlflow.end_run()
    return saved


def step_durations(instance: Any, run_id: str) -> dict[str, float]:
    """Seconds from STEP_START to STEP_SUCCESS of each step of a run, from the instance's event log."""
    from dagster import DagsterEventType

    starts: dict[str, float] = {}
    durations: dict[str, float] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            starts[event.step_key] = record.timestamp
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
            durations[event.step_key] = record.timestamp - starts[event.step_key]
    return durations


def quick_models(work: Path, customers: int = 5_000) -> dict[str, Path]:
    """The month runs' models: both families with the training assets' parameters on 12 small months.

    300 boosting rounds each, as the assets train them: what scoring costs depends on the number and
    depth of the trees, which the training rows barely change (LightGBM's 31 leaves per tree are
    reached from a few thousand rows on), so the month runs need not wait for the train section.
    """
    from credit_assets.ml.models import save_model, train_model
    from credit_assets.ml.split import time_split

    months = months_before(BENCH_MONTH, 12)
    data_dir = work / "model_data"
    generate(data_dir, months, customers, compress=False)
    frame = pd.concat(month_features(data_dir, months).values(), ignore_index=True)
    train, _ = time_split(frame, holdout_month=months[-1])
    return {
        family: save_model(train_model(family, train, params=TRAINING_PARAMS), work / "models" / family)
        for family in ("lightgbm", "catboost")
    }


# --------------------------------------------------------------------------------------------------
# month: one whole month end to end, in a child process per size
# --------------------------------------------------------------------------------------------------


def month_end_to_end(
    url: str,
    data_dir: Path,
    models: dict[str, Path],
    month: dt.date = BENCH_MONTH,
    *,
    batch_rows: int = 250_000,
    threads: int | None = None,
    spool_dir: Path | None = None,
) -> dict[str, Any]:
    """Read, clean, join, score (champion LightGBM, shadow CatBoost) and write one month; timings.

    The pipeline of credit_assets.ml.streaming with the IO manager's PartitionWriter: memory follows
    the batch, not the month.
    """
    from credit_assets.ml.models import load_model
    from credit_assets.ml.scoring import inference_rows
    from credit_assets.ml.streaming import iter_feature_batches, score_month
    from credit_assets.resources.io_managers import PartitionWindow

    start = time.perf_counter()
    champion = load_model(models["lightgbm"])  # loaded once per run, used for every chunk
    shadow = load_model(models["catboost"])
    manager = io_manager_for(url)
    window = PartitionWindow(
        dt.datetime.combine(month, dt.time()),
        dt.datetime.combine((pd.Timestamp(month) + pd.DateOffset(months=1)).date(), dt.time()),
    )
    lineage = {
        "model_name": "credit_grade_model",
        "month_partition": month.strftime("%Y_%m_%d"),
        "model_version": 1,
        "model_family": "lightgbm",
        "mlflow_run_id": "bench",
        "dagster_run_id": "bench",
    }
    timings = {"features": 0.0, "score": 0.0, "spool": 0.0}
    with manager.partition_writer(
        "model_inference", partition_expr="snapshot_date", window=window, spool_dir=spool_dir
    ) as writer:

        def write(scores: pd.DataFrame) -> None:
            began = time.perf_counter()
            writer.add(inference_rows(scores, lineage))
            timings["spool"] += time.perf_counter() - began

        def batches() -> Iterator[pd.DataFrame]:
            iterator = iter_feature_batches(data_dir, month, batch_rows=batch_rows, spill_dir=spool_dir)
            while True:
                began = time.perf_counter()
                try:
                    batch = next(iterator)
                except StopIteration:
                    timings["features"] += time.perf_counter() - began
                    return
                timings["features"] += time.perf_counter() - began
                yield batch

        began = time.perf_counter()
        scoring = score_month(batches(), champion, write, shadow=shadow, threads=threads)
        timings["score"] = time.perf_counter() - began - timings["features"] - timings["spool"]
        began = time.perf_counter()
        inference_metadata = writer.commit()
        timings["write_inference"] = time.perf_counter() - began

    metrics_rows = []
    for family, metrics in (("lightgbm", scoring.champion_metrics), ("catboost", scoring.shadow_metrics)):
        assert metrics is not None
        metrics_rows.append(
            {
                "month_date": month.isoformat(),
                "model_name": "credit_grade_model",
                "model_version": 1 if family == "lightgbm" else 2,
                "model_family": family,
                "model_role": "champion" if family == "lightgbm" else "challenger",
                "evaluation_kind": "monitoring",
                "evaluated_month": month,
                **{
                    key: metrics[key]
                    for key in ("accuracy", "precision", "recall", "auc", "macro_f1", "weighted_f1")
                },
                "total_samples": metrics["total_samples"],
                "f1_by_grade": metrics["f1_by_grade"],
                "predictions_distribution": metrics["predictions_distribution"],
                "mlflow_run_id": "bench",
                "dagster_run_id": "bench",
            }
        )
    began = time.perf_counter()
    with manager.partition_writer("model_metrics", partition_expr="month_date", window=window) as writer:
        writer.add(pd.DataFrame(metrics_rows))
        metrics_metadata = writer.commit()
    timings["write_metrics"] = time.perf_counter() - began
    return {
        "customers": scoring.customers,
        "graded": scoring.graded,
        "inference_rows": inference_metadata["dagster/row_count"],
        "metrics_rows": metrics_metadata["dagster/row_count"],
        "champion_macro_f1": scoring.champion_metrics["macro_f1"],
        "shadow_macro_f1": scoring.shadow_metrics["macro_f1"] if scoring.shadow_metrics else None,
        "wall_s": time.perf_counter() - start,
        **{f"{name}_s": value for name, value in timings.items()},
    }


def child_month(arguments: dict[str, Any]) -> None:
    """Entry point of the child process: one month, then its own peak RSS, as JSON on the last line."""
    result = month_end_to_end(
        arguments["url"],
        Path(arguments["data_dir"]),
        {family: Path(path) for family, path in arguments["models"].items()},
        batch_rows=arguments["batch_rows"],
        threads=arguments["threads"],
        spool_dir=Path(arguments["spool_dir"]) if arguments.get("spool_dir") else None,
    )
    result["peak_rss_mb"] = peak_rss_mb()
    print("CHILD_RESULT " + json.dumps(result), flush=True)


def peak_rss_mb() -> float:
    """Peak resident memory of this process image, in MiB.

    VmHWM of /proc/self/status: getrusage's ru_maxrss is no good in a child started by fork + exec,
    since Linux carries the forked parent's peak over the exec (so a child of a large parent reports
    the parent's size).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: best effort


def run_month(
    url: str,
    work: Path,
    sizes: list[int],
    models: dict[str, Path],
    args: argparse.Namespace,
    results: Results,
) -> None:
    dagster_sizes = {int(size) for size in args.dagster_month_sizes.split(",") if size}
    for size in sizes:
        print(f"\n== month: {size:,} customers end to end ==", flush=True)
        data_dir = work / f"month_{size}"
        generated_s = generate(data_dir, [BENCH_MONTH], size, compress=not args.uncompressed)
        child_arguments = {
            "url": url,
            "data_dir": str(data_dir),
            "models": {family: str(path) for family, path in models.items()},
            "batch_rows": args.batch_rows,
            "threads": args.threads,
            "spool_dir": str(work),
        }
        process = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child-month", json.dumps(child_arguments)],
            capture_output=True,
            text=True,
        )
        lines = [line for line in process.stdout.splitlines() if line.startswith("CHILD_RESULT ")]
        if process.returncode != 0 or not lines:
            sys.stderr.write(process.stdout[-5000:] + process.stderr[-5000:])
            raise RuntimeError(f"the month run of {size:,} customers failed (exit {process.returncode})")
        result = json.loads(lines[-1].removeprefix("CHILD_RESULT "))
        if result["inference_rows"] != size or month_count(url) != size or result["customers"] != size:
            raise AssertionError(
                f"month of {size:,}: wrote {result['inference_rows']} rows, counted {month_count(url)}"
            )
        label = f"{size / 1e6:g}m" if size >= 1_000_000 else f"{size // 1000}k"
        results.row(
            "month",
            f"{size:,} customers: wall (read+clean+join / score / spool / write)",
            f"{result['wall_s']:.1f} s ({result['features_s']:.1f} / {result['score_s']:.1f} / "
            f"{result['spool_s']:.1f} / {result['write_inference_s'] + result['write_metrics_s']:.1f}); "
            f"{rate(size, result['wall_s'])}; "
            f"data generated in {generated_s:.0f} s",
        )
        results.row(
            "month", f"{size:,} customers: peak RSS of the process", f"{result['peak_rss_mb']:.0f} MB"
        )
        results.row(
            "month",
            f"{size:,} customers: macro F1 champion / shadow",
            f"{result['champion_macro_f1']:.4f} / {result['shadow_macro_f1']:.4f} on {result['graded']:,} graded",
        )
        results.key(f"month_{label}_s", result["wall_s"])
        results.key(f"month_{label}_rows_per_s", round(size / result["wall_s"]))
        results.key(f"peak_rss_mb_{label}", round(result["peak_rss_mb"]))
        if size in dagster_sizes:
            run_dagster_month(url, work, size, data_dir, results, args.dagster_model_customers)
        shutil.rmtree(data_dir, ignore_errors=True)
    if "peak_rss_mb_1m" in results.keys and "peak_rss_mb_5m" in results.keys:
        ratio = results.keys["peak_rss_mb_5m"] / results.keys["peak_rss_mb_1m"]
        results.row("month", "peak RSS 5M / 1M", f"{ratio:.2f} (target <= 1.5; 1M target <= 3000 MB)")
        results.key("rss_ratio_5m_1m", ratio)


# --------------------------------------------------------------------------------------------------
# month through the Dagster jobs: what a user's run of monthly_data_job + scoring_job costs
# --------------------------------------------------------------------------------------------------

FEATURE_ASSETS = ("customer_attributes", "customer_financials", "customer_clickstream", "customer_features")


def dagster_month_env(work: Path, url: str, data_dir: Path) -> dict[str, str]:
    """The environment a deployment gives the code location, pointed at this run's scratch stores."""
    home = work / "dagster_month_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    tracking = work / "dagster_month_mlflow"
    tracking.mkdir(parents=True, exist_ok=True)
    return {
        "DAGSTER_HOME": str(home),
        "CREDIT_ASSETS_DATA_DIR": str(data_dir),
        "CREDIT_ASSETS_DATABASE_URL": url,
        "CREDIT_ASSETS_MLFLOW_TRACKING_URI": f"sqlite:///{tracking / 'mlflow.db'}",
        "CREDIT_ASSETS_MLFLOW_ARTIFACTS": str(tracking / "artifacts"),
    }


def run_dagster_child(phase: str, env: dict[str, str]) -> dict[str, Any]:
    """One phase of the Dagster month in a fresh process (its own peak RSS, its own environment)."""
    process = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child-dagster", phase],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith("CHILD_RESULT ")]
    if process.returncode != 0 or not lines:
        sys.stderr.write(process.stdout[-5000:] + process.stderr[-5000:])
        raise RuntimeError(f"the Dagster month phase {phase!r} failed (exit {process.returncode})")
    return json.loads(lines[-1].removeprefix("CHILD_RESULT "))


def child_dagster(phase: str) -> None:
    """Child entry point. "models": the data months of the training window and retraining_job for
    BENCH_MONTH (a champion in force, as in production). "data": monthly_data_job (its feature assets)
    for BENCH_MONTH; "scoring": scoring_job for it. Each run in its own process, as the daemon runs them."""
    from dagster import AssetKey, DagsterInstance

    from credit_assets.definitions import defs

    instance = DagsterInstance.get()  # DAGSTER_HOME: shared by both phases
    data_job = defs.resolve_job_def("monthly_data_job")
    features_only = [AssetKey(name) for name in FEATURE_ASSETS]  # the benchmark's data has no loan file

    def run(job: Any, month: dt.date, **kwargs: Any) -> Any:
        result = job.execute_in_process(
            partition_key=month.isoformat(), instance=instance, raise_on_error=False, **kwargs
        )
        if not result.success:
            raise RuntimeError(f"{job.name} failed for {month}")
        return result

    result: dict[str, Any] = {}
    start = time.perf_counter()
    if phase == "models":
        for month in months_before(BENCH_MONTH, 12):
            run(data_job, month, asset_selection=features_only)
        run(defs.resolve_job_def("retraining_job"), BENCH_MONTH)
    else:
        job = data_job if phase == "data" else defs.resolve_job_def("scoring_job")
        done = run(job, BENCH_MONTH, asset_selection=features_only if phase == "data" else None)
        result["steps_s"] = step_durations(instance, done.run_id)
    result["run_s"] = time.perf_counter() - start
    result["peak_rss_mb"] = peak_rss_mb()
    print("CHILD_RESULT " + json.dumps(result), flush=True)


def run_dagster_month(
    url: str, work: Path, size: int, data_dir: Path, results: Results, model_customers: int = 5_000
) -> None:
    """monthly_data_job + scoring_job of one month of `size` customers, as a user's run does them.

    The champion in force is trained first, once per benchmark run, by retraining_job on 12 months of
    `model_customers` customers (scoring cost depends on the trees, not on the rows that grew them).
    """
    print(f"\n== month through the Dagster jobs: {size:,} customers ==", flush=True)
    env = dagster_month_env(work, url, work / "dagster_model_data")
    if not (work / "dagster_model_data").exists():  # once per benchmark run: a champion for BENCH_MONTH
        generate(work / "dagster_model_data", months_before(BENCH_MONTH, 12), model_customers, compress=False)
        run_dagster_child("models", env)
    month_env = {**env, "CREDIT_ASSETS_DATA_DIR": str(data_dir)}
    started = time.perf_counter()
    data, scoring = run_dagster_child("data", month_env), run_dagster_child("scoring", month_env)
    wall_s = time.perf_counter() - started  # both processes, start-up and imports included
    with psycopg.connect(url) as connection:  # the batch run before wrote the same month as dagster_run_id 'bench'
        inference_rows = connection.execute(
            "SELECT count(*) FROM model_inference WHERE snapshot_date = %s AND dagster_run_id <> 'bench'",
            (BENCH_MONTH,),
        ).fetchone()[0]
        metrics_rows = connection.execute(
            "SELECT count(*) FROM model_metrics WHERE month_date = %s AND evaluation_kind = 'monitoring'"
            " AND dagster_run_id <> 'bench'",
            (BENCH_MONTH.isoformat(),),
        ).fetchone()[0]
    if inference_rows != size or metrics_rows != 2:
        raise AssertionError(
            f"Dagster month of {size:,}: {inference_rows} model_inference rows, {metrics_rows} monitoring rows"
        )
    steps = {**data["steps_s"], **scoring["steps_s"]}
    label = f"{size / 1e6:g}m" if size >= 1_000_000 else f"{size // 1000}k"
    ingestion = sum(steps[name] for name in FEATURE_ASSETS[:3])
    results.row(
        "month",
        f"{size:,} customers, Dagster jobs: wall (ingest / features / model_inference / model_metrics)",
        f"{wall_s:.1f} s ({ingestion:.1f} / {steps['customer_features']:.1f} / "
        f"{steps['model_inference']:.1f} / {steps['model_metrics']:.1f}); {rate(size, wall_s)}",
    )
    peak = max(data["peak_rss_mb"], scoring["peak_rss_mb"])
    results.row(
        "month",
        f"{size:,} customers, Dagster jobs: peak RSS of the run process, data / scoring",
        f"{data['peak_rss_mb']:.0f} MB / {scoring['peak_rss_mb']:.0f} MB",
    )
    results.key(f"dagster_month_{label}_s", wall_s)
    results.key(f"dagster_peak_rss_mb_{label}", round(peak))


# --------------------------------------------------------------------------------------------------
# backfill: the real data through dagster-daemon and `dagster job backfill`
# --------------------------------------------------------------------------------------------------

MODEL_STEPS = {
    "lightgbm_model",
    "catboost_model",
    "challenger_model",
    "champion_model",
    "model_inference",
    "model_metrics",
}


def run_backfill(url: str, work: Path, data_dir: Path, results: Results) -> None:
    from credit_assets.devtools import demo

    print(f"\n== backfill: real data in {data_dir} ==", flush=True)
    if (
        not (data_dir / "features_attributes.csv.gz").exists()
        and not (data_dir / "features_attributes.csv").exists()
    ):
        raise SystemExit(f"no real data in {data_dir}: pass --real-data or --sections without backfill")
    state = work / "backfill"
    dagster_home = state / "dagster"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(demo.DAGSTER_YAML)
    (state / "mlflow").mkdir()
    settings = {
        "CREDIT_ASSETS_DATA_DIR": str(data_dir),
        "CREDIT_ASSETS_DATABASE_URL": url,
        "CREDIT_ASSETS_MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlflow' / 'mlflow.db'}",
        "CREDIT_ASSETS_MLFLOW_ARTIFACTS": str(state / "mlflow" / "artifacts"),
        "DAGSTER_HOME": str(dagster_home),
    }
    saved_environment = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    env = {**os.environ, **settings}
    months = demo.months_of(data_dir)
    from credit_assets.partitions import FIRST_MODEL_MONTH

    model_months = [month for month in months if month >= FIRST_MODEL_MONTH]
    # The CLIs read .env from their working directory: run them from the state directory, not the repo.
    daemon = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=state,
        env=env,
        stdout=(state / "daemon.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    phases: dict[str, float] = {}
    backfill_ids: list[str] = []
    try:
        start = time.time()
        for job, first, last, count in (
            ("monthly_data_job", months[0], months[-1], len(months)),
            ("retraining_job", model_months[0], model_months[-1], len(model_months)),
            ("scoring_job", model_months[0], model_months[-1], len(model_months)),
        ):
            began = time.perf_counter()
            backfill_id = submit_backfill(job, first, last, env, state)
            statuses = demo.wait_for_backfill(backfill_id, count)
            if job == "retraining_job":
                problems = demo.failed_outside_gate(backfill_id)
                if problems:
                    raise RuntimeError("retraining runs failed:\n" + "\n".join(problems))
            elif set(statuses) != {"SUCCESS"}:
                raise RuntimeError(f"{job} backfill had failed runs: {statuses}")
            phases[job] = time.perf_counter() - began
            backfill_ids.append(backfill_id)
        wall = time.time() - start
        end = time.time()
    finally:
        demo.stop_daemon(daemon)
    shares = backfill_shares(backfill_ids, start, end)
    for name, value in saved_environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    with psycopg.connect(url) as connection:
        inference = connection.execute(
            "SELECT count(DISTINCT snapshot_date), count(*) FROM model_inference"
        ).fetchone()
    if inference[0] != len(model_months):
        raise AssertionError(f"model_inference holds {inference[0]} months, expected {len(model_months)}")
    results.row(
        "backfill",
        f"real data: {len(months)} data months, {len(model_months)} model months (wall)",
        f"{wall:.0f} s (" + ", ".join(f"{job} {seconds:.0f} s" for job, seconds in phases.items()) + ")",
    )
    results.row("backfill", "model_inference rows written", f"{inference[1]:,} in {inference[0]} months")
    results.row(
        "backfill",
        "share of wall time in model + DB steps / other steps / outside steps",
        f"{shares['model_db']:.0%} / {shares['other_steps']:.0%} / {shares['outside_steps']:.0%}",
    )
    results.row(
        "backfill",
        "share outside model and DB work",
        f"{1 - shares['model_db']:.0%} (runs: {shares['runs']})",
    )
    results.key("backfill_real_s", wall)
    results.key("backfill_outside_model_db_share", 1 - shares["model_db"])


def submit_backfill(job: str, first: str, last: str, env: dict[str, str], cwd: Path) -> str:
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        before = {b.backfill_id for b in instance.get_backfills()}
    command = [
        str(Path(sys.executable).with_name("dagster")), "job", "backfill", "-w", str(REPO / "workspace.yaml"),
        "-j", job, "--from", first, "--to", last, "--noprompt",
    ]  # fmt: skip
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    with DagsterInstance.get() as instance:
        new = [b for b in instance.get_backfills() if b.backfill_id not in before]
    if len(new) != 1:
        raise RuntimeError(f"expected one new backfill for {job}, found {len(new)}")
    return new[0].backfill_id


def backfill_shares(backfill_ids: list[str], start: float, end: float) -> dict[str, Any]:
    """Share of [start, end] covered by model/DB steps, by other steps, and by no step at all.

    Runs overlap (two at a time), so shares are of the union of the steps' time intervals.
    """
    from dagster import DagsterEventType, DagsterInstance, RunsFilter

    model_db: list[tuple[float, float]] = []
    other: list[tuple[float, float]] = []
    runs = 0
    with DagsterInstance.get() as instance:
        for backfill_id in backfill_ids:
            for run in instance.get_runs(filters=RunsFilter(tags={"dagster/backfill": backfill_id})):
                runs += 1
                starts: dict[str, float] = {}
                for record in instance.all_logs(run.run_id):
                    event = record.dagster_event
                    if event is None or event.step_key is None:
                        continue
                    if event.event_type == DagsterEventType.STEP_START:
                        starts[event.step_key] = record.timestamp
                    elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
                        interval = (starts.get(event.step_key, record.timestamp), record.timestamp)
                        (model_db if event.step_key in MODEL_STEPS else other).append(interval)
    covered_model_db = union_length(model_db)
    covered_any = union_length(model_db + other)
    wall = end - start
    return {
        "model_db": covered_model_db / wall,
        "other_steps": (covered_any - covered_model_db) / wall,
        "outside_steps": 1 - covered_any / wall,
        "runs": runs,
    }


def union_length(intervals: list[tuple[float, float]]) -> float:
    total, current_start, current_end = 0.0, None, None
    for low, high in sorted(intervals):
        if current_end is None or low > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = low, high
        else:
            current_end = max(current_end, high)
    if current_end is not None:
        total += current_end - current_start
    return total


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="prediction rows of the write section")
    parser.add_argument(
        "--seed-rows", type=int, default=100_000, help="rows of the executemany baseline (scaled)"
    )
    parser.add_argument(
        "--to-sql-rows", type=int, default=None, help="rows of the to_sql baseline (default --rows)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved IO manager / plain COPY rounds (best kept)"
    )
    parser.add_argument(
        "--month-sizes", default="1000000,5000000", help="customers per month of the month runs"
    )
    parser.add_argument(
        "--dagster-month-sizes",
        default="1000000",
        help="of --month-sizes, those also run through monthly_data_job + scoring_job ('' for none)",
    )
    parser.add_argument(
        "--dagster-model-customers",
        type=int,
        default=5_000,
        help="customers per month of the 12 months retraining_job trains the Dagster month's champion on",
    )
    parser.add_argument(
        "--batch-rows", type=int, default=250_000, help="customers per batch in the month runs"
    )
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="prediction threads of the month runs"
    )
    parser.add_argument("--uncompressed", action="store_true", help="month runs read .csv instead of .csv.gz")
    parser.add_argument("--train-customers", type=int, default=100_000, help="customers per training month")
    parser.add_argument("--train-months", type=int, default=12, help="training window in months")
    parser.add_argument("--real-data", type=Path, default=REAL_DATA_DIR, help="directory of the real data")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="scratch directory (default: a temporary one)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes (50k rows, 100k/300k months, 12 x 5k training): a smoke run",
    )
    parser.add_argument("--child-month", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-dagster", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.seed_rows, args.rounds = 50_000, 10_000, 1
        args.month_sizes, args.batch_rows, args.dagster_month_sizes = "100000,300000", 50_000, "100000"
        args.train_customers = 5_000
    if args.to_sql_rows is None:
        args.to_sql_rows = args.rows
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_month:
        child_month(json.loads(args.child_month))
        return 0
    if args.child_dagster:
        child_dagster(args.child_dagster)
        return 0
    sections = args.sections.split(",")
    results = Results()
    started = time.perf_counter()
    machine = f"{os.cpu_count()} cores, {_memory_gib():.0f} GiB"
    print(f"credit_assets benchmark on {machine}; sections: {', '.join(sections)}", flush=True)
    with contextlib.ExitStack() as stack:
        admin_url = stack.enter_context(admin_server())
        with psycopg.connect(admin_url) as connection:
            server = connection.execute("SHOW server_version").fetchone()[0]
        url = stack.enter_context(throwaway_database(admin_url))
        if args.work_dir is not None:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=args.work_dir)))
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="credit_assets_bench_")))
        results.row("machine", "cores, memory, PostgreSQL", f"{machine}, PostgreSQL {server}")

        if "write" in sections:
            run_write(url, args.rows, args.seed_rows, args.to_sql_rows, args.rounds, results)
        if "month" in sections:
            sizes = [int(size) for size in args.month_sizes.split(",") if size]
            run_month(url, work, sizes, quick_models(work), args, results)
        if "train" in sections:
            run_train(work, args.train_customers, args.train_months, results)
        if "backfill" in sections:
            run_backfill(url, work, args.real_data, results)
    results.key("total_s", time.perf_counter() - started)
    print("\n" + results.table(), flush=True)
    print(results.bench_line(), flush=True)
    return 0


def _memory_gib() -> float:
    try:
        import psutil

        return psutil.virtual_memory().total / 2**30
    except ImportError:  # pragma: no cover - psutil is pinned
        return float("nan")


if __name__ == "__main__":
    sys.exit(main())
