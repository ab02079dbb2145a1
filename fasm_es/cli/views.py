"""One shape for a record, whether shown as a table row, a JSON line or a CSV row.

Without a machine a record is shown from its stored JSON (no code runs on
it); with one it is decoded through the machine's declared types, so old
records appear upcast to the current shape and an undecodable one is an
error. Both give the same keys::

    stream, version, position, tag, accepted_at, actor, correlation_id,
    causation_id, idempotency_key, input, actions, hash

``input`` is the input value, or ``{"id": ..., "result": ...}`` for a
completion; ``actions`` is a list of ``{"kind": "tracked" | "untracked",
"id": ..., "type": ..., "action": ...}`` (``id`` only for tracked actions,
``type`` the model's class name when decoded, else null).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from rich.text import Text

from fasm_es.actions import Tracked
from fasm_es.errors import CorruptRecord
from fasm_es.inputs import Completed
from fasm_es.record import COMPLETED_TAG, Codec, RawRecord, Record
from fasm_es.schema import parse_tag

from .output import compact, jsonable

META_KEYS = ("accepted_at", "actor", "correlation_id", "causation_id", "idempotency_key")
RECORD_KEYS = (
    "stream",
    "version",
    "position",
    "tag",
    *META_KEYS,
    "input",
    "actions",
    "hash",
)


def record_view(raw: RawRecord, codec: Codec[Any, Any, Any, Any] | None) -> dict[str, Any]:
    """The record as plain data: decoded through ``codec`` if given, else from its JSON."""
    if codec is None:
        return raw_view(raw)
    return decoded_view(codec.decode(raw))


def stored_body(raw: RawRecord) -> dict[str, Any]:
    """A stored record's JSON body; :class:`CorruptRecord` if it is not a JSON object."""
    try:
        body = json.loads(raw.body)
    except ValueError as exc:
        raise CorruptRecord(
            raw.stream,
            raw.version,
            "the stored body is not JSON (if the store is encrypted, set FASM_ES_CIPHER_KEY)",
        ) from exc
    if not isinstance(body, dict):
        raise CorruptRecord(raw.stream, raw.version, "the stored body is not a JSON object")
    return body


def raw_view(raw: RawRecord) -> dict[str, Any]:
    """The record as stored, without decoding it through a machine."""
    body = stored_body(raw)
    meta = body.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    parsed = parse_tag(raw.tag)
    if parsed is not None and parsed[0] == COMPLETED_TAG:
        value: Any = {"id": body.get("id"), "result": body.get("result")}
    else:
        value = body.get("input")
    actions = []
    for stored in body.get("actions") or []:
        entry = stored if isinstance(stored, dict) else {"action": stored}
        item: dict[str, Any] = {"kind": "tracked" if "id" in entry else "untracked"}
        if "id" in entry:
            item["id"] = entry["id"]
        item["type"] = None
        item["action"] = entry.get("action")
        actions.append(item)
    return {
        "stream": raw.stream,
        "version": raw.version,
        "position": raw.position,
        "tag": raw.tag,
        **{key: meta.get(key) for key in META_KEYS},
        "input": value,
        "actions": actions,
        "hash": body.get("hash"),
    }


def type_name(value: object) -> str | None:
    """A model's class name (the name a reader knows it by); None for plain values."""
    return type(value).__name__ if isinstance(value, BaseModel) else None


def decoded_view(record: Record[Any, Any, Any, Any]) -> dict[str, Any]:
    """A decoded record as plain data."""
    inp = record.input
    if isinstance(inp, Completed):
        value: Any = {"id": inp.id, "result": jsonable(inp.result)}
    else:
        value = jsonable(inp.value)
    actions = []
    for action in record.actions:
        item: dict[str, Any] = {"kind": "tracked" if isinstance(action, Tracked) else "untracked"}
        if isinstance(action, Tracked):
            item["id"] = action.id
        item["type"] = type_name(action.action)
        item["action"] = jsonable(action.action)
        actions.append(item)
    meta = jsonable(record.meta)
    return {
        "stream": record.stream,
        "version": record.version,
        "position": record.position,
        "tag": record.tag,
        **{key: meta.get(key) for key in META_KEYS},
        "input": value,
        "actions": actions,
        "hash": record.hash,
    }


def show_input(view: Mapping[str, Any]) -> str:
    """The input of a record view on one line: its type and value, or the completion."""
    parsed = parse_tag(view["tag"])
    value = view["input"]
    if parsed is not None and parsed[0] == COMPLETED_TAG and isinstance(value, dict):
        return f"{view['tag']} #{value.get('id')} {compact(value.get('result'))}"
    return f"{view['tag']} {compact(value)}"


def show_action(item: Mapping[str, Any]) -> str:
    """One action on one line: ``#id Type {...}`` when tracked, ``Type {...}`` when not."""
    parts = [f"#{item['id']}"] if item["kind"] == "tracked" else []
    if item.get("type"):
        parts.append(item["type"])
    parts.append(compact(item["action"]))
    return " ".join(parts)


IDS = {
    "correlation_id": "correlation",
    "causation_id": "causation",
    "idempotency_key": "idempotency",
}


LABEL_WIDTH = 15


def record_block(view: Mapping[str, Any], width: int) -> Text:
    """A record for people, ``width`` columns wide: a heading, the input, each action, any ids.

    Long values wrap under themselves, not under the labels. Plain text
    wrapped here renders several times faster than a rich table per record.
    """
    block = Text(f"version {view['version']}", style="bold")
    block.append(f"  position {view['position']}  {view.get('accepted_at') or ''}")
    if view.get("actor"):
        block.append(f"  actor {view['actor']}")
    rows = [("input", show_input(view))]
    rows += [(item["kind"], show_action(item)) for item in view["actions"]]
    rows += [(label, str(view[key])) for key, label in IDS.items() if view.get(key)]
    room = max(width - LABEL_WIDTH, 20)
    for label, value in rows:
        lines = textwrap.wrap(value, room, break_on_hyphens=False) or [""]
        block.append(f"\n  {label:<{LABEL_WIDTH - 2}}", style="dim")
        block.append(lines[0])
        for line in lines[1:]:
            block.append(f"\n{'':<{LABEL_WIDTH}}{line}")
    return block
