"""SqlStore on SQLite and PostgreSQL, one module per job: claims, leases, outcomes, enrollments,
suppressions and what operators inspect, over a few bulk SQL helpers."""
