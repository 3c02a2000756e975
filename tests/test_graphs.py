"""Relationships and object graphs: eager-loaded relationships arrive as nested records,
unloaded ones say how to load them, rows keep named access, hierarchies work."""

from __future__ import annotations

import pickle
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, selectinload, with_polymorphic

import dal
from dal.records import Record
from tests.graph_models import (
    Author,
    Authors,
    Book,
    Books,
    Circle,
    Employee,
    GraphBase,
    Manager,
    Shape,
)


@pytest.fixture
def graph_db(db: dal.Database) -> Iterator[dal.Database]:
    GraphBase.metadata.create_all(db.engine)
    try:
        with db.session() as session:
            ada = Author(id=1, name="Ada")
            session.add_all(
                [
                    ada,
                    Author(id=2, name="Bob"),
                    Book(id=10, author=ada, title="Notes"),
                    Book(id=11, author=ada, title="Sketches"),
                ]
            )
        yield db
    finally:
        GraphBase.metadata.drop_all(db.engine)


def test_an_eager_loaded_collection_is_a_tuple_of_records(graph_db: dal.Database) -> None:
    @dal.cached_query(graph_db, depends_on=[Author, Book])
    def authors(session: Session) -> list[Author]:
        query = select(Author).options(selectinload(Author.books)).order_by(Author.id)
        return list(session.scalars(query))

    ada, bob = authors()

    assert isinstance(ada, Record) and isinstance(ada.books, tuple)
    assert [(b.id, b.title) for b in ada.books] == [(10, "Notes"), (11, "Sketches")]
    assert isinstance(ada.books[0], Record) and bob.books == ()
    assert authors()[0].books[1].title == "Sketches"  # the hit carries them too
    assert not hasattr(ada.books[0], "author")  # not loaded by this query


def test_a_many_to_one_is_a_record_and_writes_to_either_table_drop_it(
    graph_db: dal.Database,
) -> None:
    @dal.cached_query(graph_db, depends_on=[Author, Book])
    def book(session: Session, pk: int) -> Book | None:
        return session.get(Book, pk, options=[joinedload(Book.author)])

    assert book(10).author.name == "Ada"
    Authors(graph_db).update(1, name="Ada L.")
    assert book(10).author.name == "Ada L."


def test_a_relationship_the_read_did_not_load_names_itself_and_the_fix(
    graph_db: dal.Database,
) -> None:
    ada = Authors(graph_db).get(1)

    with pytest.raises(AttributeError, match=r"Author\.books .*selectinload\(Author\.books\)"):
        _ = ada.books
    assert not hasattr(ada, "books")
    assert ada._asdict() == {"id": 1, "name": "Ada"}


def test_nested_records_are_immutable_and_picklable_with_cycles(graph_db: dal.Database) -> None:
    @dal.cached_query(graph_db, depends_on=[Author, Book])
    def first(session: Session) -> Author:
        # Loading each book's author again closes a cycle: ada.books[0].author is ada.
        books = selectinload(Author.books).joinedload(Book.author)
        return session.scalars(select(Author).options(books).order_by(Author.id)).first()

    ada = first()
    assert ada.books[0].author is ada
    with pytest.raises(AttributeError):
        ada.books = ()  # type: ignore[misc]

    again = pickle.loads(pickle.dumps(ada))
    assert again == ada and again.books == ada.books
    assert again.books[0].author is again
    assert ada._replace(name="Ada L.").books == ada.books


def test_adding_an_object_graph_is_refused_before_anything_is_written(
    graph_db: dal.Database,
) -> None:
    authors = Authors(graph_db)

    with pytest.raises(dal.InvalidArgument, match=r"Author\.books .*db\.session\(\)"):
        authors.add(Author(id=3, name="Cy", books=[Book(id=12, title="Lost")]))
    assert authors.get(3) is None
    assert Books(graph_db).get(12) is None
    # Without related objects an instance is just its columns.
    assert authors.add(Author(id=3, name="Cy")).name == "Cy"


def test_rows_of_several_entities_keep_named_access(graph_db: dal.Database) -> None:
    @dal.cached_query(graph_db, depends_on=[Author, Book])
    def pairs(session: Session) -> list[tuple[Author, Book]]:
        query = select(Author, Book).join(Author.books).order_by(Book.id)
        return list(session.execute(query))  # type: ignore[arg-type]

    rows = pairs()

    assert [(row.Author.name, row.Book.title) for row in rows] == [
        ("Ada", "Notes"),
        ("Ada", "Sketches"),
    ]
    author, book = rows[0]
    assert isinstance(author, Record) and isinstance(book, Record)
    assert rows[0]._mapping["Book"].id == 10
    assert pairs()[1].Book.title == "Sketches"


def test_a_mapped_hierarchy_comes_back_as_records_of_each_class(graph_db: dal.Database) -> None:
    with graph_db.session() as session:
        session.add_all(
            [
                Employee(id=1, name="Eve"),
                Manager(id=2, name="Max", reports=3),
                Shape(id=1),
                Circle(id=2, radius=4),
            ]
        )

    @dal.cached_query(graph_db, depends_on=[Employee, Manager])
    def staff(session: Session) -> list[Employee]:
        everyone = with_polymorphic(Employee, [Manager])
        return list(session.scalars(select(everyone).order_by(everyone.id)))

    @dal.cached_query(graph_db, depends_on=[Shape])
    def shapes(session: Session) -> list[Shape]:
        return list(session.scalars(select(Shape).order_by(Shape.id)))

    eve, max_ = staff()
    assert (eve._model, eve.name, eve.kind) == (Employee, "Eve", "employee")
    assert (max_._model, max_.name, max_.reports, max_.kind) == (Manager, "Max", 3, "manager")
    assert [(s._model, s.radius) for s in shapes()] == [(Shape, None), (Circle, 4)]


def test_a_repository_of_a_mapped_hierarchy_is_refused_with_the_alternative(
    graph_db: dal.Database,
) -> None:
    class Managers(dal.Repository[Manager]):
        pass

    with pytest.raises(dal.ConfigError, match="cached_query"):
        Managers(graph_db)
