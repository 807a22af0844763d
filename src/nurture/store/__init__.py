"""Storage: the SQL models, migrations and SqlStore, split by job, and MemoryStore, which keeps the
same ports in memory."""
