"""Fixtures of the indexer tests (helpers live in tests/indexer/helpers.py)."""

from tests.indexer.helpers import fresh_db, node

__all__ = ["fresh_db", "node"]
