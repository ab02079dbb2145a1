"""Security: stored data decodes only through declared types; SQL is parameterised; names checked.

- A stored type name that points at a module (``pkg.mod:Class``) is refused as
  an unknown type, and the module is never imported; so is a snapshot's.
- No pickle, marshal or shelve anywhere; no ``eval``, ``exec``, ``compile``
  or ``__import__``; ``importlib`` only where a module is named by the
  operator on the command line (or by a fixed table), never by stored data.
- Every SQL statement built as an f-string interpolates only constants or
  quoted identifiers (a checker over the source, shown to catch a planted
  injection), and hostile stream ids and values round-trip unchanged on
  SQLite and PostgreSQL (where every statement sent is captured: the hostile
  text only ever travels as a parameter).
- Projection and table names are validated.
"""

from __future__ import annotations

import ast
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from workers.machine import Deposit, Ledger

from fasm_es import RawRecord, SnapshotWarning, Streams, UnknownRecordType, open_store
from fasm_es.record import Codec, RawSnapshot
from projections import LatestState, Projection, ProjectionDefinitionError

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGES = ("fasm_es", "projections")
# Modules allowed to import by name, and why: none of them takes the name from stored data.
ENTRY_POINTS_MAY_IMPORT = {
    "fasm_es/cli/loading.py": "the machine the operator names on the command line",
    "fasm_es/testing/__main__.py": "the simulation the operator names on the command line",
    "projections/__main__.py": "the projection the operator names on the command line",
    "fasm_es/testing/__init__.py": "its own submodules, lazily, from a fixed table",
}
PROBE = "fasm_es_probe_module"


@pytest.fixture
def probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module on the path that, if ever imported, leaves a mark on disk."""
    mark = tmp_path / "imported"
    (tmp_path / f"{PROBE}.py").write_text(
        f"from pathlib import Path\nPath({str(mark)!r}).write_text('imported')\n"
        "class Evil:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield mark
    sys.modules.pop(PROBE, None)


HOSTILE_TAGS = [
    f"{PROBE}.Evil",
    f"{PROBE}:Evil",
    PROBE,
    f"{PROBE}.Evil@2",
    "os:system",
    "builtins.eval",
    "subprocess.Popen",
    "__import__",
]


@pytest.mark.parametrize("tag", HOSTILE_TAGS)
def test_a_stored_type_name_pointing_at_a_module_is_refused_and_never_imported(
    probe: Path, tag: str
) -> None:
    with open_store("memory://") as store:
        Streams(Ledger(), store).submit("acct", Deposit(ref="a", amount=1))
        genuine = next(iter(store.read_stream("acct")))
    raw = RawRecord("acct", 1, 1, tag, genuine.body)
    with pytest.raises(UnknownRecordType, match="not declared by machine Ledger"):
        Codec.for_machine(Ledger()).decode(raw)
    assert not probe.exists()
    assert PROBE not in sys.modules


def test_a_snapshot_naming_a_module_is_ignored_and_never_imported(probe: Path) -> None:
    class Snapshotted(Ledger):
        snapshot_every = 1000  # none saved by the submit: only the planted one

    with open_store("memory://") as store:
        streams = Streams(Snapshotted(), store)
        streams.submit("acct", Deposit(ref="a", amount=1))
        store.save_snapshot(RawSnapshot("acct", 1, f"{PROBE}:Evil", b'{"applied": 99}'))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            state = Streams(Snapshotted(), store).load("acct").state
    assert state.applied == 1  # folded from the log, not taken from the snapshot
    assert any(issubclass(w.category, SnapshotWarning) for w in caught)
    assert not probe.exists()
    assert PROBE not in sys.modules


# -- no dynamic code from data ------------------------------------------------------------------


def sources() -> Iterator[tuple[str, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((REPOSITORY / package).rglob("*.py")):
            relative = path.relative_to(REPOSITORY).as_posix()
            yield relative, ast.parse(path.read_text(), filename=relative)


FORBIDDEN_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "jsonpickle"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}


def dynamic_code(relative: str, tree: ast.Module) -> list[str]:
    """Where a module imports a deserialiser of code or runs code built at run time."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt | ast.expr):
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            root = name.split(".")[0]
            if root in FORBIDDEN_MODULES:
                found.append(f"{relative}:{node.lineno} imports {name}")
            if root == "importlib" and relative not in ENTRY_POINTS_MAY_IMPORT:
                found.append(f"{relative}:{node.lineno} imports importlib")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORBIDDEN_CALLS
        ):
            found.append(f"{relative}:{node.lineno} calls {node.func.id}()")
    return found


def test_no_pickle_no_eval_no_dynamic_import_outside_the_command_line() -> None:
    problems = [p for relative, tree in sources() for p in dynamic_code(relative, tree)]
    assert problems == []


def test_the_dynamic_code_check_finds_what_it_looks_for() -> None:
    planted = ast.parse("import pickle\nimport importlib\nx = eval('1')\n")
    assert len(dynamic_code("fasm_es/record.py", planted)) == 3


