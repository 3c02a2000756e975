"""What a text SQL statement writes, read off its own words: the tables it names as targets.

Text reaches dal as a string, so the tables are taken from the statement itself, never
from the tables this process happens to cache: another process (the bus) may cache
tables this one has never heard of. Comments, string literals and dollar-quoted bodies
are skipped first, so a word inside them is no write. A write whose targets cannot be
read (``EXECUTE`` of an unknown prepared statement, ``CALL``, ``DO``, DDL that alters or
drops, a target that is no name) is a write to every table (``ALL``).
"""

from __future__ import annotations

import re
import threading
from typing import NamedTuple

from ..store.keys import table_key

__all__ = ["TextWrites", "analyse", "names_in"]

#: Table name standing for "every table" (the same as ``statements.ALL``).
ALL = "*"


class TextWrites(NamedTuple):
    """The tables one text statement writes, each with its kind of write."""

    #: (table key, "insert" / "update" / "delete" / "truncate" / "other")
    tables: tuple[tuple[str, str], ...]
    #: The statement changes the schema (views, triggers, foreign keys may differ now).
    ddl: bool = False


_EVERYTHING = TextWrites(((ALL, "other"),))
_NOTHING = TextWrites(())

_COMMON = r"""
  (?P<ws>\s+)
| (?P<comment>--[^\n]*|/\*.*?\*/)
| (?P<qident>"(?:[^"]|"")*"|`(?:[^`]|``)*`|\[[^\]]*\])
| (?P<word>[^\W\d]\w*|\d\w*)
| (?P<punct>.)
"""
# PostgreSQL: backslashes are literal except in E'' strings; dollar-quoted bodies.
_PG = r"""
  (?P<dollar>\$(?P<tag>(?:[^\W\d]\w*)?)\$.*?\$(?P=tag)\$)
| (?P<string>[Ee]'(?:[^'\\]|''|\\.)*'|'(?:[^']|'')*')
| (?P<param>\$\d+)
|"""
# MySQL: backslash escapes in both quotes, '#' comments; "..." is a string by default.
_MYSQL = r"""
  (?P<string>'(?:[^'\\]|''|\\.)*'|"(?:[^"\\]|""|\\.)*")
| (?P<hash>\#[^\n]*)
|"""
_SQLITE = r"""
  (?P<string>'(?:[^']|'')*')
|"""
_PATTERNS = {
    "postgresql": re.compile(_PG + _COMMON, re.S | re.X),
    "mysql": re.compile(_MYSQL + _COMMON, re.S | re.X),
    "sqlite": re.compile(_SQLITE + _COMMON, re.S | re.X),
}

# Tokens: ("w", lowercased word), ("i", quoted identifier), ("p", punctuation), ("s", literal)
_Token = tuple[str, str]


def _tokens(sql: str, dialect: str) -> list[_Token]:
    pattern = _PATTERNS.get("mysql" if dialect == "mariadb" else dialect, _PATTERNS["sqlite"])
    out: list[_Token] = []
    for match in pattern.finditer(sql):
        kind = match.lastgroup
        text = match.group()
        if kind in ("ws", "comment", "hash"):
            continue
        if kind == "word":
            out.append(("w", text.lower()))
        elif kind == "qident":
            out.append(("i", text[1:-1]))
        elif kind in ("string", "dollar", "param"):
            out.append(("s", ""))
        elif kind == "tag":
            continue
        else:
            out.append(("p", text))
    return out


# -- the cache of analyses --------------------------------------------------------------

_MAX_CACHED = 2048
_cache: dict[tuple[str, str], TextWrites] = {}
_lock = threading.Lock()
#: PostgreSQL prepared statements seen: name -> what EXECUTE of it writes. Several
#: connections may prepare one name differently: the union of all of them.
_prepared: dict[str, set[tuple[str, str]]] = {}


