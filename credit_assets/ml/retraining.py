"""When to retrain: the policy the retraining sensor applies to each month's champion measurements.

Pure decisions over plain values, so each rule is tested on numbers, not on a running Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class RetrainingPolicy:
    macro_f1_floor: float = 0.87
    max_drop_below_holdout: float = 0.05
    psi_threshold: float = 0.2
    max_champion_age_months: int = 3


@dataclass(frozen=True)
class ChampionMonth:
    """What model_metrics says about the champion on one month."""

    month: date
    model_version: int
    macro_f1: float
    holdout_macro_f1: float | None
    prediction_psi: float | None
    worst_feature: str | None
    worst_feature_psi: float | None


@dataclass(frozen=True)
class Trigger:
    kind: (
        str  # "macro_f1_floor" | "drop_below_holdout" | "prediction_drift" | "feature_drift" | "champion_age"
    )
    reason: str


def degradation_triggers(m: ChampionMonth, policy: RetrainingPolicy) -> list[Trigger]:
    """Every rule the month breaks, each with a sentence that says why (empty when all is well)."""
    triggers: list[Trigger] = []
    where = f"champion v{m.model_version} on {m.month.isoformat()}"
    if m.macro_f1 < policy.macro_f1_floor:
        triggers.append(
            Trigger(
                "macro_f1_floor", f"{where}: macro F1 {m.macro_f1:.4f} < floor {policy.macro_f1_floor:.4f}"
            )
        )
    if m.holdout_macro_f1 is not None and m.macro_f1 < m.holdout_macro_f1 - policy.max_drop_below_holdout:
        triggers.append(
            Trigger(
                "drop_below_holdout",
                f"{where}: macro F1 {m.macro_f1:.4f} is more than {policy.max_drop_below_holdout:.4f} below its "
                f"held-out {m.holdout_macro_f1:.4f}",
            )
        )
    if m.prediction_psi is not None and m.prediction_psi > policy.psi_threshold:
        triggers.append(
            Trigger(
                "prediction_drift",
                f"{where}: prediction distribution PSI {m.prediction_psi:.4f} > {policy.psi_threshold:.4f}",
            )
        )
    if m.worst_feature_psi is not None and m.worst_feature_psi > policy.psi_threshold:
        triggers.append(
            Trigger(
                "feature_drift",
                f"{where}: feature {m.worst_feature} PSI {m.worst_feature_psi:.4f} > {policy.psi_threshold:.4f}",
            )
        )
    return triggers


def months_between(earlier: date, later: date) -> int:
    return (later.year - earlier.year) * 12 + (later.month - earlier.month)


def age_trigger(
    champion_version: int, champion_from: date, newest_month: date, policy: RetrainingPolicy
) -> Trigger | None:
    """A trigger when the champion has been in force for more than the allowed number of months."""
    age = months_between(champion_from, newest_month)
    if age > policy.max_champion_age_months:
        return Trigger(
            "champion_age",
            f"champion v{champion_version} in force since {champion_from.isoformat()} is {age} months old at "
            f"{newest_month.isoformat()} (> {policy.max_champion_age_months})",
        )
    return None
