"""Where the four monthly source files live."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
from dagster import ConfigurableResource
from pydantic import Field

from credit_assets.ml.sources import find_source_file, read_source_month


class CreditDataDirectory(ConfigurableResource):
    """A directory holding features_attributes, features_financials, feature_clickstream and
    lms_loan_daily, each as ``.csv`` or ``.csv.gz``: the real CS611 data or the generated sample."""

    path: str = Field(description="Directory of the four source files (CREDIT_ASSETS_DATA_DIR).")

    def source_file(self, source: str) -> Path:
        return find_source_file(Path(self.path), source)

    def read_month(self, source: str, month: date) -> pd.DataFrame:
        """The raw rows of ``source`` for one month, every column as text."""
        return read_source_month(self.source_file(source), source, month)