def analyse(sql: str, dialect: str) -> TextWrites:
    """What ``sql`` writes (cached per statement text: the hot path is one lookup)."""
    key = (dialect, sql)
    found = _cache.get(key)
    if found is not None:
        return found
    try:
        found = _analyse(sql, dialect)
    except Exception:
        found = _EVERYTHING
    if "execute" not in sql.lower():  # EXECUTE depends on the PREPAREs seen so far
        with _lock:
            if len(_cache) >= _MAX_CACHED:
                _cache.clear()
            _cache[key] = found
    return found


def _analyse(sql: str, dialect: str) -> TextWrites:
    tokens = _tokens(sql, dialect)
    writes: list[tuple[str, str]] = []
    ddl = False
    for statement in _split(tokens):
        found = _statement(statement, dialect)
        if found is None:
            return _EVERYTHING._replace(ddl=ddl or _is_ddl(statement))
        writes.extend(found.tables)
        ddl = ddl or found.ddl
    if any(t == ALL for t, _ in writes):
        return _EVERYTHING._replace(ddl=ddl)
    return TextWrites(tuple(dict.fromkeys(writes)), ddl) if writes or ddl else _NOTHING


def _split(tokens: list[_Token]) -> list[list[_Token]]:
    statements: list[list[_Token]] = [[]]
    for token in tokens:
        if token == ("p", ";"):
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if s]


_DDL = {"create", "alter", "drop", "rename", "comment", "grant", "revoke", "import"}
#: Top-level statements whose writes nobody can read off the text.
_OPAQUE = {"call", "do", "exec", "handler", "import", "xa"}
#: Words before UPDATE / DELETE / INSERT that make them no statement of their own:
#: ON DUPLICATE KEY UPDATE, DO UPDATE, FOR [NO KEY] UPDATE, ON DELETE/UPDATE actions,
#: MERGE's WHEN MATCHED THEN UPDATE (MERGE INTO names the target).
_NOT_A_WRITE_AFTER = {"key", "do", "for", "on", "of", "before", "after", "instead", "then"}
_MODIFIERS = {"low_priority", "delayed", "high_priority", "ignore", "quick", "only"}


def _is_ddl(statement: list[_Token]) -> bool:
    return statement[0] in (("w", w) for w in _DDL)


def _statement(tokens: list[_Token], dialect: str) -> TextWrites | None:
    """The writes of one statement; None: unknowable (every table)."""
    start = 0
    # EXPLAIN ANALYZE runs the statement it explains.
    while start < len(tokens) and tokens[start] in (
        ("w", "explain"),
        ("w", "analyze"),
        ("w", "analyse"),
        ("w", "verbose"),
    ):
        start += 1
    if start < len(tokens) and tokens[start] == ("p", "("):
        start = _close(tokens, start)
    if start >= len(tokens):
        return _NOTHING
    kind, first = tokens[start]
    if kind != "w":
        return _dml(tokens, start)
    if first in _DDL:
        return _ddl(tokens, start)
    if first in _OPAQUE:
        return None
    if first == "execute":
        return _execute(tokens, start, dialect)
    if first == "prepare":
        return _prepare(tokens, start, dialect)
    if first == "truncate":
        i = _skip(tokens, start + 1, {"table", "only"})
        names = _names(tokens, i)
        return None if not names else TextWrites(tuple((n, "truncate") for n in names))
    if first == "refresh" and _word(tokens, start + 1) == "materialized":
        i = _skip(tokens, start + 3, {"concurrently"})
        name = _name(tokens, i)
        return None if name is None else TextWrites(((name[0], "other"),))
    if first == "copy":
        name = _name(tokens, start + 1)
        if name is None:
            return _NOTHING  # COPY (query) TO: a read
        i = name[1]
        if i < len(tokens) and tokens[i] == ("p", "("):
            i = _close(tokens, i)
        return TextWrites(((name[0], "insert"),)) if _word(tokens, i) == "from" else _NOTHING
    if first == "load" and _word(tokens, start + 1) in ("data", "xml"):
        for i in range(start, len(tokens) - 1):
            if tokens[i] == ("w", "into") and tokens[i + 1] == ("w", "table"):
                name = _name(tokens, i + 2)
                return None if name is None else TextWrites(((name[0], "other"),))
        return None
    if first == "replace" and _word(tokens, start + 1) != "(":
        i = _skip(tokens, start + 1, _MODIFIERS | {"into"})
        name = _name(tokens, i)
        return None if name is None else TextWrites(((name[0], "other"),))
    return _dml(tokens, start)


