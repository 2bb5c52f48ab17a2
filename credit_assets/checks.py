"""Asset checks: the promotion gate, and (on every partition written) the shape of the two tables."""

from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from credit_assets.assets.promotion import ChallengerReport, challenger_model
from credit_assets.partitions import model_months


@asset_check(
    asset=challenger_model,
    partitions_def=model_months,
    blocking=True,
    description=(
        "Promotion gate: passes only when the challenger's macro F1 on the held-out month is higher than the "
        "current champion's on the same month (or there is no champion yet). When it fails, champion_model "
        "does not run and the new version stays a registered challenger."
    ),
)
def challenger_beats_champion(challenger_model: ChallengerReport) -> AssetCheckResult:
    report = challenger_model
    return AssetCheckResult(
        passed=report.beats_champion,
        severity=AssetCheckSeverity.ERROR,
        description=report.reason,
        metadata={
            "challenger_version": report.challenger.version.version,
            "challenger_macro_f1": report.challenger_macro_f1,
            "champion_version": report.incumbent.version if report.incumbent else None,
            "champion_macro_f1": report.incumbent_macro_f1,
            "holdout_month": report.holdout_month,
        },
    )
