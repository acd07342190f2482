"""Queries over the registry tables. Repositories never commit: services own the transactions."""
