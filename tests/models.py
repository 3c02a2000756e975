"""The SQLAlchemy models the test suite reads and writes, and their repositories."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import ForeignKey, PrimaryKeyConstraint, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import dal

__all__ = ["Base", "Order", "Orders", "Pair", "Pairs", "Tag", "Tags", "User", "Users"]


class Base(DeclarativeBase):
    # MySQL refuses a VARCHAR without a length at CREATE TABLE: a bare Mapped[str]
    # gets one here.
    type_annotation_map: ClassVar[dict[Any, Any]] = {str: String(200)}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    balance: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(default=0)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    amount: Mapped[int]


class Tag(Base):
    """A model with a composite primary key."""

    __tablename__ = "tags"

    kind: Mapped[str] = mapped_column(String(50), primary_key=True)
    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    label: Mapped[str] = mapped_column(String(200))


class Pair(Base):
    """A composite primary key whose constraint lists the columns in another order."""

    __tablename__ = "pairs"
    __table_args__ = (PrimaryKeyConstraint("b", "a"),)

    a: Mapped[str] = mapped_column(String(50))
    b: Mapped[str] = mapped_column(String(50))
    label: Mapped[str] = mapped_column(String(200))


class Users(dal.Repository[User]):
    model = User


class Orders(dal.Repository[Order]):
    model = Order


class Tags(dal.Repository[Tag]):
    model = Tag


class Pairs(dal.Repository[Pair]):
    model = Pair
