"""A projection: the tables of a read model, and handlers for the records it cares about.

::

    points = Projection("coffee_points", CoffeeShop(), tables=[Points])

    @points.on_action(ShowBalance)
    def balance(ctx: Context, shown: ShowBalance) -> None:
        ctx.upsert(Points, {"user": ctx.stream, "points": shown.points}, key=["user"])

A projection is tied to one machine, whose declared types decode the records.
Handlers are chosen by type:

- :meth:`Projection.on_input` for a normal input whose value is an instance
  of the type;
- :meth:`Projection.on_result` for a completion whose result is an instance;
- :meth:`Projection.on_action` for each action (tracked or untracked) the
  record emitted whose payload is an instance, in emission order;
- :meth:`Projection.on_record` for every record;
- :meth:`Projection.before_commit` once per batch, before it commits.

For each record the input (or result) handlers run first, then the action
handlers, then the record handlers; handlers of one kind run in the order
they were declared. A projection only describes: it can write its own
tables and nothing else (it never dispatches actions), so running or
rebuilding it has no side effect outside the view.

Names of projections and tables are plain lowercase identifiers
(``[a-z_][a-z0-9_]*``, at most 48 characters), because they become SQL
names. Tables live in the connection's default schema and have no foreign
keys: a rebuild replaces them one by one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import Table

from fasm_es.machine import StateMachine
from fasm_es.record import COMPLETED_TAG, Codec, Record
from projections.context import Context, TableRef
from projections.errors import ProjectionDefinitionError

T = TypeVar("T")
Handler = Callable[[Context, T], None]
"""A handler of inputs, results or actions of type ``T``: ``handler(ctx, value)``."""
RecordHandler = Callable[[Context, Record[Any, Any, Any, Any]], None]
"""A handler of every record: ``handler(ctx, record)``."""
CommitHook = Callable[[Context], None]
"""Called once per batch, before its rows and position commit: ``hook(ctx)``."""

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,47}")
"""Projection and table names: short enough for PostgreSQL with a suffix added."""


def check_identifier(kind: str, name: object) -> str:
    """Return ``name`` if it is a valid projection or table name, else raise."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise ProjectionDefinitionError(
            f"{kind} name {name!r} is not allowed: use lowercase letters, digits and '_', "
            "starting with a letter or '_', at most 48 characters"
        )
    return name


def as_table(ref: Table | type[Any]) -> Table:
    """The ``Table`` of a Core table or a declarative model class."""
    if isinstance(ref, Table):
        return ref
    table = getattr(ref, "__table__", None)
    if not isinstance(table, Table):
        raise ProjectionDefinitionError(
            f"{ref!r} is neither a SQLAlchemy Table nor a declarative model class "
            "(a class with a __table__)"
        )
    return table


def _check_table(projection: str, table: Table) -> None:
    check_identifier("table", table.name)
    if table.schema is not None:
        raise ProjectionDefinitionError(
            f"projection {projection!r}: table {table.name!r} names schema {table.schema!r}; "
            "read-model tables live in the connection's default schema (set the schema "
            "in the view database URL instead)"
        )
    if table.foreign_keys:
        raise ProjectionDefinitionError(
            f"projection {projection!r}: table {table.name!r} has foreign keys; read-model "
            "tables may not have them, because a rebuild replaces tables one at a time"
        )


