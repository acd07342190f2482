"""Services own transactions and orchestration; the API and the CLI call them, never the DB.

Everything is built once by the composition root, :class:`hub.services.container.Hub` (``Hub(settings)``),
which also lists the job handlers (:func:`hub.services.container.job_handlers`).
"""
