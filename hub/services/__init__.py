"""Services own transactions and orchestration; the API and the CLI call them, never the DB.

Build everything with :class:`hub.services.hub.Hub` (``Hub(settings)``).
"""
