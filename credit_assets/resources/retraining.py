"""Thresholds of the retraining sensor, as a typed resource so they are set per deployment."""

from dagster import ConfigurableResource
from pydantic import Field

from credit_assets.ml.retraining import RetrainingPolicy


class RetrainingPolicyResource(ConfigurableResource):
    """When the retraining sensor asks for a new model."""

    macro_f1_floor: float = Field(
        default=0.87, description="Retrain when the champion's monthly macro F1 is below this."
    )
    max_drop_below_holdout: float = Field(
        default=0.05,
        description="Retrain when monthly macro F1 is more than this below the champion's held-out macro F1.",
    )
    psi_threshold: float = Field(
        default=0.2,
        description="Retrain when the prediction distribution or a key feature drifts past this PSI.",
    )
    max_champion_age_months: int = Field(
        default=3, description="Retrain when the champion has been in force for more months than this."
    )

    def policy(self) -> RetrainingPolicy:
        return RetrainingPolicy(
            macro_f1_floor=self.macro_f1_floor,
            max_drop_below_holdout=self.max_drop_below_holdout,
            psi_threshold=self.psi_threshold,
            max_champion_age_months=self.max_champion_age_months,
        )
