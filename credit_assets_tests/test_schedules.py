"""The monthly schedule asks for the month that just ended, one run per tick."""

from datetime import UTC, datetime

from dagster import build_schedule_context

from credit_assets.definitions import defs


def test_the_tick_on_the_second_ingests_the_month_that_just_ended():
    monthly_data_schedule = defs.resolve_schedule_def("monthly_data_schedule")
    context = build_schedule_context(scheduled_execution_time=datetime(2025, 2, 2, 6, tzinfo=UTC))
    result = monthly_data_schedule.evaluate_tick(context)
    [request] = result.run_requests
    assert request.partition_key == "2025-01-01"
    assert monthly_data_schedule.cron_schedule == "0 6 2 * *"
    assert monthly_data_schedule.job_name == "monthly_data_job"
