"""Background jobs: a database-backed queue and worker processes that run registered handlers."""
