"""The bot tests use the API layer's fixtures: a database of each backend and ``beacon api`` servers."""

from tests.api.conftest import api_factory, database_url

__all__ = ["api_factory", "database_url"]
