"""PostgreSQL: the tables (models), the engine and sessions (database), the migrations
(migrate). Queries per aggregate go in modules of their own beside these."""

from ivr.store.database import Database, DatabaseUnreachable, check_reachable

__all__ = ["Database", "DatabaseUnreachable", "check_reachable"]
