"""The two monthly partitionings, defined once.

A partition key is the first day of a month (``2024-03-01``) and means that month's cohort of customers.

* ``data_months``: every month of input data, from the first month of the data on.
* ``model_months``: every month a model is trained for and every month that is scored and measured. It
  starts later than the data because a model for month M learns from the 12 months before M.

Both start dates are configurable through the environment (they have to be known when the code location
loads, before any resource exists): ``CREDIT_ASSETS_FIRST_DATA_MONTH`` (default ``2023-01-01``) and
``CREDIT_ASSETS_FIRST_MODEL_MONTH`` (default ``2024-01-01``).
"""

from __future__ import annotations

import os
from datetime import date

from dagster import MonthlyPartitionsDefinition, TimeWindowPartitionMapping

TRAINING_WINDOW_MONTHS = 12


def _month_from_env(name: str, default: str) -> str:
    value = os.environ.get(name, default)
    try:
        parsed = date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{name}={value!r} is not a date like 2024-01-01") from exc
    if parsed.day != 1:
        raise ValueError(f"{name}={value!r} must be the first day of a month")
    return value


FIRST_DATA_MONTH = _month_from_env("CREDIT_ASSETS_FIRST_DATA_MONTH", "2023-01-01")
FIRST_MODEL_MONTH = _month_from_env("CREDIT_ASSETS_FIRST_MODEL_MONTH", "2024-01-01")

data_months = MonthlyPartitionsDefinition(start_date=FIRST_DATA_MONTH)
model_months = MonthlyPartitionsDefinition(start_date=FIRST_MODEL_MONTH)

# Model month M learns from the cohorts of months M-12 .. M-1.
training_window = TimeWindowPartitionMapping(start_offset=-TRAINING_WINDOW_MONTHS, end_offset=-1)
# The held-out month of model month M is M-1, the last month of its training window.
holdout_month = TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
