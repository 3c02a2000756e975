"""Models with relationships and mapped hierarchies, on their own metadata.

Kept apart from ``tests.models`` so the contract suite's models stay plain; the
``graph_db`` fixture creates these tables and drops them after the test.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

import dal

__all__ = [
    "Author",
    "Authors",
    "Book",
    "Books",
    "Circle",
    "Employee",
    "GraphBase",
    "Manager",
    "Shape",
]


class GraphBase(DeclarativeBase):
    pass


class Author(GraphBase):
    __tablename__ = "authors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.id")


class Book(GraphBase):
    __tablename__ = "books"

    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    title: Mapped[str] = mapped_column(String(100))
    author: Mapped[Author] = relationship(back_populates="books")


class Employee(GraphBase):
    """Joined-table inheritance: managers have a table of their own."""

    __tablename__ = "employees"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    __mapper_args__: ClassVar[dict[str, Any]] = {
        "polymorphic_on": "kind",
        "polymorphic_identity": "employee",
    }


class Manager(Employee):
    __tablename__ = "managers"

    id: Mapped[int] = mapped_column(ForeignKey("employees.id"), primary_key=True)
    reports: Mapped[int] = mapped_column(default=0)
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "manager"}


class Shape(GraphBase):
    """Single-table inheritance."""

    __tablename__ = "shapes"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    radius: Mapped[int | None]
    __mapper_args__: ClassVar[dict[str, Any]] = {
        "polymorphic_on": "kind",
        "polymorphic_identity": "shape",
    }


class Circle(Shape):
    __mapper_args__: ClassVar[dict[str, Any]] = {"polymorphic_identity": "circle"}


class Authors(dal.Repository[Author]):
    pass


class Books(dal.Repository[Book]):
    pass
