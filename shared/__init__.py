"""borgflow's own shared library: event schemas, NATS and Postgres helpers, settings.

Services import this package; it imports no service.
"""
