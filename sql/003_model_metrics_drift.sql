-- Drift of the month against the champion's own reference, on the champion's monitoring row
-- (NULL elsewhere). Read by the retraining sensor.
--   prediction_psi  PSI of the month's predicted-grade distribution (every customer scored) against the
--                   champion's distribution on its held-out month.
--   feature_psi     {"Interest_Rate": 0.03, ...}: PSI of each key feature against the champion's training
--                   months.
ALTER TABLE model_metrics ADD COLUMN IF NOT EXISTS prediction_psi DOUBLE PRECISION;
ALTER TABLE model_metrics ADD COLUMN IF NOT EXISTS feature_psi JSONB;