def _dml(tokens: list[_Token], start: int) -> TextWrites | None:
    """INSERT / UPDATE / DELETE / MERGE anywhere in a statement (CTEs, EXPLAIN ANALYZE)."""
    writes: list[tuple[str, str]] = []
    upsert = any(t in (("w", "conflict"), ("w", "duplicate")) for t in tokens)
    for i in range(start, len(tokens)):
        kind, word = tokens[i]
        if kind != "w" or word not in ("insert", "update", "delete", "merge"):
            continue
        before = tokens[i - 1][1] if i > start and tokens[i - 1][0] == "w" else ""
        if before in _NOT_A_WRITE_AFTER:
            continue
        if word == "insert":
            found = _insert(tokens, i + 1, upsert)
        elif word == "update":
            found = _update(tokens, i + 1)
        elif word == "delete":
            found = _delete(tokens, i + 1)
        else:
            if _word(tokens, i + 1) != "into":
                continue  # MERGE as a word (ALGORITHM = MERGE)
            name = _name(tokens, i + 2)
            found = None if name is None else [(name[0], "other")]
        if found is None:
            return None
        writes.extend(found)
    return TextWrites(tuple(writes))


def _insert(tokens: list[_Token], i: int, upsert: bool) -> list[tuple[str, str]] | None:
    op = "other" if upsert else "insert"  # an upsert updates rows; REPLACE deletes them
    while True:
        word = _word(tokens, i)
        if word in _MODIFIERS:
            i += 1
        elif word == "or":  # SQLite: INSERT OR REPLACE / IGNORE / ...
            op = "other"
            i += 2
        else:
            break
    if _word(tokens, i) == "into":
        i += 1
    name = _name(tokens, i)
    return None if name is None else [(name[0], op)]


def _update(tokens: list[_Token], i: int) -> list[tuple[str, str]] | None:
    """UPDATE a [, b] [JOIN c ...] SET: MySQL may set columns of every table named."""
    i = _skip(tokens, i, _MODIFIERS)
    if _word(tokens, i) == "or":  # SQLite: UPDATE OR REPLACE
        i += 2
    name = _name(tokens, i)
    if name is None:
        return None
    targets = [name[0]]
    depth = 0
    for j in range(name[1], len(tokens)):
        token = tokens[j]
        if token == ("p", "("):
            depth += 1
        elif token == ("p", ")"):
            depth -= 1
        elif depth == 0 and token == ("w", "set"):
            break
        elif depth == 0 and token in (("p", ","), ("w", "join")):
            more = _name(tokens, j + 1)
            if more is not None:
                targets.append(more[0])
    return [(t, "update") for t in targets]


def _delete(tokens: list[_Token], i: int) -> list[tuple[str, str]] | None:
    """DELETE FROM a [, b USING ...] or MySQL's DELETE a [, b] FROM a JOIN b ..."""
    i = _skip(tokens, i, _MODIFIERS)
    if _word(tokens, i) == "from":
        names = _names(tokens, _skip(tokens, i + 1, {"only"}), aliases=True)
        return [(n, "delete") for n in names] or None
    targets = _names(tokens, i)
    if not targets:
        return None
    # The targets may be aliases of the tables in FROM: resolve them, or take all of FROM.
    aliases: dict[str, str] = {}
    j = i
    while j < len(tokens) and tokens[j] != ("w", "from"):
        j += 1
    k = j
    while k < len(tokens) and tokens[k] != ("w", "where"):
        if tokens[k] in (("w", "from"), ("w", "join"), ("p", ","), ("w", "using")):
            name = _name(tokens, k + 1)
            if name is not None:
                aliases[name[0]] = name[0]
                alias = _alias(tokens, name[1])
                if alias is not None:
                    aliases[alias] = name[0]
        k += 1
    if all(t in aliases for t in targets):
        return [(aliases[t], "delete") for t in targets]
    return [(t, "delete") for t in dict.fromkeys([*targets, *aliases.values()])]


