"""Write tracking: which tables and primary keys a statement changed, and what depends on
them, so that the commit drops exactly what it made stale."""
