"""MemoryStore: the engine's storage ports in one process's memory, with SqlStore's semantics, for
fast tests of the engine. It shares its rules and row planning with SqlStore and needs no database."""
