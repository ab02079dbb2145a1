"""Guarantee 8, a wrong database URL: a clear DatabaseURLError that names the URL
(password hidden) and says what to fix, raised when the store is opened."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fasm_es import DatabaseURLError, EncodedRecord, open_store
from fasm_es.backends.postgres import postgres_params

PASSWORD = "s3cret-pw"


def refuse_url_error(url: str, *fragments: str) -> str:
    """Open ``url``, expect DatabaseURLError; check its text; return it."""
    with pytest.raises(DatabaseURLError) as info:
        open_store(url)
    message = str(info.value)
    assert PASSWORD not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def unused_port() -> int:
    """A local TCP port with nothing listening on it (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_default_url_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'from-env.db'}"
    monkeypatch.setenv("FASM_ES_DATABASE_URL", url)
    with open_store() as store:
        assert store.url == url
        store.append([EncodedRecord("s", 1, "Raw", b"{}", "")])
    assert (tmp_path / "from-env.db").stat().st_size > 0


@pytest.mark.parametrize(
    "url", [f"mysql://app:{PASSWORD}@db.example/app", "no-scheme-at-all", "file:events.db"]
)
def test_an_unsupported_scheme_lists_the_supported_ones(url: str) -> None:
    message = refuse_url_error(url, "unsupported database URL", "memory://", "sqlite:///")
    assert "postgresql://" in message
    if PASSWORD in url:
        assert "app:***@db.example" in message


@pytest.mark.parametrize("url", ["sqlite://relative.db", "sqlite:///", "sqlite:relative.db"])
def test_a_malformed_sqlite_url_shows_the_right_form(url: str) -> None:
    refuse_url_error(url, "malformed SQLite URL", "sqlite:///relative/path.db")


def test_an_in_memory_sqlite_url_points_to_memory() -> None:
    refuse_url_error("sqlite:///:memory:", "memory://")


def test_a_sqlite_file_in_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    refuse_url_error(f"sqlite:///{missing / 'store.db'}", str(missing), "does not exist")
    assert not (tmp_path / "no").exists()


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    content = b"these are notes, not a database\n" * 200
    path.write_bytes(content)
    refuse_url_error(f"sqlite:///{path}", str(path), "fasm-es database")
    assert path.read_bytes() == content  # nothing was written to it


def test_postgres_on_a_port_where_nothing_listens() -> None:
    port = unused_port()
    url = f"postgresql://fasm:{PASSWORD}@127.0.0.1:{port}/events"
    refuse_url_error(
        url,
        f"postgresql://fasm:***@127.0.0.1:{port}/events",
        "cannot connect",
        "check the host and port",
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"postgresql://u:{PASSWORD}@127.0.0.1:99999/db", "port"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1:port/db", "port"),
        ("postgresql://127.0.0.1/db/extra", "contains '/'"),
        ("postgresql://127.0.0.1/db?sslmod=require", "unknown option 'sslmod'"),
        ("postgresql://127.0.0.1/db?schema=Mixed", "schema 'Mixed'"),
        ("postgresql://127.0.0.1/db?schema=a-b", "schema 'a-b'"),
        ("postgresql://127.0.0.1/db?pool_size=0", "pool_size"),
        ("postgresql://127.0.0.1/db?connect_timeout=soon", "connect_timeout"),
    ],
)
def test_a_malformed_postgres_url_says_what_is_wrong(url: str, problem: str) -> None:
    refuse_url_error(url, "malformed PostgreSQL URL", problem, "postgresql://user:password@")


def test_postgres_url_parts_are_percent_decoded_and_options_read() -> None:
    params = postgres_params(
        "postgres://app%40eu:p%40ss%3Aword@db.example:6543/my%20events"
        "?schema=tenant_1&connect_timeout=2.5&pool_size=3"
    )
    assert (params.user, params.password) == ("app@eu", "p@ss:word")
    assert (params.host, params.port, params.dbname) == ("db.example", 6543, "my events")
    assert (params.schema, params.connect_timeout, params.pool_size) == ("tenant_1", 2.5, 3)
    socket_params = postgres_params("postgresql:///events?host=/run/postgresql&port=5433")
    assert (socket_params.host, socket_params.port) == ("/run/postgresql", 5433)
    assert socket_params.schema == "public"


# -- with a server ----------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_database_that_does_not_exist(postgres_url: str) -> None:
    url = urlsplit(postgres_url)._replace(path="/no_such_db").geturl()
    refuse_url_error(url, "no_such_db", "does not exist", "createdb no_such_db")


@pytest.mark.postgres
def test_postgres_user_that_does_not_exist(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    url = parts._replace(netloc=f"nobody:{PASSWORD}@{parts.hostname}:{parts.port}").geturl()
    refuse_url_error(url, "nobody:***@", "check the user name and password")


@pytest.mark.postgres
def test_postgres_scheme_alias_opens_the_same_store(postgres_url: str) -> None:
    alias = "postgres://" + postgres_url.split("://", 1)[1]
    with open_store(postgres_url) as store:
        store.append([EncodedRecord("s", 1, "Raw", b"{}", "")])
    with open_store(alias) as store:
        assert store.last_version("s") == 1


@pytest.mark.postgres
def test_postgres_schemas_keep_stores_apart(postgres_url: str) -> None:
    with (
        open_store(f"{postgres_url}?schema=tenant_a") as a,
        open_store(f"{postgres_url}?schema=tenant_b") as b,
        open_store(postgres_url) as default,
    ):
        a.append([EncodedRecord("s", 1, "Raw", b'"a"', "")])
        b.append([EncodedRecord("s", 1, "Raw", b'"b"', ""), EncodedRecord("t", 1, "Raw", b"", "")])
        assert [r.body for r in a.read_log()] == [b'"a"']
        assert [r.body for r in b.read_stream("s")] == [b'"b"']
        assert list(b.streams()) == ["s", "t"]
        assert list(default.read_log()) == []
