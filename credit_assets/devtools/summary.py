"""The short report ``make demo`` ends with, read back from PostgreSQL and MLflow."""

from __future__ import annotations

from collections.abc import Sequence

import mlflow
import psycopg

from credit_assets.resources.mlflow import MlflowModelRegistry


def print_summary(database_url: str, tracking_uri: str, model_months: Sequence[str]) -> None:
    with psycopg.connect(database_url) as conn:
        inference = conn.execute(
            "SELECT count(*), count(DISTINCT snapshot_date), count(DISTINCT model_version) FROM model_inference"
        ).fetchone()
        metrics = conn.execute(
            "SELECT evaluation_kind, count(*) FROM model_metrics GROUP BY evaluation_kind ORDER BY 1"
        ).fetchall()
        champion_f1 = conn.execute(
            """SELECT avg(macro_f1), min(macro_f1), count(*) FROM model_metrics
               WHERE evaluation_kind = 'monitoring' AND model_role = 'champion'
                 AND month_date >= %s AND month_date <= %s""",
            (model_months[0], model_months[-1]),
        ).fetchone()
    registry = MlflowModelRegistry(tracking_uri=tracking_uri)
    champion = registry.current_champion()
    experiment = registry.client.get_experiment_by_name(registry.experiment_name)
    runs = mlflow.MlflowClient(tracking_uri).search_runs([experiment.experiment_id], max_results=50_000)
    versions = registry.all_versions()

    print("\nSummary")
    print(
        f"  model_inference: {inference[0]:,} rows over {inference[1]} months, scored by {inference[2]} model versions"
    )
    for kind, count in metrics:
        print(f"  model_metrics:   {count} rows of kind {kind}")
    if champion is not None:
        print(f"  champion:        {champion.label}, in force from {champion.champion_from}")
    if champion_f1[2]:
        print(
            f"  champion macro F1 by month ({model_months[0]} .. {model_months[-1]}): "
            f"mean {float(champion_f1[0]):.4f}, min {float(champion_f1[1]):.4f} over {champion_f1[2]} months"
        )
    print(
        f"  MLflow:          experiment {registry.experiment_name!r}: {len(runs)} runs, "
        f"{len(versions)} versions of {registry.registered_model_name!r}"
    )
