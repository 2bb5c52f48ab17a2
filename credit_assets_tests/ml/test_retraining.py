from datetime import date

from credit_assets.ml.retraining import ChampionMonth, RetrainingPolicy, age_trigger, degradation_triggers

POLICY = RetrainingPolicy()


def month(**overrides) -> ChampionMonth:
    values = dict(
        month=date(2024, 5, 1),
        model_version=3,
        macro_f1=0.92,
        holdout_macro_f1=0.93,
        prediction_psi=0.01,
        worst_feature="Interest_Rate",
        worst_feature_psi=0.02,
    )
    values.update(overrides)
    return ChampionMonth(**values)


def kinds(m: ChampionMonth) -> list[str]:
    return [t.kind for t in degradation_triggers(m, POLICY)]


def test_a_healthy_month_triggers_nothing():
    assert kinds(month()) == []


def test_macro_f1_below_the_floor_triggers_and_says_why():
    triggers = degradation_triggers(month(macro_f1=0.80, holdout_macro_f1=0.82), POLICY)
    assert [t.kind for t in triggers] == ["macro_f1_floor"]
    assert "0.8000 < floor 0.8700" in triggers[0].reason and "v3" in triggers[0].reason


def test_a_drop_below_the_models_own_holdout_score_triggers():
    assert kinds(month(macro_f1=0.88, holdout_macro_f1=0.95)) == ["drop_below_holdout"]
    assert kinds(month(macro_f1=0.91, holdout_macro_f1=0.95)) == []


def test_drift_of_predictions_or_features_past_the_threshold_triggers():
    assert kinds(month(prediction_psi=0.25)) == ["prediction_drift"]
    assert kinds(month(worst_feature_psi=0.3)) == ["feature_drift"]
    assert kinds(month(prediction_psi=0.2, worst_feature_psi=0.2)) == []  # at the threshold is not past it


def test_unknown_holdout_or_drift_is_not_a_trigger():
    assert kinds(month(holdout_macro_f1=None, prediction_psi=None, worst_feature_psi=None)) == []


def test_champion_age():
    assert age_trigger(3, date(2024, 1, 1), date(2024, 4, 1), POLICY) is None  # 3 months: allowed
    trigger = age_trigger(3, date(2024, 1, 1), date(2024, 5, 1), POLICY)
    assert trigger is not None and trigger.kind == "champion_age" and "4 months" in trigger.reason
