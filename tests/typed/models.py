"""Models of the typed programs: users with orders, a relationship each way."""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200))
    nickname: Mapped[str | None] = mapped_column(String(200))
    purchases: Mapped[list[Purchase]] = relationship(back_populates="customer")


class Purchase(Base):
    __tablename__ = "purchases"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    amount: Mapped[int]
    quantity = Column(Integer, nullable=False, default=1)  # the pre-2.0 declarative style
    note = mapped_column(String(100), nullable=True)  # no annotation: untyped
    customer: Mapped[Customer] = relationship(back_populates="purchases")
