"""Population stability: how far a month has moved from what a model was trained on.

PSI = sum over bins of (actual - expected) * ln(actual / expected), with shares clipped away from zero.
The rule of thumb the retraining sensor uses: below 0.1 stable, 0.1-0.2 moving, above 0.2 drifted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# Features the grade depends on most (by importance on the real data); their drift is worth a retrain.
KEY_DRIFT_FEATURES: tuple[str, ...] = (
    "Interest_Rate",
    "Outstanding_Debt",
    "Num_Credit_Card",
    "Delay_from_due_date",
    "Num_Credit_Inquiries",
    "Credit_History_Age",
)
_BINS = 10
_MIN_SHARE = 1e-4


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI between two distributions over the same bins (counts or shares)."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape or e.sum() <= 0 or a.sum() <= 0:
        raise ValueError(f"PSI needs two non-empty distributions over the same bins, got {e} and {a}")
    e = np.clip(e / e.sum(), _MIN_SHARE, None)
    a = np.clip(a / a.sum(), _MIN_SHARE, None)
    return float(np.sum((a - e) * np.log(a / e)))


def distribution_psi(expected: Mapping[str, float], actual: Mapping[str, float]) -> float:
    """PSI between two categorical distributions keyed by label (e.g. predicted grade counts)."""
    keys = sorted(set(expected) | set(actual))
    return psi([expected.get(k, 0.0) for k in keys], [actual.get(k, 0.0) for k in keys])


def feature_profile(frame: pd.DataFrame, features: Sequence[str] = KEY_DRIFT_FEATURES) -> dict[str, Any]:
    """Decile edges and shares of each feature in ``frame`` (missing values are a bin of their own)."""
    profile: dict[str, Any] = {}
    for feature in features:
        values = pd.to_numeric(frame[feature], errors="coerce")
        present = values.dropna()
        if present.empty:
            continue
        edges = np.unique(np.quantile(present, np.linspace(0, 1, _BINS + 1))[1:-1]).tolist()
        profile[feature] = {"edges": edges, "shares": _shares(values, edges)}
    return profile


def feature_psi(profile: Mapping[str, Any], frame: pd.DataFrame) -> dict[str, float]:
    """PSI of each profiled feature between the profile's frame and ``frame``."""
    out: dict[str, float] = {}
    for feature, reference in profile.items():
        if feature not in frame.columns:
            raise KeyError(
                f"drift: feature {feature!r} of the training profile is missing from the month's frame"
            )
        values = pd.to_numeric(frame[feature], errors="coerce")
        out[feature] = psi(reference["shares"], _shares(values, reference["edges"]))
    return out


def _shares(values: pd.Series, edges: Sequence[float]) -> list[float]:
    """Shares of ``values`` in the bins cut at ``edges``, plus a last bin for missing values."""
    present = values.dropna().to_numpy()
    counts = np.bincount(np.searchsorted(np.asarray(edges), present, side="right"), minlength=len(edges) + 1)
    counts = np.append(counts, values.isna().sum()).astype(float)
    total = counts.sum()
    return (counts / total).tolist() if total else counts.tolist()


def worst(psis: Mapping[str, float]) -> tuple[str | None, float]:
    """The most drifted feature and its PSI (None, 0.0 when nothing was measured)."""
    if not psis:
        return None, 0.0
    feature = max(psis, key=lambda k: psis[k])
    value = psis[feature]
    return feature, value if math.isfinite(value) else float("inf")
