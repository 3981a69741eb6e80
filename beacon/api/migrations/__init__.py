"""Alembic migrations of the API layer's database, applied by ``beacon api migrate``."""
