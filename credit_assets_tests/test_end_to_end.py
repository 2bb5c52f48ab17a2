"""End to end over real months of the CS611 data: Dagster jobs with the real resources (PostgreSQL server,
MLflow store in a temp dir, the real files in ../shared/data/cs611), checked through the tables, the
registry and the Dagster instance."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance, instance_for_test

from credit_assets.definitions import defs
from credit_assets.ml.schema import GRADES
from credit_assets.resources.mlflow import MlflowModelRegistry

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cs611"
DATA_MONTHS = [f"2023-{m:02d}-01" for m in range(1, 13)] + ["2024-01-01", "2024-02-01"]
# Cohort sizes of the real data, graded and all (counted from features_financials).
COHORTS = {"2024-01-01": (485, 381), "2024-02-01": (518, 420)}

pytestmark = [pytest.mark.real_data, pytest.mark.slow]


@pytest.fixture(scope="module")
def pipeline_env(postgres_url_module: str, tmp_path_factory: pytest.TempPathFactory):
    if not (REAL_DATA / "features_attributes.csv.gz").exists():
        pytest.fail(f"The real data is missing: expected the CS611 files in {REAL_DATA}")
    mlflow_dir = tmp_path_factory.mktemp("mlflow")
    env = {
        "CREDIT_ASSETS_DATA_DIR": str(REAL_DATA),
        "CREDIT_ASSETS_DATABASE_URL": postgres_url_module,
        "CREDIT_ASSETS_MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        "CREDIT_ASSETS_MLFLOW_ARTIFACTS": str(mlflow_dir / "artifacts"),
    }
    mp = pytest.MonkeyPatch()
    for key, value in env.items():
        mp.setenv(key, value)
    with instance_for_test() as instance:
        yield env, instance
    mp.undo()


def run_job(instance: DagsterInstance, job_name: str, partition: str, raise_on_error: bool = True):
    result = defs.resolve_job_def(job_name).execute_in_process(
        partition_key=partition, instance=instance, raise_on_error=raise_on_error
    )
    return result


@pytest.fixture(scope="module")
def pipeline_ran(pipeline_env):
    env, instance = pipeline_env
    for month in DATA_MONTHS:
        run_job(instance, "monthly_data_job", month)
    run_job(instance, "retraining_job", "2024-01-01")
    for month in ("2024-01-01", "2024-02-01"):
        run_job(instance, "scoring_job", month)
    return env, instance


def _counts(url: str) -> dict[str, tuple[int, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT snapshot_date::text, count(*), count(DISTINCT customer_id) FROM model_inference GROUP BY 1"
        ).fetchall()
    return {month: (n, distinct) for month, n, distinct in rows}


def test_every_customer_of_each_scored_month_has_one_prediction(pipeline_ran):
    env, _ = pipeline_ran
    counts = _counts(env["CREDIT_ASSETS_DATABASE_URL"])
    assert counts == {month: (size, size) for month, (size, _) in COHORTS.items()}


def test_first_champion_is_registered_and_scores_both_months(pipeline_ran):
    env, _ = pipeline_ran
    registry = MlflowModelRegistry(tracking_uri=env["CREDIT_ASSETS_MLFLOW_TRACKING_URI"])
    champion = registry.current_champion()
    assert champion is not None and champion.champion_from == "2024-01-01"
    assert {v.family for v in registry.all_versions()} == {"lightgbm", "catboost"}
    with psycopg.connect(env["CREDIT_ASSETS_DATABASE_URL"]) as conn:
        used = conn.execute(
            "SELECT DISTINCT model_version, model_name, month_partition FROM model_inference ORDER BY 3"
        ).fetchall()
    assert used == [
        (champion.version, champion.name, "2024_01_01"),
        (champion.version, champion.name, "2024_02_01"),
    ]


def test_monitoring_metrics_are_good_and_well_formed(pipeline_ran):
    env, _ = pipeline_ran
    with psycopg.connect(env["CREDIT_ASSETS_DATABASE_URL"]) as conn:
        rows = conn.execute(
            """SELECT month_date, evaluation_kind, model_role, macro_f1, auc, total_samples, f1_by_grade,
                      predictions_distribution
               FROM model_metrics WHERE model_role = 'champion' ORDER BY month_date, evaluation_kind"""
        ).fetchall()
    by_key = {(r[0], r[1]): r for r in rows}
    assert set(by_key) == {
        ("2024-01-01", "monitoring"),
        ("2024-01-01", "holdout_test"),
        ("2024-02-01", "monitoring"),
    }
    for month in ("2024-01-01", "2024-02-01"):
        _, _, _, macro_f1, auc, total, f1_by_grade, distribution = by_key[(month, "monitoring")]
        assert total == COHORTS[month][1]
        assert float(macro_f1) >= 0.85, f"champion macro F1 on {month} is {macro_f1}"
        assert 0.5 < float(auc) <= 1.0
        assert sorted(f1_by_grade) == sorted(GRADES)
        assert sum(distribution.values()) == total


def test_seed_example_queries_run_unchanged(pipeline_ran):
    env, _ = pipeline_ran
    with psycopg.connect(env["CREDIT_ASSETS_DATABASE_URL"]) as conn:
        latest = conn.execute(
            "SELECT * FROM model_metrics WHERE model_name = 'credit_grade_model' ORDER BY evaluation_date DESC LIMIT 1"
        ).fetchall()
        history = conn.execute(
            "SELECT month_date, accuracy, precision, recall, auc, macro_f1 FROM model_metrics "
            "WHERE model_name = 'credit_grade_model' ORDER BY month_date"
        ).fetchall()
        month = conn.execute(
            "SELECT * FROM model_inference WHERE month_partition = '2024_01_01' AND model_name = 'credit_grade_model'"
        ).fetchall()
        customer = conn.execute(
            "SELECT * FROM model_inference WHERE customer_id = %s ORDER BY snapshot_date DESC", (month[0][1],)
        ).fetchall()
    assert len(latest) == 1 and len(history) >= 3
    assert len(month) == COHORTS["2024-01-01"][0]
    assert len(customer) == 1


def test_rescoring_a_month_replaces_its_rows(pipeline_ran):
    env, instance = pipeline_ran
    before = _counts(env["CREDIT_ASSETS_DATABASE_URL"])
    run_job(instance, "scoring_job", "2024-01-01")
    assert _counts(env["CREDIT_ASSETS_DATABASE_URL"]) == before
