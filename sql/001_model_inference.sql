-- model_inference: one row per customer and month, as scored by the model in force for that month.
--
-- Keeps every column of the original system's table with the same name and type (so its example
-- queries run unchanged) and adds lineage: which registered model version and family produced the
-- row, in which MLflow run and Dagster run, and the probability of every grade.
--
-- Applied idempotently by PostgresPandasIOManager inside the configured schema (search_path is set
-- to it; no name here is schema-qualified).
--
-- Declaratively partitioned by month on snapshot_date: the IO manager creates one table partition
-- per Dagster monthly partition on its first write (model_inference_yYYYYmMM, itself partitioned on
-- snapshot_date, holding the month's rows in one leaf table model_inference_yYYYYmMM_rows; see
-- 004_model_inference_month_leaves.sql) and replaces a month, in one transaction, by loading a new
-- leaf table, indexing it and swapping it in for the old one. There is no DEFAULT partition: a row
-- outside every month is an error, not a stray.

CREATE TABLE IF NOT EXISTS model_inference (
    -- columns of the original schema
    id SERIAL,
    customer_id VARCHAR(50),
    snapshot_date DATE,
    predicted_grade VARCHAR(10),
    prediction_probability DECIMAL(5,4),
    model_name VARCHAR(100),
    inference_date TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    month_partition VARCHAR(10),            -- the month as 'YYYY_MM_DD', e.g. '2024_01_01'

    -- lineage
    model_version INTEGER,                  -- registered model version that scored the row
    model_family VARCHAR(20),               -- 'lightgbm' | 'catboost'
    mlflow_run_id VARCHAR(50),              -- MLflow run that trained that model version
    dagster_run_id VARCHAR(64),             -- Dagster run that wrote the row
    prob_bad DOUBLE PRECISION,
    prob_good DOUBLE PRECISION,
    prob_standard DOUBLE PRECISION,

    -- The original key was (id). A partitioned table's primary key must include the partition
    -- column, so it is (id, snapshot_date); id alone stays unique because it comes from one sequence.
    CONSTRAINT model_inference_pkey PRIMARY KEY (id, snapshot_date)
) PARTITION BY RANGE (snapshot_date);

-- The original index (customer history lookups). Created on the partitioned table, so every table
-- partition gets its own copy when it is attached.
CREATE INDEX IF NOT EXISTS idx_model_inference_customer_date
    ON model_inference (customer_id, snapshot_date);
