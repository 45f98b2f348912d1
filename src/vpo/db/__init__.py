"""The library database: connection, schema migrations, records and queries."""

from vpo.db.connection import default_db_path, open_database, resolve_db_path, transaction
from vpo.db.migrations import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "default_db_path", "open_database", "resolve_db_path", "transaction"]
