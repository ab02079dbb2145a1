"""A PostgreSQL server for the benchmarks that need one: given, started for the run, or none.

The URL comes from ``--postgres-url`` or ``$FASM_ES_BENCH_POSTGRES_URL``: a
database whose user may create schemas in it. Without one, a throwaway cluster
is started with the server binaries installed on this machine, exactly as the
test suite starts its own (the cluster class lives in ``tests/conftest.py``),
and deleted afterwards. When neither works, the benchmark reports why it
skipped its PostgreSQL figures instead of failing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

POSTGRES_URL_ENV = "FASM_ES_BENCH_POSTGRES_URL"

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Server:
    """Where the benchmark's databases live: a URL, or why there is none.

    ``origin`` says where the URL came from (for the notes under a table).
    """

    url: str | None
    origin: str

    @property
    def skipped(self) -> str | None:
        """Why the PostgreSQL figures are skipped, or None when there is a server."""
        return None if self.url else self.origin


@contextmanager
def postgres_server(url: str | None, progress: Progress) -> Iterator[Server]:
    """The server at ``url``, else a throwaway cluster for the block, else the reason for none."""
    if url:
        yield Server(url, "the given URL")
        return
    try:
        # The test suite's cluster: one way of starting a server, kept in one place.
        from tests.conftest import PostgresCluster, _server_binaries
    except ImportError as exc:
        yield Server(None, f"no URL, and the test suite's cluster helper is unavailable ({exc})")
        return
    bindir = _server_binaries()
    if bindir is None:
        yield Server(
            None,
            f"no URL (pass --postgres-url or set {POSTGRES_URL_ENV}) and no PostgreSQL "
            "server binaries to start a cluster with (Debian package postgresql)",
        )
        return
    progress(f"starting a throwaway PostgreSQL cluster with {bindir}")
    cluster = PostgresCluster(bindir)
    try:
        try:
            cluster.create()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            yield Server(None, f"could not start a PostgreSQL cluster with {bindir}: {first_line}")
            return
        yield Server(cluster.url, f"a throwaway cluster ({bindir})")
    finally:
        cluster.destroy()
