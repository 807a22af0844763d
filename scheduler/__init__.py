"""The scheduler service: APScheduler as a clock for the dispatch, lease, content and housekeeping jobs."""