# -- SQL -----------------------------------------------------------------------------------------

SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|LOCK|TRUNCATE)\b")
QUOTING_CALLS = {"_quote", "quote", "Identifier", "check_identifier"}


def _call_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return func.id
        if isinstance(func, ast.Attribute):
            return func.attr
    return None


def _quoted_names(function: ast.AST) -> set[str]:
    """Local names bound to the result of a quoting call (``old, new = _quote(a), _quote(b)``)."""
    bound: set[str] = set()
    for node in ast.walk(function):
        if not isinstance(node, ast.Assign):
            continue
        pairs: list[tuple[ast.expr, ast.expr]] = []
        for target in node.targets:
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                pairs += list(zip(target.elts, node.value.elts, strict=False))
            else:
                pairs.append((target, node.value))
        for target, value in pairs:
            if isinstance(target, ast.Name) and _call_name(value) in QUOTING_CALLS:
                bound.add(target.id)
    return bound


def _safe(node: ast.expr, quoted: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id.isupper() or node.id in quoted
    if isinstance(node, ast.Attribute):
        return node.attr.isupper()
    return _call_name(node) in QUOTING_CALLS


def unsafe_sql(relative: str, tree: ast.Module) -> list[str]:
    """SQL text built from values that are neither constants nor quoted identifiers."""
    found = []
    scopes: list[ast.AST] = [
        n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    scopes.append(tree)  # last: what no function holds
    seen: set[int] = set()
    for scope in scopes:
        quoted = _quoted_names(scope) if scope is not tree else set()
        for node in ast.walk(scope):
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, ast.JoinedStr):
                parts = [v.value for v in node.values if isinstance(v, ast.Constant)]
                text = "".join(p for p in parts if isinstance(p, str))
                if not SQL_WORDS.search(text):
                    continue
                for value in node.values:
                    if isinstance(value, ast.FormattedValue) and not _safe(value.value, quoted):
                        found.append(f"{relative}:{node.lineno}: {ast.unparse(value.value)}")
            elif (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Mod)
                and isinstance(node.left, ast.Constant)
                and isinstance(node.left.value, str)
                and SQL_WORDS.search(node.left.value)
            ):
                found.append(f"{relative}:{node.lineno}: % formatting of SQL")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
                and isinstance(node.func.value, ast.Constant)
                and isinstance(node.func.value.value, str)
                and SQL_WORDS.search(node.func.value.value)
            ):
                found.append(f"{relative}:{node.lineno}: str.format of SQL")
    return sorted(set(found))


def test_sql_text_interpolates_only_constants_and_quoted_identifiers() -> None:
    problems = [p for relative, tree in sources() for p in unsafe_sql(relative, tree)]
    assert problems == []


def test_the_sql_check_finds_an_injection() -> None:
    planted = ast.parse(
        "def read(c, stream):\n"
        "    c.execute(f'SELECT * FROM {TABLE} WHERE originator_id = {stream}')\n"
        "    c.execute('DELETE FROM t WHERE id = %s' % stream)\n"
        "    c.execute('DROP TABLE {}'.format(stream))\n"
        "    name = _quote(c, stream)\n"
        "    c.execute(f'DROP TABLE {name}')\n"
    )
    assert len(unsafe_sql("planted.py", planted)) == 3


HOSTILE = [
    "'; DROP TABLE fasm_records; --",
    '" OR 1=1 --',
    "acct'); DELETE FROM fasm_snapshots; --",
    "back\\slash",
    "percent %s %(x)s {0}",
    "ünïcödé ☃ 𝄞",
]


@pytest.mark.backends("sqlite", "postgres")
def test_hostile_stream_ids_and_values_round_trip_unchanged(
    backend: str, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []
    if backend == "postgres":
        original = psycopg.Cursor.execute

        def capture(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            text = query.as_string(self) if hasattr(query, "as_string") else str(query)
            sent.append(text if isinstance(text, str) else bytes(text).decode())
            return original(self, query, params, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", capture)
    with open_store(store_url) as store:
        streams = Streams(Ledger(), store)
        for text in HOSTILE:
            streams.submit(text, Deposit(ref=text[:200], amount=1))
        reread = Streams(Ledger(), store)
        for text in HOSTILE:
            records = list(reread.records(text))
            assert [(r.stream, r.input.value.ref) for r in records] == [(text, text[:200])]  # type: ignore[union-attr]
        assert sorted(store.streams()) == sorted(HOSTILE)
        assert store.last_position() == len(HOSTILE)
    if backend == "postgres":
        assert sent, "no statement was captured"
        leaked = [s for s in sent for text in HOSTILE if text in s]
        assert leaked == []


@pytest.mark.parametrize("name", ["x; DROP TABLE y", "Robert'); --", "a b", "UPPER", "1abc", ""])
def test_projection_and_table_names_are_validated(name: str) -> None:
    with pytest.raises(ProjectionDefinitionError, match="not allowed"):
        Projection(name, Ledger(), [])
    with pytest.raises(ProjectionDefinitionError, match="not allowed"):
        LatestState(Ledger(), table=name)
