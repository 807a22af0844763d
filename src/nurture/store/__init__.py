"""Storage. At the top: the engine and migrations (database), the models, encryption at rest, and the
rules and row planning both stores share. sql/ holds SqlStore by job, memory/ MemoryStore with the
same ports, accounts/ a subscriber's own lifecycle; the rest are the reads of operators and pages."""
