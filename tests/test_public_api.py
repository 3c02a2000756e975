"""The public surface: ``dal.__all__`` is exactly what ``dal`` exports, and the errors
form one tree under ``DalError``, each also a builtin a caller would catch."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import dal
import dal.errors

#: The names DESIGN.md fixes.
DESIGNED = {
    "Database",
    "Repository",
    "AsyncDatabase",
    "AsyncRepository",
    "cached_query",
    "DalError",
    "ConfigError",
    "UnknownColumnError",
    "UncacheableArgument",
    "DatabaseClosed",
    "PoolTimeout",
    "IntegrityError",
}

#: Each error and the builtin it also is (DESIGN promise 8 and the tree in dal/errors.py).
BUILTINS: dict[str, type[BaseException] | None] = {
    "ConfigError": ValueError,
    "InvalidArgument": ValueError,
    "UnknownColumnError": ValueError,
    "UncacheableArgument": TypeError,
    "NotFoundError": LookupError,
    "DatabaseClosed": RuntimeError,
    "PoolTimeout": TimeoutError,
    "DatabaseError": None,
    "IntegrityError": ValueError,
}


def _public_names() -> set[str]:
    """Names ``dal`` actually exports: not private, not its submodules."""
    return {
        name
        for name, value in vars(dal).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def test_all_matches_the_public_names() -> None:
    assert len(dal.__all__) == len(set(dal.__all__)), "duplicates in dal.__all__"
    assert set(dal.__all__) == _public_names()


def test_all_is_sorted() -> None:
    assert list(dal.__all__) == sorted(dal.__all__)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from dal import *", namespace)

    assert set(namespace) - {"__builtins__"} == set(dal.__all__)


def test_the_designed_names_are_exported() -> None:
    assert set(dal.__all__) >= DESIGNED


def test_every_error_class_of_dal_errors_is_exported() -> None:
    errors = {
        name
        for name, value in vars(dal.errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == dal.errors.__name__
    }

    assert errors <= set(dal.__all__)
    assert errors == set(BUILTINS) | {"DalError"}


def test_dal_error_is_an_exception() -> None:
    assert issubclass(dal.DalError, Exception)


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_error_is_a_dal_error_and_its_builtin(name: str) -> None:
    error = getattr(dal, name)
    builtin = BUILTINS[name]

    assert issubclass(error, dal.DalError)
    if builtin is not None:
        assert issubclass(error, builtin)
        assert isinstance(error("message"), builtin)


def test_the_subtree_of_errors() -> None:
    assert issubclass(dal.UnknownColumnError, dal.InvalidArgument)
    assert issubclass(dal.IntegrityError, dal.DatabaseError)


def test_every_exported_exception_is_in_the_tree() -> None:
    exported = [getattr(dal, name) for name in dal.__all__]
    exceptions = [e for e in exported if inspect.isclass(e) and issubclass(e, BaseException)]

    assert {e.__name__ for e in exceptions} == set(BUILTINS) | {"DalError"}
    assert all(issubclass(e, dal.DalError) for e in exceptions)


def test_importing_dal_has_no_side_effects(tmp_path: Path) -> None:
    """No connections, files or threads on import (style habit 12)."""
    code = (
        "import os, threading, dal, dal.errors\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert os.listdir('.') == [], os.listdir('.')\n"
    )
    project = Path(dal.__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(project), "PATH": os.defpath},
        check=False,
    )

    assert result.returncode == 0, result.stderr
