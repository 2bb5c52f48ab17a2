-- model_metrics: one row per (month, model, model version, evaluation kind).
--
-- Keeps every column of the original system's table with the same name and type (so its example
-- queries run unchanged) and adds what tells the rows apart and where they came from:
--   evaluation_kind  'monitoring'   = a model that scored month_date, measured on that month's graded
--                                     customers;
--                    'holdout_test' = a model trained in partition month_date, measured on its
--                                     held-out month (evaluated_month).
--   model_version / model_family / model_role (e.g. 'champion', 'challenger'), evaluated_month,
--   dagster_run_id.
--
-- Applied idempotently by PostgresPandasIOManager inside the configured schema (search_path is set
-- to it; no name here is schema-qualified). A plain table: it holds a handful of rows per month, and
-- a month is replaced by DELETE of its rows + COPY in one transaction.

CREATE TABLE IF NOT EXISTS model_metrics (
    -- columns of the original schema
    id SERIAL PRIMARY KEY,
    evaluation_date TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    month_date VARCHAR(10),                 -- the Dagster partition month as 'YYYY-MM-DD'
    mlflow_run_id VARCHAR(50),
    model_name VARCHAR(100),
    accuracy DECIMAL(5,4),
    precision DECIMAL(5,4),
    recall DECIMAL(5,4),
    auc DECIMAL(5,4),                       -- NULL when the month has fewer than two grades
    macro_f1 DECIMAL(5,4),
    weighted_f1 DECIMAL(5,4),
    total_samples INTEGER,
    f1_by_grade JSONB,                      -- {"Bad": 0.71, "Good": 0.80, "Standard": 0.77}
    predictions_distribution JSONB,         -- {"Bad": 120, "Good": 310, "Standard": 570}
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,

    -- what was evaluated, and lineage
    evaluation_kind VARCHAR(20) NOT NULL,
    model_version INTEGER,
    model_family VARCHAR(20),
    model_role VARCHAR(20),
    evaluated_month DATE,                   -- the month whose graded customers were measured
    dagster_run_id VARCHAR(64),

    CONSTRAINT model_metrics_evaluation_kind_check
        CHECK (evaluation_kind IN ('monitoring', 'holdout_test')),
    -- 'YYYY-MM-DD' only: then text order is date order, and month_date ranges are index-friendly.
    CONSTRAINT model_metrics_month_date_check
        CHECK (month_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$')
);

-- One row per (month, model, version, kind). NULLS NOT DISTINCT (PostgreSQL 15+): a row without a
-- model_version still cannot be duplicated.
CREATE UNIQUE INDEX IF NOT EXISTS uq_model_metrics_month_model_version_kind
    ON model_metrics (month_date, model_name, model_version, evaluation_kind) NULLS NOT DISTINCT;

-- Partition deletes. The IO manager replaces a month with
--   DELETE ... WHERE <partition_expr> >= 'YYYY-MM-DD' AND <partition_expr> < 'YYYY-MM-DD'.
-- With partition_expr "month_date" the unique index above serves it (month_date is its leading
-- column, and the format check makes text order date order), so no second index on month_date is
-- needed. With partition_expr "month_date::date" no index can serve it: a varchar-to-date cast is
-- not IMMUTABLE (it depends on DateStyle) and cannot be indexed; the table holds a few rows per
-- month, so that costs a short sequential scan.
