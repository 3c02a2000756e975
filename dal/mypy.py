"""The mypy plugin: records typed by their model's columns.

Enable it in the application's mypy configuration::

    [tool.mypy]
    plugins = ["dal.mypy"]

Then ``Record[User]`` has one attribute per mapped attribute of ``User``, typed by its
``Mapped[...]`` annotation (``email: Mapped[str]`` reads as ``str``; a relationship
``Mapped[list[Order]]`` as ``tuple[Record[Order], ...]``), a name ``User`` does not map
is an error, and a cached function's ORM instances are typed as the records they
arrive as (``list[User]`` -> ``list[Record[User]]``). Only mypy imports this module.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.errorcodes import ATTR_DEFINED
from mypy.nodes import MemberExpr, MypyFile, TypeInfo, Var
from mypy.plugin import (
    AttributeContext,
    CheckerPluginInterface,
    MethodContext,
    MethodSigContext,
    Plugin,
)
from mypy.types import (
    AnyType,
    FunctionLike,
    Instance,
    ProperType,
    TupleType,
    Type,
    TypeOfAny,
    UnionType,
    UnpackType,
    get_proper_type,
)

__all__ = ["plugin"]

RECORD = "dal.records.Record"
#: Calls whose return value is what the cached function returned, made into records.
RETURNS_RECORDS = frozenset(
    f"{cls}.{name}"
    for cls in ("dal.query.CachedQuery", "dal.aio.query.AsyncCachedQuery")
    for name in ("__call__", "refresh", "uncached")
)
#: ``set(value, *args)``: the value may be the records a call returns.
TAKES_RECORDS = frozenset(
    f"{cls}.set" for cls in ("dal.query.CachedQuery", "dal.aio.query.AsyncCachedQuery")
)
#: ``Mapped[X]`` and the other annotations of a mapped attribute whose value is an X.
MAPPED = frozenset(
    {
        "sqlalchemy.orm.base.Mapped",
        "sqlalchemy.orm.attributes.InstrumentedAttribute",
        "sqlalchemy.orm.attributes.QueryableAttribute",
    }
)


#: Annotations of legacy ``Column(...)`` attributes, whose argument is the value's type.
COLUMNS = frozenset({"sqlalchemy.sql.schema.Column"})


class DalPlugin(Plugin):
    """Attribute types of ``Record[M]``; record types for cached functions' results."""

    def get_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        # Called for every name Record does not define (it has a __getattr__).
        if fullname.startswith(RECORD + "."):
            return _record_attribute
        return None

    def get_method_hook(self, fullname: str) -> Callable[[MethodContext], Type] | None:
        if fullname in RETURNS_RECORDS:
            return _returns_records
        return None

    def get_method_signature_hook(
        self, fullname: str
    ) -> Callable[[MethodSigContext], FunctionLike] | None:
        if fullname in TAKES_RECORDS:
            return _set_takes_records
        return None


def plugin(version: str) -> type[Plugin]:
    """mypy's entry point."""
    return DalPlugin


def _record_attribute(ctx: AttributeContext) -> Type:
    record = get_proper_type(ctx.type)
    name = ctx.context.name if isinstance(ctx.context, MemberExpr) else None
    if not isinstance(record, Instance) or not record.args or name is None:
        return ctx.default_attr_type
    if record.type.get(name) is not None:  # _asdict, _fields, ...: Record's own
        return ctx.default_attr_type
    model = get_proper_type(record.args[0])
    if not isinstance(model, Instance) or not _is_mapped(model.type):
        return ctx.default_attr_type  # Record[Any], Record[T]: nothing to know
    found = model.type.get(name)
    node = found.node if found is not None else None
    mapped = get_proper_type(node.type) if isinstance(node, Var) and node.type else None
    if isinstance(mapped, Instance) and mapped.type.fullname in MAPPED and mapped.args:
        return _as_records(ctx.api, mapped.args[0], collection=tuple)
    if isinstance(mapped, Instance) and mapped.type.fullname in COLUMNS and mapped.args:
        return mapped.args[0]  # email = Column(String): a Column[str]
    if isinstance(node, Var) and not node.info.fullname.startswith("sqlalchemy."):
        # Declared on the model but not as Mapped[...] (mapped_column() without an
        # annotation, an imperative mapping...): a record may carry it, untyped.
        return ctx.default_attr_type
    if model.type.fallback_to_any:  # a base mypy cannot see: anything may be mapped
        return ctx.default_attr_type
    ctx.api.fail(
        f'"Record[{model.type.name}]" has no attribute "{name}" '
        f"({model.type.name} maps no column or relationship of that name)",
        ctx.context,
        code=ATTR_DEFINED,
    )
    return AnyType(TypeOfAny.from_error)


