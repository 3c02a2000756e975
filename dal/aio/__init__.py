"""The asyncio front end: ``AsyncDatabase`` over the same store, tracking and bus."""

from .database import AsyncDatabase

__all__ = ["AsyncDatabase"]
