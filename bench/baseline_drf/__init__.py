"""A bare Django + DRF project: one JSON endpoint, no database, for the WSGI baseline."""
