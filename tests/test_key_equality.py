"""Keys follow the database's equality: values the database takes for one row are one
cache entry (or all dropped together by a write to that row).

PostgreSQL's ``CHAR(n)`` ignores trailing spaces; SQLite's ``NOCASE`` ignores ASCII case;
MySQL's usual collations ignore case and trailing spaces (the MySQL folds are unit-tested
here; ``test_mysql_writes`` runs them against the server).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import CHAR, Column, MetaData, String, Table, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

import dal
from dal.errors import UncacheableArgument
from dal.store.keys import PrimaryKey, fold_for
from tests.sqllog import StatementLog


class Base(DeclarativeBase):
    pass


class Code(Base):
    __tablename__ = "codes"

    code: Mapped[str] = mapped_column(CHAR(4), primary_key=True)
    label: Mapped[str] = mapped_column(String(50))


class Word(Base):
    __tablename__ = "words"

    word: Mapped[str] = mapped_column(String(50, collation="NOCASE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(50))


class Codes(dal.Repository[Code]):
    model = Code


class Words(dal.Repository[Word]):
    model = Word


@contextmanager
def _tables(db: dal.Database) -> Iterator[None]:
    engine = create_engine(db.settings.url, poolclass=NullPool)
    metadata_tables = [Code.__table__]
    if db.settings.backend == "sqlite":
        metadata_tables.append(Word.__table__)
    Base.metadata.create_all(engine, tables=metadata_tables)  # type: ignore[arg-type]
    try:
        yield
    finally:
        Base.metadata.drop_all(engine, tables=metadata_tables)  # type: ignore[arg-type]
        engine.dispose()


@pytest.fixture
def tables(db: dal.Database) -> Iterator[None]:
    with _tables(db):
        yield


def test_char_keys_with_and_without_trailing_spaces_are_one_entry(
    db: dal.Database, tables: None, statements: StatementLog
) -> None:
    codes = Codes(db)
    codes.add(code="ab", label="old")
    statements.clear()

    first = codes.get("ab")
    padded = codes.get("ab ")

    if db.settings.backend != "sqlite":  # bpchar, MySQL's PAD SPACE: 'ab' = 'ab  '
        assert first is padded and first is not None
        assert len([s for s in statements.selects() if "FROM codes" in s]) == 1
        assert codes.cache_info().currsize == 1
    else:  # SQLite compares CHAR as text: two keys, two rows
        assert first is not None and padded is None


def test_an_update_of_a_char_key_refreshes_every_spelling(pg_db: dal.Database) -> None:
    with _tables(pg_db):
        _char_update(pg_db)


def _char_update(pg_db: dal.Database) -> None:
    codes = Codes(pg_db)
    codes.add(code="ab", label="old")
    assert codes.get("ab").label == "old"
    assert codes.get("ab  ").label == "old"

    codes.update("ab ", label="new")

    assert codes.get("ab").label == "new"
    assert codes.get("ab  ").label == "new"
    assert codes.get_many(["ab", "ab "]) == {"ab": codes.get("ab")}


def test_sqlite_nocase_keys_are_one_entry(sqlite_db: dal.Database) -> None:
    with _tables(sqlite_db):
        _nocase(sqlite_db)


def _nocase(sqlite_db: dal.Database) -> None:
    words = Words(sqlite_db)
    words.add(word="Ada", label="old")
    assert words.get("ada") is words.get("ADA")
    assert words.get("Ada").label == "old"

    words.update("aDA", label="new")

    assert words.get("ada").label == "new"
    assert words.get("ADA").label == "new"
    assert words.cache_info().currsize == 1


# --- MySQL's collations, as folds ----------------------------------------------------------


def _column(type_: Any = None) -> Column[Any]:
    table = Table("t", MetaData(), Column("id", type_ or String(50), primary_key=True))
    return table.c.id


def _key(collation: str | None, dialect: str = "mysql") -> PrimaryKey:
    return PrimaryKey([_column()], dialect, learn=lambda: [collation])


@pytest.mark.parametrize(
    "collation", ["utf8mb4_general_ci", "utf8mb4_unicode_ci", "latin1_swedish_ci"]
)
def test_case_insensitive_pad_space_collations_fold_case_and_trailing_spaces(
    collation: str,
) -> None:
    key = _key(collation)
    assert key("Ada") == key("ada") == key("ADA  ") == "ada"
    assert key.scalar_type is None  # every lookup is normalized, hits included
    assert key.written(("ADA",)) == "ada"
    assert not key.aliased


def test_no_pad_and_binary_collations() -> None:
    assert _key("utf8mb4_0900_ai_ci")("Ada ") == "ada "  # NO PAD: the space counts
    assert _key("utf8mb4_bin")("Ada ") == "Ada"  # binary, PAD SPACE
    assert _key("utf8mb4_0900_bin")("Ada ") == "Ada "
    assert _key("utf8mb4_nopad_bin")("Ada ") == "Ada "


def test_keys_a_fold_cannot_place_make_writes_drop_every_row() -> None:
    key = _key("utf8mb4_general_ci")
    assert key("ada") == "ada"
    # 'é' = 'e' in general_ci, which no fold here follows: writes must drop the table.
    with pytest.raises(UncacheableArgument):
        key.written(("É",))
    assert not key.aliased
    key("Émile")
    assert key.aliased
    with pytest.raises(UncacheableArgument):
        key.written(("ada",))


def test_an_unknown_collation_is_opaque() -> None:
    key = _key("utf8mb4_made_up")
    assert key("Ada") == "Ada"
    with pytest.raises(UncacheableArgument):
        key.written(("Ada",))


def test_before_the_collations_are_learned_a_write_drops_every_row() -> None:
    learned: list[Any] = []
    key = PrimaryKey([_column()], "mysql", learn=lambda: learned.append(1) or ["utf8mb4_bin"])
    with pytest.raises(UncacheableArgument):
        key.written(("a",))
    assert key("a ") == "a"
    assert key("b") == "b"
    assert learned == [1]  # once
    assert key.written(("a",)) == "a"


def test_other_backends_fold_only_where_their_types_and_collations_say() -> None:
    text = Column("t", String(10))
    char = Column("c", CHAR(4))
    assert fold_for("postgresql", text, None) is None
    assert fold_for("postgresql", char, None)("ab  ") == "ab"  # type: ignore[misc]
    assert fold_for("sqlite", char, None) is None
    assert fold_for("sqlite", Column("n", String(10, collation="NOCASE")), "NOCASE")("AdA") == "ada"  # type: ignore[misc]
