"""Champion/challenger through real Dagster runs: the gate both ways, an old month's retraining never
moving the alias, re-scoring an old month with the model that was in force then, and the table checks
failing on a bad partition and only on it."""

from __future__ import annotations

import pytest

from credit_assets.definitions import defs
from credit_assets_tests.assets.conftest import SmallWorld, training_config

WEAK = training_config(n_estimators=8, learning_rate=0.05)
USELESS = training_config(n_estimators=1, learning_rate=1e-6)
STRONG = training_config(n_estimators=200, learning_rate=0.1)


def gate(result) -> tuple[bool, dict]:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "challenger_beats_champion"]
    return evaluation.passed, {k: v.value for k, v in evaluation.metadata.items()}


@pytest.fixture(scope="module")
def history(small_world: SmallWorld) -> dict:
    """Four retraining runs in the order a team would meet them, recorded for the tests below."""
    registry = small_world.registry
    out = {}
    out["first"] = small_world.run("retraining_job", "2024-01-01", WEAK)
    out["champion_after_first"] = registry.current_champion()
    out["worse"] = small_world.run("retraining_job", "2024-02-01", USELESS)
    out["champion_after_worse"] = registry.current_champion()
    out["better"] = small_world.run("retraining_job", "2024-03-01", STRONG)
    out["champion_after_better"] = registry.current_champion()
    out["old_month"] = small_world.run("retraining_job", "2024-01-01", STRONG)
    out["champion_after_old_month"] = registry.current_champion()
    out["versions"] = registry.all_versions()
    return out


def test_first_model_becomes_champion_without_a_contest(history):
    assert history["first"].success
    passed, metadata = gate(history["first"])
    assert passed and metadata["champion_version"] is None
    assert history["champion_after_first"].champion_from == "2024-01-01"


def test_a_worse_challenger_is_stopped_at_the_gate_and_stays_registered(history):
    result = history["worse"]
    assert not result.success  # the blocking check failed: champion_model did not run
    passed, metadata = gate(result)
    assert not passed
    assert metadata["challenger_macro_f1"] <= metadata["champion_macro_f1"]
    assert history["champion_after_worse"] == history["champion_after_first"]
    trained_for_february = [v for v in history["versions"] if v.trained_for_month == "2024-02-01"]
    assert {v.family for v in trained_for_february} == {"lightgbm", "catboost"}
    assert all(v.champion_from is None for v in trained_for_february)


def test_a_better_challenger_is_promoted_from_its_month(history):
    assert history["better"].success
    passed, metadata = gate(history["better"])
    assert passed and metadata["challenger_macro_f1"] > metadata["champion_macro_f1"]
    champion = history["champion_after_better"]
    assert champion.champion_from == "2024-03-01" and champion.trained_for_month == "2024-03-01"
    assert champion.version != history["champion_after_first"].version


def test_retraining_an_old_month_never_rolls_the_champion_back(history):
    assert not history["old_month"].success
    passed, _ = gate(history["old_month"])
    assert not passed
    assert history["champion_after_old_month"] == history["champion_after_better"]


def test_rescoring_an_old_month_uses_the_model_in_force_then(small_world: SmallWorld, history):
    for month in ("2024-02-01", "2024-03-01"):
        assert small_world.run("scoring_job", month).success
    used = dict(small_world.query("SELECT DISTINCT month_partition, model_version FROM model_inference"))
    assert used == {
        "2024_02_01": history["champion_after_first"].version,
        "2024_03_01": history["champion_after_better"].version,
    }
    assert small_world.registry.current_champion() == history["champion_after_better"]
    # One monitoring row per family each month, however many versions were trained: in February the champion
    # (from January) speaks for its family and only the other family's newest version is measured in shadow.
    monitoring = small_world.query(
        "SELECT month_date, count(*), count(DISTINCT model_family) FROM model_metrics "
        "WHERE evaluation_kind = 'monitoring' GROUP BY 1 ORDER BY 1"
    )
    assert monitoring == [("2024-02-01", 2, 2), ("2024-03-01", 2, 2)]


