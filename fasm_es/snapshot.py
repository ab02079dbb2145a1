"""Snapshots: a stream's folded state at a version, so loading is snapshot + tail.

A snapshot stores everything :class:`~fasm_es.fold.StreamState` holds: the
state, the version, the last chain hash, and the outstanding and completed
tracked action ids, encoded through the machine's declared types. It is an
optimisation only: the log stays the source of truth, and a snapshot that can
no longer be decoded is ignored (with a warning) in favour of a full replay.
Its tag is ``"Snapshot"``, versioned through the machine's ``schema_versions``
like any record tag, with upcasters for old shapes.
"""

from __future__ import annotations

import json
import weakref
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from fasm_es.actions import Tracked
from fasm_es.errors import CorruptRecord, UnknownRecordType
from fasm_es.fold import StreamState
from fasm_es.inputs import ActionId
from fasm_es.machine import MachineTypes
from fasm_es.record import RawSnapshot
from fasm_es.schema import SNAPSHOT_TAG, Schema, parse_tag

S = TypeVar("S")
A = TypeVar("A")


def _id_order(action_id: ActionId) -> tuple[str, str | int]:
    # Ids may mix int and str; order them deterministically without comparing across types.
    return (type(action_id).__name__, action_id)


_CODECS: weakref.WeakKeyDictionary[type, SnapshotCodec[Any, Any]] = weakref.WeakKeyDictionary()


class SnapshotCodec(Generic[S, A]):
    """Encodes and decodes one machine's snapshots (:meth:`for_machine` shares one per class)."""

    @classmethod
    def for_machine(cls, machine: Any) -> SnapshotCodec[Any, Any]:
        """The (shared) snapshot codec of ``machine``'s class."""
        machine_cls = type(machine)
        codec = _CODECS.get(machine_cls)
        if codec is None or codec.types is not machine_cls.types:
            codec = _CODECS[machine_cls] = cls(machine_cls.types, machine_cls.schema)
        return codec

    def __init__(self, types: MachineTypes, schema: Schema) -> None:
        self.types = types
        self.schema = schema
        self.tag = schema.current_tag(SNAPSHOT_TAG)
        self._model: type[BaseModel] = create_model(
            f"{types.machine}Snapshot",
            __config__=ConfigDict(extra="forbid"),
            state=(types.state, ...),
            last_hash=(str, ...),
            outstanding=(list[Tracked[types.tracked_action]], ...),  # type: ignore[name-defined]
            completed=(list[ActionId], ...),
        )
        self._state_adapter: TypeAdapter[Any] = TypeAdapter(types.state)

    def encode(self, current: StreamState[S, A]) -> RawSnapshot:
        """The snapshot of ``current`` at its version."""
        body = self._model.model_construct(
            state=current.state,
            last_hash=current.last_hash,
            outstanding=[Tracked(i, a) for i, a in current.outstanding.items()],
            completed=sorted(current.completed, key=_id_order),
        )
        return RawSnapshot(
            current.stream, current.version, self.tag, body.model_dump_json().encode()
        )

    def decode(self, raw: RawSnapshot) -> StreamState[S, A]:
        """The stream state a snapshot holds; raises a RecordDecodeError subclass if it cannot."""
        try:
            if raw.tag == self.tag:
                body: Any = self._model.model_validate_json(raw.body)
            else:
                body = self._model.model_validate(self._upcast(raw))
        except ValidationError as exc:
            raise CorruptRecord(
                raw.stream, raw.version, f"snapshot does not match the declared state type: {exc}"
            ) from exc
        return StreamState(
            stream=raw.stream,
            state=body.state,
            version=raw.version,
            last_hash=body.last_hash,
            outstanding={t.id: t.action for t in body.outstanding},
            completed=set(body.completed),
            snapshot_version=raw.version,
        )

    def _upcast(self, raw: RawSnapshot) -> Any:
        parsed = parse_tag(raw.tag)
        if parsed is None or parsed[0] != SNAPSHOT_TAG:
            raise UnknownRecordType(raw.stream, raw.version, raw.tag, self.types.machine)
        try:
            data = json.loads(raw.body)
        except ValueError as exc:
            raise CorruptRecord(raw.stream, raw.version, f"snapshot is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CorruptRecord(raw.stream, raw.version, "snapshot is not a JSON object")
        try:
            _, data = self.schema.upcast(SNAPSHOT_TAG, parsed[1], data)
        except LookupError as exc:
            raise UnknownRecordType(
                raw.stream, raw.version, raw.tag, self.types.machine, str(exc)
            ) from exc
        return data
