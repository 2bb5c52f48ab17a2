"""COPY binary in PostgresPandasIOManager: every supported type stores exactly what the CSV path stores.

The IO manager sends COPY binary when every column's type is one it can encode, and falls back to CSV
otherwise. These tests write the same frames both ways into a real PostgreSQL table holding every
supported type and compare what the server stored.
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from dagster import build_output_context

from credit_assets.resources import io_managers
from credit_assets.resources.io_managers import PostgresPandasIOManager
from credit_assets.resources.postgres import PostgresResource
from credit_assets.resources.postgres_io import copy_binary, tables

ALL_TYPES_DDL = """
CREATE TABLE all_types (
    id SERIAL PRIMARY KEY,
    small SMALLINT, whole INTEGER, big BIGINT,
    dec54 DECIMAL(5,4), dec102 NUMERIC(10,2), dec180 NUMERIC(18,0), dec71 NUMERIC(7,1),
    single REAL, double DOUBLE PRECISION,
    flag BOOLEAN,
    day DATE, moment TIMESTAMP, instant TIMESTAMPTZ,
    label VARCHAR(40), note TEXT, code CHAR(3),
    doc JSONB, raw_doc JSON
)
"""
COLUMNS = [
    "small", "whole", "big", "dec54", "dec102", "dec180", "dec71", "single", "double", "flag", "day",
    "moment", "instant", "label", "note", "code", "doc", "raw_doc",
]  # fmt: skip


@pytest.fixture
def all_types_url(postgres_url: str) -> str:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        tables.apply_ddl(connection, "public")
        connection.execute(ALL_TYPES_DDL)
    return postgres_url


def awkward_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "small": pd.array([-32768, 32767, None, 0], dtype="Int64"),
            "whole": np.array([-(2**31), 2**31 - 1, 7, 0], dtype=np.int64),
            "big": pd.array([-(2**63), 2**63 - 1, None, 42], dtype="Int64"),
            "dec54": [0.12346, 1.0, np.nan, -0.00006],
            "dec102": [-12345678.906, 0.0, 99999999.99, 0.005],
            "dec180": pd.array([-(10**17) - 1, 10**17, None, 0], dtype="Int64"),
            "dec71": [123456.75, -0.06, 0.04, np.nan],
            "single": [1.5, np.nan, -3.25e10, 0.1],
            "double": [0.1, -1e-300, np.inf, np.nan],
            "flag": pd.array([True, False, None, True], dtype="boolean"),
            "day": [dt.date(2024, 1, 1), dt.date(1999, 12, 31), None, dt.date(2038, 6, 30)],
            "moment": pd.to_datetime(
                ["2024-01-01 12:34:56.789012", "1969-07-20 20:17:40", None, "2000-01-01"], format="ISO8601"
            ),
            "instant": pd.to_datetime(
                [
                    "2024-01-01 12:00:00+02:00",
                    "1999-12-31 23:59:59.5+00:00",
                    None,
                    "2000-01-01 00:00:00-05:00",
                ],
                utc=True,
                format="ISO8601",
            ),
            "label": ["plain", "naïve ünïcode ✓", None, ""],
            "note": ['quote " comma , backslash \\ tab \t', "line\nbreak\r\n", "x" * 300, None],
            "code": ["ABC", "A", None, "AB"],
            "doc": [{"Bad": 0.25, "Good": 1, "Standard": None}, None, {"ü": [1, 2]}, {}],
            "raw_doc": ['{"b": 1,  "a": 2}', None, "[]", '"text"'],
        }
    )


def write(url: str, frame: pd.DataFrame) -> None:
    manager = PostgresPandasIOManager(postgres=PostgresResource(url=url))
    with build_output_context(asset_key=["all_types"], definition_metadata={}) as context:
        manager.handle_output(context, frame)


def stored(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        return connection.execute(f"SELECT {', '.join(COLUMNS)} FROM all_types ORDER BY id").fetchall()


def test_every_supported_type_goes_binary(all_types_url: str) -> None:
    with psycopg.connect(all_types_url) as connection:
        info = io_managers.describe_table(connection, "public", "all_types")
    assert info is not None
    prepared = io_managers.prepare_frame(awkward_frame(), COLUMNS, info)
    assert io_managers.binary_copy_encoders(prepared, info) is not None


def test_binary_and_csv_store_the_same_values(all_types_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = awkward_frame()
    write(all_types_url, frame)
    binary = stored(all_types_url)

    monkeypatch.setattr(io_managers, "binary_copy_encoders", lambda prepared, info: None)
    write(all_types_url, frame)
    csv = stored(all_types_url)

    assert binary == csv
    first, second, third, fourth = binary
    assert first[:4] == (-32768, -(2**31), -(2**63), decimal.Decimal("0.1235"))
    assert fourth[3] == decimal.Decimal("-0.0001")  # negative: sign bit set
    assert second[3:7] == (
        decimal.Decimal("1.0000"),
        decimal.Decimal("0.00"),
        10**17,
        decimal.Decimal("-0.1"),
    )
    assert first[4] == decimal.Decimal("-12345678.91") and third[4] == decimal.Decimal("99999999.99")
    assert (first[7], first[8], third[8], fourth[8]) == (1.5, 0.1, float("inf"), None)
    assert second[8] == -1e-300
    assert (first[9], second[9], third[9]) == (True, False, None)
    assert first[10:12] == (dt.date(2024, 1, 1), dt.datetime(2024, 1, 1, 12, 34, 56, 789012))
    assert second[11] == dt.datetime(1969, 7, 20, 20, 17, 40)
    assert first[12] == dt.datetime(2024, 1, 1, 10, 0, tzinfo=dt.UTC)
    assert [row[13] for row in binary] == ["plain", "naïve ünïcode ✓", None, ""]
    assert [row[14] for row in binary] == frame["note"].tolist()
    assert [row[15] for row in binary] == ["ABC", "A  ", None, "AB "]
    assert first[16] == {"Bad": 0.25, "Good": 1, "Standard": None} and second[16] is None
    assert first[17] == {"b": 1, "a": 2}


def test_a_value_out_of_the_binary_range_falls_back_to_csv_and_the_server_names_it(
    all_types_url: str,
) -> None:
    frame = awkward_frame().assign(small=pd.array([1, 2, 40_000, 3], dtype="Int64"))
    with pytest.raises(psycopg.errors.NumericValueOutOfRange, match="smallint"):
        write(all_types_url, frame)

    too_precise = awkward_frame().assign(dec54=[1.0, 12.5, 0.0, 0.0])
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        write(all_types_url, too_precise)


def test_text_typed_columns_of_other_types_fall_back_to_csv(all_types_url: str) -> None:
    with psycopg.connect(all_types_url) as connection:
        info = io_managers.describe_table(connection, "public", "all_types")
    assert info is not None
    as_text = awkward_frame().assign(day=["2024-01-01", "1999-12-31", None, "2038-06-30"])
    prepared = io_managers.prepare_frame(as_text, COLUMNS, info)
    assert io_managers.binary_copy_encoders(prepared, info) is None
    write(all_types_url, as_text)
    assert [row[10] for row in stored(all_types_url)] == [
        dt.date(2024, 1, 1),
        dt.date(1999, 12, 31),
        None,
        dt.date(2038, 6, 30),
    ]


def test_chunks_of_mixed_text_lengths_and_nulls_round_trip(all_types_url: str) -> None:
    rng = np.random.default_rng(7)
    n_rows = 2 * copy_binary.BINARY_COPY_CHUNK_ROWS + 17
    words = np.array(["", "a", "Bad", "Standard", "naïve", None], dtype=object)
    frame = pd.DataFrame(
        {
            "label": words[rng.integers(0, len(words), n_rows)],
            "double": np.where(rng.random(n_rows) < 0.1, np.nan, rng.standard_normal(n_rows)),
            "whole": np.arange(n_rows),
        }
    )
    write(all_types_url, frame)
    with psycopg.connect(all_types_url) as connection:
        rows = connection.execute("SELECT label, double, whole FROM all_types ORDER BY id").fetchall()
    assert len(rows) == n_rows
    assert [row[0] for row in rows] == frame["label"].tolist()
    doubles = np.array([np.nan if row[1] is None else row[1] for row in rows])
    np.testing.assert_array_equal(doubles, frame["double"].to_numpy())
    assert [row[2] for row in rows] == list(range(n_rows))
