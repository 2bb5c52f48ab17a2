-- model_inference: every month partition becomes a partitioned table holding its rows in one leaf.
--
-- The IO manager replaces a month by loading a new leaf table, indexing it and swapping it in for the
-- old one inside the month's own partition (credit_assets/resources/postgres_io/month_partitions.py):
--
--   model_inference                     PARTITION BY RANGE (snapshot_date)
--     model_inference_y2024m01          PARTITION BY RANGE (snapshot_date), the month's bounds
--       model_inference_y2024m01_rows   the month's rows, CHECK credit_assets_month_bounds
--
-- Months written by earlier versions are plain tables attached straight to model_inference. This converts
-- each of them, keeping every row: the table is renamed to <month>_rows, given the CHECK constraint (one
-- scan of the month), and attached to a new partitioned <month> that takes its place. It runs once, under
-- the DDL advisory lock, and holds an ACCESS EXCLUSIVE lock on model_inference until it commits (DETACH).
-- Month partitions of another shape are left as they are (the IO manager replaces those by TRUNCATE + COPY).

DO $convert$
DECLARE
    month record;
    bounds text[];
    leaf text;
BEGIN
    FOR month IN
        SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'model_inference'::regclass AND c.relkind = 'r'
        ORDER BY c.relname
    LOOP
        bounds := regexp_match(month.bound, $re$^FOR VALUES FROM \('([^']*)'\) TO \('([^']*)'\)$$re$);
        leaf := month.name || '_rows';
        CONTINUE WHEN bounds IS NULL OR length(leaf) > 63 OR to_regclass(quote_ident(leaf)) IS NOT NULL;
        EXECUTE format('ALTER TABLE model_inference DETACH PARTITION %I', month.name);
        EXECUTE format('ALTER TABLE %I RENAME TO %I', month.name, leaf);
        EXECUTE format(
            'ALTER TABLE %I ADD CONSTRAINT credit_assets_month_bounds'
            ' CHECK (snapshot_date IS NOT NULL AND snapshot_date >= %L AND snapshot_date < %L)',
            leaf, bounds[1], bounds[2]);
        EXECUTE format(
            'CREATE TABLE %I (LIKE model_inference INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
            ' INCLUDING GENERATED INCLUDING STORAGE) PARTITION BY RANGE (snapshot_date)',
            month.name);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I %s', month.name, leaf, month.bound);
        EXECUTE format('ALTER TABLE model_inference ATTACH PARTITION %I %s', month.name, month.bound);
    END LOOP;
END
$convert$;
