"""The asyncio front end: ``AsyncDatabase``, ``AsyncRepository`` and async cached queries
over the same store, tracking and bus."""

from .database import AsyncDatabase
from .repository import AsyncRepository

__all__ = ["AsyncDatabase", "AsyncRepository"]
