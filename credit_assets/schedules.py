"""The monthly schedule: on the 2nd of each month, the month that just ended is ingested; the
``score_month_after_data`` sensor then scores and measures it."""

from dagster import DefaultScheduleStatus, build_schedule_from_partitioned_job

from credit_assets.jobs import monthly_data_job

monthly_data_schedule = build_schedule_from_partitioned_job(
    monthly_data_job,
    name="monthly_data_schedule",
    description="Ingest and build features for the month that just ended (then scored by score_month_after_data).",
    day_of_month=2,
    hour_of_day=6,
    default_status=DefaultScheduleStatus.STOPPED,
)
