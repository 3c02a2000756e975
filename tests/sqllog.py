"""A counting double for SQL: records every statement an engine sends to the database."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

__all__ = ["StatementLog"]


class StatementLog:
    """Statements executed on an engine, in order; safe to share between threads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._statements: list[str] = []
        self._attached = False

    def attach(self) -> StatementLog:
        """Start recording (idempotent)."""
        if not self._attached:
            event.listen(self.engine, "before_cursor_execute", self._record)
            self._attached = True
        return self

    def detach(self) -> None:
        """Stop recording (idempotent)."""
        if self._attached:
            event.remove(self.engine, "before_cursor_execute", self._record)
            self._attached = False

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        with self._lock:
            self._statements.append(statement)

    @property
    def all(self) -> list[str]:
        """Every statement recorded so far (a copy)."""
        with self._lock:
            return list(self._statements)

    def selects(self) -> list[str]:
        """The recorded statements that are SELECTs."""
        return [s for s in self.all if s.lstrip().upper().startswith("SELECT")]

    def clear(self) -> None:
        """Forget what was recorded; keep recording."""
        with self._lock:
            self._statements.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._statements)

    def __repr__(self) -> str:
        return f"<StatementLog {len(self)} statements>"
