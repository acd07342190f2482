"""Alembic migrations of the Loom registry; ``alembic.ini`` ships inside this package.

Use :mod:`hub.db.migrate` (``loom db upgrade``) rather than the ``alembic`` command: it points
Alembic at this folder and at the database URL from Loom's settings.
"""
