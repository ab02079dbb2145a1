"""Lines of JSON over Unix sockets: how the worker processes talk to each other."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Message = dict[str, Any]
Handler = Callable[[Message], Awaitable[Message]]

LINE_LIMIT = 16 * 1024 * 1024


async def request(path: str | Path, message: Message, *, timeout: float = 30.0) -> Message:
    """Send one message to the server at ``path`` and return its answer.

    Raises ``OSError`` (the server is not there, or went away) or
    ``TimeoutError``; both mean the outcome is unknown.
    """
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(str(path), limit=LINE_LIMIT)
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
    if not line:
        raise ConnectionResetError(f"{path}: the server closed the connection without answering")
    answer: Message = json.loads(line)
    return answer


async def serve(path: str | Path, handle: Handler) -> asyncio.Server:
    """Answer each line received on the Unix socket ``path`` with ``handle(message)``."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answer = await handle(json.loads(line))
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    Path(path).unlink(missing_ok=True)
    return await asyncio.start_unix_server(connection, str(path), limit=LINE_LIMIT, backlog=1024)


def write_json(path: Path, payload: Message) -> None:
    """Write ``payload`` to ``path`` whole or not at all (write, fsync, rename)."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w") as f:
        json.dump(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
