"""A small run of the benchmark's own functions (bench/benchmark.py): what it wrote must be right.

Never its speed: this runs on shared CI machines. It checks that each writer of the write section
stored every row, that values round-trip, and that the month pipeline (child process included) writes
every customer of the month with the scores the models give.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import psycopg
import pytest

from credit_assets.ml.models import load_model, save_model, train_model
from credit_assets.ml.sample_data import generate_sample
from credit_assets.ml.schema import CUSTOMER_ID
from credit_assets.ml.scoring import score_customers
from credit_assets.resources.mlflow import MlflowModelRegistry

BENCH_PATH = Path(__file__).resolve().parents[2] / "bench" / "benchmark.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("credit_assets_benchmark", BENCH_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench = load_bench()


def stored_rows(url: str, customer_ids: list[str]) -> dict[str, tuple]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT customer_id, snapshot_date, predicted_grade, prediction_probability, model_version,"
            " model_family, prob_bad, prob_good, prob_standard, month_partition FROM model_inference"
            " WHERE customer_id = ANY(%s)",
            [customer_ids],
        ).fetchall()
    return {row[0]: row[1:] for row in rows}


def test_write_section_stores_every_row_and_the_values(postgres_url: str) -> None:
    results = bench.Results()
    bench.run_write(postgres_url, 50_000, seed_rows=2_000, to_sql_rows=5_000, rounds=1, results=results)

    for key in ("write_rows_per_s", "copy_ratio", "seed_speedup", "to_sql_speedup"):
        assert results.keys[key] > 0
    assert bench.month_count(postgres_url) == 50_000  # the IO manager's rows are left in place
    frame = bench.inference_frame(50_000)
    sample = frame.iloc[[0, 12_345, 49_999]]
    stored = stored_rows(postgres_url, sample["customer_id"].tolist())
    assert len(stored) == 3
    for row in sample.itertuples(index=False):
        date, grade, probability, version, family, bad, good, standard, month = stored[row.customer_id]
        assert (date, grade, version, family, month) == (
            dt.date(2024, 1, 1),
            row.predicted_grade,
            7,
            "lightgbm",
            "2024_01_01",
        )
        assert probability == decimal.Decimal(str(round(row.prediction_probability, 4))).quantize(
            decimal.Decimal("0.0001")
        )
        assert (bad, good, standard) == (row.prob_bad, row.prob_good, row.prob_standard)  # exact doubles
    with psycopg.connect(postgres_url) as connection:
        duplicates = connection.execute(
            "SELECT count(*) - count(DISTINCT customer_id) FROM model_inference"
        ).fetchone()[0]
    assert duplicates == 0


def test_each_baseline_writes_every_row(postgres_url: str) -> None:
    frame = bench.inference_frame(3_000, seed=4)
    bench.io_manager_write(postgres_url, frame)  # creates the month's table partition
    for writer in (bench.seed_executemany, bench.pandas_to_sql):
        bench.empty_month(postgres_url)
        assert writer(postgres_url, frame) > 0
        assert bench.month_count(postgres_url) == 3_000
    bench.empty_month(postgres_url)
    bench.plain_copy(postgres_url, list(frame.columns), bench.csv_text(postgres_url, frame))
    stored = stored_rows(postgres_url, [frame["customer_id"].iloc[-1]])
    assert stored[frame["customer_id"].iloc[-1]][5] == frame["prob_bad"].iloc[-1]


@pytest.fixture(scope="module")
def small_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("models")
    data = directory / "data"
    months = bench.months_before(bench.BENCH_MONTH, 2)
    generate_sample(data, months=months, customers_per_month=2_000, seed=1, sources=bench.FEATURE_SOURCES)
    frame = pd.concat(bench.month_features(data, months).values(), ignore_index=True)
    return {
        family: save_model(train_model(family, frame, params={"n_estimators": 15}), directory / family)
        for family in ("lightgbm", "catboost")
    }


def test_month_end_to_end_writes_every_customer_with_its_scores(
    postgres_url: str, small_models: dict[str, Path], tmp_path: Path
) -> None:
    generate_sample(
        tmp_path, months=[bench.BENCH_MONTH], customers_per_month=4_000, seed=2, sources=bench.FEATURE_SOURCES
    )

    result = bench.month_end_to_end(postgres_url, tmp_path, small_models, batch_rows=900, threads=2)

    assert result["customers"] == result["inference_rows"] == bench.month_count(postgres_url) == 4_000
    assert result["metrics_rows"] == 2
    features = bench.month_features(tmp_path, [bench.BENCH_MONTH])[bench.BENCH_MONTH]
    expected = score_customers(load_model(small_models["lightgbm"]), features).set_index(CUSTOMER_ID)
    picked = expected.index[[0, 1_000, 3_999]].tolist()
    stored = stored_rows(postgres_url, picked)
    for customer in picked:
        assert stored[customer][1] == expected.loc[customer, "predicted_grade"]
        assert stored[customer][5:8] == tuple(
            expected.loc[customer, ["prob_bad", "prob_good", "prob_standard"]]
        )
    with psycopg.connect(postgres_url) as connection:
        metrics = connection.execute(
            "SELECT model_family, total_samples, macro_f1 FROM model_metrics ORDER BY model_family"
        ).fetchall()
    graded = int(features["grade"].notna().sum())
    assert [(family, samples) for family, samples, _ in metrics] == [
        ("catboost", graded),
        ("lightgbm", graded),
    ]
    assert float(metrics[1][2]) == pytest.approx(result["champion_macro_f1"], abs=1e-4)


def test_month_section_runs_a_child_process_and_reports_its_memory(
    postgres_url: str, small_models: dict[str, Path], tmp_path: Path
) -> None:
    results = bench.Results()
    args = argparse.Namespace(batch_rows=1_500, threads=1, uncompressed=True, dagster_month_sizes="")

    bench.run_month(postgres_url, tmp_path, [3_000], small_models, args, results)

    assert bench.month_count(postgres_url) == 3_000
    assert results.keys["month_3k_rows_per_s"] > 0
    assert 50 < results.keys["peak_rss_mb_3k"] < 24_000


def test_the_dagster_month_scores_every_customer_with_the_champion_retraining_job_promoted(
    postgres_url: str, small_models: dict[str, Path], tmp_path: Path
) -> None:
    results = bench.Results()
    args = argparse.Namespace(
        batch_rows=1_500, threads=1, uncompressed=True, dagster_month_sizes="2500", dagster_model_customers=400
    )

    bench.run_month(postgres_url, tmp_path, [2_500], small_models, args, results)

    assert results.keys["dagster_month_2k_s"] > 0
    assert 50 < results.keys["dagster_peak_rss_mb_2k"] < 24_000
    # What monthly_data_job + scoring_job stored is the champion's word on every customer of the month
    # (the streaming run before it wrote the same month with the benchmark's own models).
    env = bench.dagster_month_env(tmp_path, postgres_url, tmp_path / "unused")
    registry = MlflowModelRegistry(tracking_uri=env["CREDIT_ASSETS_MLFLOW_TRACKING_URI"])
    champion = registry.champion_for_month(bench.BENCH_MONTH.isoformat())
    data = tmp_path / "check"
    generate_sample(  # the month's data again: run_month removed its copy; the generator is deterministic
        data, months=[bench.BENCH_MONTH], customers_per_month=2_500, compress=False, sources=bench.FEATURE_SOURCES
    )
    features = bench.month_features(data, [bench.BENCH_MONTH])[bench.BENCH_MONTH]
    expected = score_customers(registry.load(champion), features).set_index(CUSTOMER_ID)
    stored = stored_rows(postgres_url, expected.index.tolist())
    assert len(stored) == 2_500 == bench.month_count(postgres_url)
    for customer in expected.index:
        assert stored[customer][1] == expected.loc[customer, "predicted_grade"]
        assert stored[customer][3:5] == (champion.version, champion.family)
        assert stored[customer][5:8] == tuple(expected.loc[customer, ["prob_bad", "prob_good", "prob_standard"]])
    with psycopg.connect(postgres_url) as connection:
        monitoring = connection.execute(
            "SELECT model_role, total_samples FROM model_metrics WHERE evaluation_kind = 'monitoring' ORDER BY 1"
        ).fetchall()
    graded = int(features["grade"].notna().sum())
    assert monitoring == [("challenger", graded), ("champion", graded)]


def test_bench_line_and_table() -> None:
    results = bench.Results()
    results.row("write", "copy_ratio", "0.9")
    results.key("copy_ratio", 0.91234)
    results.key("write_rows_per_s", 123456)
    assert results.bench_line() == "BENCH copy_ratio=0.9123 write_rows_per_s=123456"
    assert "copy_ratio" in results.table()
    assert bench.union_length([(0, 2), (1, 3), (5, 6)]) == 4
