"""Records in web apps: FastAPI endpoints (with and without a response model, and with
``Record[Model]`` as the return annotation), pydantic, dict(), json.dumps."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

import dal
from dal.records import Record, jsonable
from dal.schema import response_model
from tests.models import User, Users

ADA = {"id": 1, "email": "ada@example.com", "name": "Ada", "balance": 5, "version": 0}


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str


@pytest.fixture
def users(db: dal.Database) -> Users:
    repo = Users(db)
    repo.add(**ADA)
    return repo


@pytest.fixture
def client(db: dal.Database, users: Users) -> TestClient:
    app = FastAPI()

    @app.get("/plain/{pk}")
    def plain(pk: int):  # type: ignore[no-untyped-def]  # no annotation, no response model
        return users.get_or_raise(pk)

    @app.get("/model/{pk}", response_model=UserOut)
    def with_model(pk: int):  # type: ignore[no-untyped-def]
        return users.get_or_raise(pk)

    @app.get("/typed/{pk}")
    def typed(pk: int) -> Record[User]:
        return users.get_or_raise(pk)

    @app.get("/list")
    def listed() -> list[Record[User]]:
        return users.find()

    @dal.cached_query(db, depends_on=[User])
    def richest(session: Session, limit: int = 1) -> list[User]:
        query = select(User).order_by(User.balance.desc()).limit(limit)
        return list(session.scalars(query))

    @app.get("/richest")
    def richest_users(found: list[Any] = Depends(richest)) -> list[Record[User]]:  # noqa: B008
        return found

    return TestClient(app)


def test_a_record_returned_without_a_response_model(client: TestClient) -> None:
    assert client.get("/plain/1").json() == ADA


def test_a_record_through_a_response_model(client: TestClient) -> None:
    assert client.get("/model/1").json() == {"id": 1, "email": "ada@example.com"}


def test_record_as_the_return_annotation(client: TestClient) -> None:
    assert client.get("/typed/1").json() == ADA
    assert client.get("/list").json() == [ADA]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["UserRecord"]
    assert schema["properties"]["email"]["type"] == "string"
    assert set(schema["required"]) == set(ADA)


def test_a_cached_function_as_a_dependency_reads_its_query_parameters(
    client: TestClient,
) -> None:
    assert client.get("/richest", params={"limit": 1}).json() == [ADA]
    assert client.get("/richest", params={"limit": "x"}).status_code == 422


def test_pydantic_from_attributes(users: Users) -> None:
    ada = users.get_or_raise(1)

    assert UserOut.model_validate(ada, from_attributes=True) == UserOut(id=1, email=ADA["email"])
    assert response_model(User).model_validate(ada).model_dump() == ADA


def test_dict_asdict_and_iteration(users: Users) -> None:
    ada = users.get_or_raise(1)

    assert dict(ada._asdict()) == ADA
    assert dict(ada) == ADA
    assert ada._fields == tuple(ADA)
    changed = ada._replace(balance=6)
    assert (changed.balance, ada.balance, users.get_or_raise(1).balance) == (6, 5, 5)
    with pytest.raises(dal.UnknownColumnError, match="'balanse'"):
        ada._replace(balanse=6)


def test_json_dumps_with_the_documented_default(users: Users) -> None:
    ada = users.get_or_raise(1)

    assert json.loads(json.dumps(ada, default=jsonable)) == ADA
    assert json.loads(json.dumps([ada, {"a": ada}], default=jsonable)) == [ADA, {"a": ADA}]
    values = [
        datetime.datetime(2024, 5, 1, 12, 30),
        datetime.date(2024, 5, 1),
        decimal.Decimal("1.10"),
        uuid.UUID(int=1),
        frozenset({1}),
    ]
    assert json.loads(json.dumps(values, default=jsonable)) == [
        "2024-05-01T12:30:00",
        "2024-05-01",
        "1.10",
        "00000000-0000-0000-0000-000000000001",
        [1],
    ]
    with pytest.raises(TypeError, match="bytes is not JSON serializable"):
        json.dumps(b"x", default=jsonable)