class Projection:
    """A read model of one machine's records: its tables and its handlers.

    ``tables`` are SQLAlchemy ``Table`` objects or declarative model classes.
    ``stream_prefix`` limits the projection to streams whose id starts with
    it. Records of a type the machine does not declare stop the projection
    with the record named, unless ``ignore_unknown_types`` says to pass over
    them (for a store shared with other machines). Raises
    :class:`~projections.ProjectionDefinitionError` for a bad name or table.
    """

    def __init__(
        self,
        name: str,
        machine: StateMachine[Any, Any, Any, Any, Any],
        tables: Iterable[Table | type[Any]] = (),
        *,
        stream_prefix: str | None = None,
        ignore_unknown_types: bool = False,
    ) -> None:
        self.name = check_identifier("projection", name)
        self.machine = machine
        self.stream_prefix = stream_prefix
        self.ignore_unknown_types = ignore_unknown_types
        self.tables: tuple[Table, ...] = tuple(as_table(t) for t in tables)
        seen: set[str] = set()
        for table in self.tables:
            _check_table(name, table)
            if table.name in seen:
                raise ProjectionDefinitionError(
                    f"projection {name!r}: table {table.name!r} is declared twice"
                )
            seen.add(table.name)
        self._by_name = {t.name: t for t in self.tables}
        self.codec: Codec[Any, Any, Any, Any] = Codec(machine.types, machine.schema)
        self._inputs: list[tuple[type[Any], Handler[Any]]] = []
        self._results: list[tuple[type[Any], Handler[Any]]] = []
        self._actions: list[tuple[type[Any], Handler[Any]]] = []
        self.record_handlers: list[RecordHandler] = []
        self.commit_hooks: list[CommitHook] = []
        self._input_dispatch: dict[type[Any], tuple[Handler[Any], ...]] = {}
        self._result_dispatch: dict[type[Any], tuple[Handler[Any], ...]] = {}
        self._action_dispatch: dict[type[Any], tuple[Handler[Any], ...]] = {}
        self._wanted: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"Projection({self.name!r}, machine={self.machine.name})"

    # -- declaring handlers --------------------------------------------------------------

    def on_input(self, type_: type[T]) -> Callable[[Handler[T]], Handler[T]]:
        """Decorate a handler of normal inputs whose value is an instance of ``type_``."""
        return self._register(self._inputs, type_)

    def on_result(self, type_: type[T]) -> Callable[[Handler[T]], Handler[T]]:
        """Decorate a handler of completions whose result is an instance of ``type_``.

        The completed tracked action's id is ``ctx.record.input.id``.
        """
        return self._register(self._results, type_)

    def on_action(self, type_: type[T]) -> Callable[[Handler[T]], Handler[T]]:
        """Decorate a handler of emitted actions (tracked or not) that are ``type_`` instances."""
        return self._register(self._actions, type_)

    def on_record(self, handler: RecordHandler) -> RecordHandler:
        """Decorate a handler called with every record of the projection's streams."""
        self.record_handlers.append(handler)
        self._wanted.clear()
        return handler

    def before_commit(self, hook: CommitHook) -> CommitHook:
        """Decorate a hook called at the end of each batch, before it commits."""
        self.commit_hooks.append(hook)
        return hook

    def _register(
        self, handlers: list[tuple[type[Any], Handler[Any]]], type_: type[T]
    ) -> Callable[[Handler[T]], Handler[T]]:
        if not isinstance(type_, type):
            raise ProjectionDefinitionError(
                f"projection {self.name!r}: handlers are chosen by class, got {type_!r} "
                "(register one handler per member of a union)"
            )

        def register(handler: Handler[T]) -> Handler[T]:
            handlers.append((type_, handler))
            for cache in (self._input_dispatch, self._result_dispatch, self._action_dispatch):
                cache.clear()
            self._wanted.clear()
            return handler

        return register

    # -- tables -------------------------------------------------------------------------

    def table(self, ref: TableRef) -> Table:
        """The declared table named by ``ref`` (a Table, model class or name)."""
        name = ref if isinstance(ref, str) else as_table(ref).name
        table = self._by_name.get(name)
        if table is None:
            declared = ", ".join(sorted(self._by_name)) or "none"
            raise ProjectionDefinitionError(
                f"projection {self.name!r} declares no table {name!r} (declared: {declared})"
            )
        return table

    # -- dispatch ------------------------------------------------------------------------

    def input_handlers(self, value: object) -> tuple[Handler[Any], ...]:
        """The input handlers for ``value``, in declaration order."""
        found = self._input_dispatch.get(type(value))
        return (
            found if found is not None else self._resolve(self._inputs, self._input_dispatch, value)
        )

    def result_handlers(self, value: object) -> tuple[Handler[Any], ...]:
        """The result handlers for ``value``, in declaration order."""
        found = self._result_dispatch.get(type(value))
        return (
            found
            if found is not None
            else self._resolve(self._results, self._result_dispatch, value)
        )

    def action_handlers(self, value: object) -> tuple[Handler[Any], ...]:
        """The action handlers for ``value``, in declaration order."""
        found = self._action_dispatch.get(type(value))
        return (
            found
            if found is not None
            else self._resolve(self._actions, self._action_dispatch, value)
        )

    @staticmethod
    def _resolve(
        declared: list[tuple[type[Any], Handler[Any]]],
        cache: dict[type[Any], tuple[Handler[Any], ...]],
        value: object,
    ) -> tuple[Handler[Any], ...]:
        of = type(value)
        found = cache[of] = tuple(h for t, h in declared if issubclass(of, t))
        return found

    @property
    def handles_inputs(self) -> bool:
        """Whether any handler looks at normal inputs."""
        return bool(self._inputs)

    @property
    def handles_results(self) -> bool:
        """Whether any handler looks at completions' results."""
        return bool(self._results)

    @property
    def handles_actions(self) -> bool:
        """Whether any handler looks at emitted actions."""
        return bool(self._actions)

    @property
    def wants_everything(self) -> bool:
        """Whether every record reaches a handler (so :meth:`wants` need not be asked)."""
        return self.stream_prefix is None and bool(self.record_handlers or self._actions)

    def describe_handler(self, handler: object) -> str:
        """How an error names ``handler``: its kind and its qualified name."""
        kinds = (
            ("input handler", [h for _, h in self._inputs]),
            ("result handler", [h for _, h in self._results]),
            ("action handler", [h for _, h in self._actions]),
            ("record handler", self.record_handlers),
        )
        kind = next((k for k, handlers in kinds if handler in handlers), "handler")
        name = getattr(handler, "__qualname__", None)
        return f"{kind} {name if isinstance(name, str) else repr(handler)}"

    def wants(self, stream: str, tag: str) -> bool:
        """Whether a record of ``stream`` and type ``tag`` can reach a handler.

        Records that cannot are passed over without being decoded (their
        position still advances). A record of an unknown or older type is
        always wanted, so decoding reports it or upcasts it.
        """
        if self.stream_prefix is not None and not stream.startswith(self.stream_prefix):
            return False
        wanted = self._wanted.get(tag)
        if wanted is None:
            wanted = self._wants_tag(tag)
            self._wanted[tag] = wanted
        return wanted

    def _wants_tag(self, tag: str) -> bool:
        if self.record_handlers or self._actions:
            return True
        schema, types = self.machine.schema, self.machine.types
        if tag == schema.current_tag(COMPLETED_TAG):
            return bool(self._results)
        for base, declared in types.input_tags.items():
            if schema.current_tag(base) == tag:
                if not isinstance(declared, type):
                    return bool(self._inputs)
                return any(issubclass(declared, t) for t, _ in self._inputs)
        return True
