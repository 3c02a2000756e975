"""pydantic schemas of records: ``Record[User]`` as a FastAPI response or model field.

pydantic (and so FastAPI) asks ``Record.__get_pydantic_core_schema__`` for the schema
of an annotation such as ``-> Record[User]``; the answer is the schema of a pydantic
model with one field per column, filled from the record's attributes. Only pydantic
calls into this module, so dal itself does not need pydantic installed.
"""

from __future__ import annotations

import threading
from typing import Any, get_args

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, create_model
from pydantic_core import CoreSchema

__all__ = ["record_schema", "response_model"]

_models: dict[Any, type[BaseModel]] = {}
_lock = threading.Lock()


def record_schema(source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
    """The core schema of ``Record[Model]``: the model's columns, read from attributes."""
    (model,) = get_args(source) or (None,)
    if not isinstance(model, type):
        raise TypeError(f"{source!r}: say which model, e.g. Record[User]")
    return handler.generate_schema(response_model(model))


def response_model(model: type[Any]) -> type[BaseModel]:
    """A pydantic model of ``model``'s columns (made once), e.g. for ``response_model=``."""
    found = _models.get(model)
    if found is None:
        with _lock:
            found = _models.get(model)
            if found is None:
                found = _models[model] = _build(model)
    return found


def _build(model: type[Any]) -> type[BaseModel]:
    from .records import record_type

    kind = record_type(model)
    fields: dict[str, Any] = {}
    for name, column in zip(kind.fields, kind.columns, strict=True):
        try:
            python_type: Any = column.type.python_type
        except NotImplementedError:
            python_type = Any
        if python_type is Any:
            fields[name] = (Any, None)
        elif column.nullable:
            fields[name] = (python_type | None, None)
        else:
            fields[name] = (python_type, ...)
    config = ConfigDict(from_attributes=True)
    return create_model(f"{model.__name__}Record", __config__=config, **fields)
