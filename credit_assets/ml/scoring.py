"""Score every customer of a month: the rows written to ``model_inference``.

Every customer is scored, graded or not: an ungraded customer is exactly the one the lender needs a
prediction for. Each row carries the predicted grade, its probability (the seed table's
``prediction_probability``) and all three grade probabilities, so monitoring can recompute AUC and
calibration from the table alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from credit_assets.ml.metrics import predicted_grades
from credit_assets.ml.models import CreditGradeModel
from credit_assets.ml.schema import CUSTOMER_ID, GRADES, SNAPSHOT_DATE

PROBABILITY_COLUMNS: dict[str, str] = {grade: f"prob_{grade.lower()}" for grade in GRADES}
SCORE_COLUMNS: tuple[str, ...] = (
    CUSTOMER_ID,
    SNAPSHOT_DATE,
    "predicted_grade",
    "prediction_probability",
    *PROBABILITY_COLUMNS.values(),
)
DEFAULT_CHUNK_ROWS = 200_000


def score_customers(model: CreditGradeModel, features: pd.DataFrame) -> pd.DataFrame:
    """One row per input customer, in input order and with the input's index: see SCORE_COLUMNS."""
    missing = [column for column in (CUSTOMER_ID, SNAPSHOT_DATE) if column not in features.columns]
    if missing:
        raise ValueError(f"feature frame is missing identity column(s) {missing}")
    proba = model.predict_proba(features)
    scores = pd.DataFrame(
        {
            CUSTOMER_ID: features[CUSTOMER_ID],
            SNAPSHOT_DATE: features[SNAPSHOT_DATE],
            "predicted_grade": predicted_grades(proba),
            # The predicted grade is the argmax, so its probability is the row maximum.
            "prediction_probability": proba.to_numpy(dtype=np.float64).max(axis=1),
        },
        index=features.index,
    )
    for grade, column in PROBABILITY_COLUMNS.items():
        scores[column] = proba[grade].astype(np.float64)
    return scores.loc[:, list(SCORE_COLUMNS)]


def score_in_chunks(
    model: CreditGradeModel, features: pd.DataFrame, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[pd.DataFrame]:
    """Score ``features`` ``chunk_rows`` customers at a time, yielding each chunk's scores.

    Encoding copies the feature matrix and the estimators allocate per-row buffers; chunking bounds
    that extra memory for multi-million-customer months, and lets a writer stream chunks to the
    database. The concatenated chunks equal :func:`score_customers` on the whole frame.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    for start in range(0, len(features), chunk_rows):
        yield score_customers(model, features.iloc[start : start + chunk_rows])
