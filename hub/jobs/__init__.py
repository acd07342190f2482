"""Background jobs: a database-backed queue (:mod:`~hub.jobs.queue`), the reporter handlers talk to
(:mod:`~hub.jobs.reporter`), and the worker that runs a given handler table (:mod:`~hub.jobs.worker`).

This package imports no service: the handler table comes from :func:`hub.services.container.job_handlers`.
"""