def test_prediction_threads_change_how_fast_a_month_is_scored_not_what_is_written(
    small_world: SmallWorld, history
):
    def scored_with(threads: int) -> tuple[int, list[tuple]]:
        config = {"config": {"prediction_threads": threads}}
        run_config = {"ops": {"model_inference": config, "model_metrics": config}}
        result = small_world.run("scoring_job", "2024-03-01", run_config)
        assert result.success
        [materialization] = result.asset_materializations_for_node("model_inference")
        rows = small_world.query(
            "SELECT customer_id, predicted_grade, prob_bad, prob_good, prob_standard FROM model_inference "
            "WHERE snapshot_date = '2024-03-01' ORDER BY customer_id"
        )
        return materialization.metadata["prediction_threads"].value, rows

    one_thread, rows_one_thread = scored_with(1)
    two_threads, rows_two_threads = scored_with(2)
    assert (one_thread, two_threads) == (1, 2)
    assert len(rows_one_thread) > 0 and rows_one_thread == rows_two_threads
    refused = small_world.run(
        "scoring_job", "2024-03-01", {"ops": {"model_inference": {"config": {"prediction_threads": -1}}}}
    )
    [failure] = refused.get_step_failure_events()
    assert failure.step_key == "model_inference"
    assert "prediction_threads" in failure.event_specific_data.error.to_string()
    stored = small_world.query(
        "SELECT customer_id, predicted_grade, prob_bad, prob_good, prob_standard FROM model_inference "
        "WHERE snapshot_date = '2024-03-01' ORDER BY customer_id"
    )
    assert stored == rows_two_threads  # the refused run left the month as it was


def test_table_checks_fail_on_a_bad_partition_and_only_on_it(small_world: SmallWorld, history):
    scoring_job = defs.resolve_job_def("scoring_job")
    table_checks = {key for key in scoring_job.asset_layer.asset_graph.asset_check_keys}
    checks = scoring_job.get_subset(asset_selection=set(), asset_check_selection=table_checks)

    def evaluate(month: str) -> dict[str, bool]:
        result = checks.execute_in_process(partition_key=month, instance=small_world.instance, raise_on_error=False)
        return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}

    # Both months were just scored (test above) or are scored here: all checks pass.
    small_world.run("scoring_job", "2024-02-01")
    small_world.run("scoring_job", "2024-03-01")
    assert all(evaluate("2024-02-01").values()) and all(evaluate("2024-03-01").values())

    # Break February: a duplicated customer, a probability above 1, a grade key missing from f1_by_grade.
    small_world.query(
        """WITH one AS (SELECT * FROM model_inference WHERE snapshot_date = '2024-02-01' LIMIT 1)
           INSERT INTO model_inference (customer_id, snapshot_date, predicted_grade, prediction_probability,
                                        model_name, month_partition, model_version, prob_bad, prob_good,
                                        prob_standard)
           SELECT customer_id, snapshot_date, predicted_grade, prediction_probability, model_name,
                  month_partition, model_version, prob_bad, prob_good, prob_standard FROM one
           RETURNING id"""
    )
    small_world.query(
        "UPDATE model_inference SET prob_bad = 1.5 WHERE snapshot_date = '2024-02-01' "
        "AND id = (SELECT min(id) FROM model_inference WHERE snapshot_date = '2024-02-01') RETURNING id"
    )
    small_world.query(
        "UPDATE model_metrics SET f1_by_grade = f1_by_grade - 'Good' WHERE month_date = '2024-02-01' RETURNING id"
    )
    assert evaluate("2024-02-01") == {
        "one_prediction_per_customer": False,
        "probabilities_are_valid": False,
        "metrics_are_well_formed": False,
    }
    assert all(evaluate("2024-03-01").values())  # the neighbouring month is not judged by February's rows