def _ddl(tokens: list[_Token], start: int) -> TextWrites | None:
    """CREATE of a new object writes nothing yet; ALTER, DROP, OR REPLACE may change anything."""
    first = tokens[start][1]
    if first in ("comment", "grant", "revoke"):
        return TextWrites((), ddl=True)
    if first == "create" and _word(tokens, start + 1) != "or":
        return TextWrites((), ddl=True)
    return None


def _execute(tokens: list[_Token], start: int, dialect: str) -> TextWrites | None:
    name = _name(tokens, start + 1)
    if dialect != "postgresql" or name is None:
        return None
    with _lock:
        known = _prepared.get(name[0])
        return None if known is None else TextWrites(tuple(known))


def _prepare(tokens: list[_Token], start: int, dialect: str) -> TextWrites | None:
    """PREPARE writes nothing; remember what EXECUTE of it will write."""
    name = _name(tokens, start + 1)
    if dialect != "postgresql" or name is None:
        return _NOTHING  # MySQL's PREPARE ... FROM a string: its EXECUTE is unknowable
    i = name[1]
    while i < len(tokens) and tokens[i] != ("w", "as"):
        i += 1
    body = _statement(tokens[i + 1 :], dialect) if i + 1 < len(tokens) else None
    writes = {(ALL, "other")} if body is None else set(body.tables)
    with _lock:
        _prepared.setdefault(name[0], set()).update(writes)
    return _NOTHING


# -- names ----------------------------------------------------------------------------


def _word(tokens: list[_Token], i: int) -> str | None:
    if i < len(tokens) and tokens[i][0] in ("w", "p"):
        return tokens[i][1]
    return None


def _skip(tokens: list[_Token], i: int, words: set[str]) -> int:
    while _word(tokens, i) in words:
        i += 1
    return i


def _close(tokens: list[_Token], i: int) -> int:
    """The index after the parenthesis that closes the one at ``i``."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j] == ("p", "("):
            depth += 1
        elif tokens[j] == ("p", ")"):
            depth -= 1
            if depth == 0:
                return j + 1
    return len(tokens)


def _name(tokens: list[_Token], i: int) -> tuple[str, int] | None:
    """The table key of a (possibly qualified) name at ``i``, and the index after it."""
    parts: list[str] = []
    while i < len(tokens) and tokens[i][0] in ("w", "i"):
        parts.append(tokens[i][1])
        i += 1
        if i < len(tokens) and tokens[i] == ("p", ".") and i + 1 < len(tokens):
            i += 1
            continue
        break
    if not parts:
        return None
    if i < len(tokens) and tokens[i] == ("p", "*"):  # PostgreSQL's "t *": t and its children
        i += 1
    return table_key(parts[-1]), i


_NOT_ALIAS = {
    "using", "where", "join", "inner", "left", "right", "cross", "natural", "straight_join",
    "on", "set", "order", "limit", "returning", "partition", "from", "as", "values",
}  # fmt: skip


def _alias(tokens: list[_Token], i: int) -> str | None:
    if _word(tokens, i) == "as":
        i += 1
    if i < len(tokens) and tokens[i][0] in ("w", "i") and tokens[i][1] not in _NOT_ALIAS:
        return table_key(tokens[i][1])
    return None


def _names(tokens: list[_Token], i: int, aliases: bool = False) -> list[str]:
    """Comma-separated names from ``i`` (each with an optional alias, and ``.*``)."""
    names: list[str] = []
    while True:
        name = _name(tokens, i)
        if name is None:
            return names
        names.append(name[0])
        i = name[1]
        if aliases and _alias(tokens, i) is not None:
            i += 2 if _word(tokens, i) == "as" else 1
        if _word(tokens, i) != ",":
            return names
        i += 1


def names_in(sql: str, dialect: str) -> set[str]:
    """Keys of every word or quoted name in ``sql`` (what a view's definition may read)."""
    return {table_key(value) for kind, value in _tokens(sql, dialect) if kind in ("w", "i")}