def _returns_records(ctx: MethodContext) -> Type:
    return _as_records(ctx.api, ctx.default_return_type, collection=None)


def _set_takes_records(ctx: MethodSigContext) -> FunctionLike:
    # set(value, *args) stores what a call returns: records where the function has ORM
    # instances (both are accepted, as dal makes records of instances).
    signature = ctx.default_signature
    if not signature.arg_types:
        return signature
    value = signature.arg_types[0]
    records = _as_records(ctx.api, value, collection=None)
    either = UnionType.make_union([value, records]) if records != value else value
    return signature.copy_modified(arg_types=[either, *signature.arg_types[1:]])


def _as_records(api: CheckerPluginInterface, typ: Type, *, collection: type | None) -> Type:
    """``typ`` with each mapped class replaced by its record type, through containers.

    ``collection=tuple``: a relationship's collection (list, set, ...) is a tuple of
    records on a record; otherwise containers keep their type, as dal copies them.
    """
    proper: ProperType = get_proper_type(typ)
    if isinstance(proper, UnionType):
        return UnionType.make_union(
            [_as_records(api, item, collection=collection) for item in proper.items]
        )
    if isinstance(proper, UnpackType):  # Row[*Ts] (SQLAlchemy 2.1): the unpacked tuple
        return UnpackType(_as_records(api, proper.type, collection=None))
    if isinstance(proper, TupleType):  # also a Row: a tuple type whose fallback is Row[...]
        fallback = get_proper_type(_as_records(api, proper.partial_fallback, collection=None))
        return proper.copy_modified(
            items=[_as_records(api, item, collection=None) for item in proper.items],
            fallback=fallback if isinstance(fallback, Instance) else proper.partial_fallback,
        )
    if not isinstance(proper, Instance):
        return typ
    if _is_mapped(proper.type):
        record = _record_info(api)
        return typ if record is None else Instance(record, [proper])
    if not proper.args:
        return typ
    args = [_as_records(api, arg, collection=None) for arg in proper.args]
    if collection is tuple and proper.type.has_base("typing.Iterable"):
        # A relationship's collection: a tuple of records (of a dict's values).
        return api.named_generic_type("builtins.tuple", args[-1:])
    return proper.copy_modified(args=args)


def _record_info(api: CheckerPluginInterface) -> TypeInfo | None:
    # From the module table: the checked module need not import dal.records itself.
    # (TypeChecker has .modules; the plugin interface does not declare it.)
    modules: dict[str, MypyFile] = getattr(api, "modules", {})
    module = modules.get(RECORD.rpartition(".")[0])
    found = module.names.get("Record") if module is not None else None
    return found.node if found is not None and isinstance(found.node, TypeInfo) else None


def _is_mapped(info: TypeInfo) -> bool:
    # Declarative classes carry __mapper__ (DeclarativeBase declares it for type checkers).
    return info.get("__mapper__") is not None and info.fullname not in {
        "sqlalchemy.orm.decl_api.DeclarativeBase",
        "sqlalchemy.orm.decl_api.DeclarativeBaseNoMeta",
    }
