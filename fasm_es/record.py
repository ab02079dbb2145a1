"""Records: one per accepted input, and their stored JSON encoding.

A stored record is a row of the event store: stream id, version, global
position, a type tag and a JSON body. The body holds the input, the actions
its STF call emitted, the input's metadata, and a chain hash::

    {"input": {...}, "actions": [{"id": 1, "action": {...}}, {"action": {...}}],
     "meta": {"accepted_at": "..."}, "hash": "<64 hex>"}

A completion stores ``"id"`` and ``"result"`` in place of ``"input"``. Tracked
actions are the entries with an ``"id"``. The type tag is the input model's
class name, ``"Normal"`` for a non-model input value, or ``"Completed"``.
Decoding goes only through the machine's declared types: a tag is looked up
in the declaration, never imported.

The chain hash of version ``n`` covers the previous record's hash, the
stream, the version, the tag and the body bytes before the hash, so editing,
deleting, inserting or reordering stored records breaks the chain.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, NoReturn, TypeVar, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    GetCoreSchemaHandler,
    Tag,
    TypeAdapter,
    ValidationError,
    create_model,
)
from pydantic_core import PydanticSerializationError, core_schema

from fasm_es.actions import Tracked, Untracked
from fasm_es.errors import CorruptRecord, InvalidInput, MachineError, UnknownRecordType
from fasm_es.inputs import ActionId, Completed, Input, Metadata, Normal
from fasm_es.machine import MachineTypes
from fasm_es.schema import Schema, parse_tag

I = TypeVar("I")  # noqa: E741
A = TypeVar("A")
R = TypeVar("R")
U = TypeVar("U")

GENESIS = ""
"""The chain hash "before" a stream's first record."""

COMPLETED_TAG = "Completed"
_HASH_SUFFIX_LEN = len(',"hash":"') + 64 + len('"}')
_ID_ADAPTER: TypeAdapter[ActionId] = TypeAdapter(ActionId)
_CODECS: weakref.WeakKeyDictionary[type, Codec[Any, Any, Any, Any]] = weakref.WeakKeyDictionary()


# RawRecord and Record are built once per record read, so they are plain
# (not frozen) slotted dataclasses: a frozen one costs several times more to
# build. Treat them as read-only all the same.


@dataclass(slots=True)
class RawRecord:
    """A record as stored: the body is the encoded JSON, not yet decoded (read-only)."""

    stream: str
    version: int
    position: int
    tag: str
    body: bytes


@dataclass(frozen=True, slots=True)
class RawSnapshot:
    """A stored snapshot: a stream's state after ``version``, encoded."""

    stream: str
    version: int
    tag: str
    body: bytes


@dataclass(slots=True)
class Record(Generic[I, A, R, U]):
    """A decoded record: one accepted input and the actions it emitted (read-only)."""

    stream: str
    version: int
    position: int
    tag: str
    input: Normal[I] | Completed[R]
    actions: tuple[Tracked[A] | Untracked[U], ...]
    hash: str

    @property
    def meta(self) -> Metadata:
        """The metadata recorded with the input."""
        return self.input.meta


@dataclass(frozen=True, slots=True)
class EncodedRecord:
    """A record ready to append: its tag, body bytes (hash included) and hash."""

    stream: str
    version: int
    tag: str
    body: bytes
    hash: str


def chain_hash(prev: str, stream: str, version: int, tag: str, content: bytes) -> str:
    """The hash of a record given its predecessor's hash (``GENESIS`` for the first)."""
    h = hashlib.sha256()
    h.update(f"{prev}\x00{stream}\x00{version}\x00{tag}\x00".encode())
    h.update(content)
    return h.hexdigest()


def split_hash(body: bytes) -> tuple[bytes, str] | None:
    """Split a stored body into (content hashed, stored hash); None if malformed."""
    if len(body) <= _HASH_SUFFIX_LEN or not body.endswith(b'"}'):
        return None
    suffix = body[-_HASH_SUFFIX_LEN:]
    if not suffix.startswith(b',"hash":"'):
        return None
    return body[:-_HASH_SUFFIX_LEN] + b"}", suffix[9:-2].decode("ascii", "replace")


def _action_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "t" if "id" in value else "u"
    return "t" if isinstance(value, Tracked) else "u"


def _metadata_json(meta: Metadata) -> bytes:
    return meta.model_dump_json(exclude_none=True).encode()


class _StoredHash(BaseModel):
    """Just the chain hash of a stored body (the rest is ignored)."""

    model_config = ConfigDict(extra="ignore")

    hash: str


def _refuse_tracked(value: object) -> NoReturn:
    raise ValueError("a tracked action entry, in a machine that declares none")


class _FoldInput:
    """The schema that validates a normal record's body straight into its ``Normal`` input.

    ``input`` and ``meta`` go through their declared types into the
    ``Normal``; ``hash`` must be a string, and ``actions`` a list of entries
    without an ``"id"`` (untracked), but neither is kept: folding a machine
    without tracked actions needs only the last record's hash and none of
    its actions. pydantic builds the ``Normal`` itself, so no body object is
    built and thrown away.
    """

    def __init__(self, input_type: Any) -> None:
        self.input_type = input_type

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # Only an entry's keys are checked: its action is neither validated nor built.
        untracked_entry = core_schema.typed_dict_schema(
            {
                "id": core_schema.typed_dict_field(
                    core_schema.no_info_plain_validator_function(_refuse_tracked),
                    required=False,
                )
            },
            extra_behavior="ignore",
        )
        fields = [
            core_schema.dataclass_field(
                "value", handler.generate_schema(self.input_type), validation_alias="input"
            ),
            core_schema.dataclass_field(
                "actions", core_schema.list_schema(untracked_entry), init_only=True
            ),
            core_schema.dataclass_field("meta", handler.generate_schema(Metadata)),
            core_schema.dataclass_field("hash", core_schema.str_schema(), init_only=True),
        ]
        args = core_schema.dataclass_args_schema("Normal", fields, extra_behavior="ignore")
        return core_schema.dataclass_schema(Normal, args, ["value", "meta"], slots=True)


class Codec(Generic[I, A, R, U]):
    """Encodes and decodes one machine's records through its declared types.

    Building one compiles pydantic validators; :meth:`for_machine` keeps one
    per machine class.
    """

    @classmethod
    def for_machine(cls, machine: Any) -> Codec[Any, Any, Any, Any]:
        """The (shared) codec of ``machine``'s class."""
        machine_cls = type(machine)
        codec = _CODECS.get(machine_cls)
        if codec is None or codec.types is not machine_cls.types:
            codec = _CODECS[machine_cls] = cls(machine_cls.types, machine_cls.schema)
        return codec

    def __init__(self, types: MachineTypes, schema: Schema | None = None) -> None:
        self.types = types
        self.schema = schema or Schema(types.machine, {}, {})
        action_item: Any = Annotated[
            Union[  # noqa: UP007
                Annotated[Tracked[types.tracked_action], Tag("t")],  # type: ignore[name-defined]
                Annotated[Untracked[types.untracked_action], Tag("u")],  # type: ignore[name-defined]
            ],
            Discriminator(_action_kind),
        ]
        # Encoding always goes through the union, so a tracked action in a machine
        # without any, or an undeclared type, is refused by name. Decoding a
        # machine without tracked actions needs no discriminator per action: a
        # tracked entry fails as an untracked one (an unexpected "id" field).
        stored_item: Any = (
            action_item if types.declares_tracked else Untracked[types.untracked_action]  # type: ignore[name-defined]
        )
        self._actions_decoder: TypeAdapter[list[Any]] = TypeAdapter(list[stored_item])
        self._actions_adapter: TypeAdapter[list[Any]] = TypeAdapter(list[action_item])
        self._input_adapter: TypeAdapter[Any] = TypeAdapter(types.input)
        self._result_adapter: TypeAdapter[Any] = TypeAdapter(types.tracked_result)
        self._value_adapters: dict[str, TypeAdapter[Any]] = {
            tag: TypeAdapter(tp) for tag, tp in types.input_tags.items()
        }
        config = ConfigDict(extra="forbid", arbitrary_types_allowed=False)
        # Keyed by the current stored tag (``Name`` or ``Name@version``).
        self._bodies: dict[str, type[BaseModel]] = {
            self.schema.current_tag(tag): create_model(
                f"{types.machine}{tag}Body",
                __config__=config,
                input=(tp, ...),
                actions=(list[stored_item], ...),
                meta=(Metadata, ...),
                hash=(str, ...),
            )
            for tag, tp in types.input_tags.items()
        }
        self._completed_tag = self.schema.current_tag(COMPLETED_TAG)
        self._stored_tags = {tag: self.schema.current_tag(tag) for tag in types.input_tags}
        self._bodies[self._completed_tag] = create_model(
            f"{types.machine}CompletedBody",
            __config__=config,
            id=(ActionId, ...),
            result=(types.tracked_result, ...),
            actions=(list[stored_item], ...),
            meta=(Metadata, ...),
            hash=(str, ...),
        )

        # A machine without tracked actions needs nothing from a record's
        # actions to fold its state: loading checks that they are untracked
        # entries but neither validates nor builds the actions in them (replay
        # checks and ``decode`` still validate everything). The input and
        # metadata are validated under the same config as in ``decode``.
        self._fold_inputs: dict[str, Callable[[bytes], Normal[Any]]] = {}
        if not types.declares_tracked:
            self._fold_inputs = {
                self.schema.current_tag(tag): TypeAdapter(
                    Annotated[Any, _FoldInput(tp)], config=config
                ).validator.validate_json
                for tag, tp in types.input_tags.items()
            }

    # -- validation at the edge ---------------------------------------------------

    def validate_input(self, value: object) -> I:
        """Validate a submitted input value against the declared input type."""
        validated = self._validate(self._input_adapter, value, "input")
        # pydantic passes an instance of a subclass of a declared model through
        # unchanged, but records are tagged by exact class: refuse it here,
        # before the STF runs, rather than fail to encode it afterwards.
        models = {t: m for t, m in self.types.input_tags.items() if t != "Normal"}
        if self.types.tag_of(validated) == "Normal" and isinstance(
            validated, tuple(m for m in models.values() if isinstance(m, type))
        ):
            name = type(validated).__name__
            declared = ", ".join(sorted(models))
            message = (
                f"machine {self.types.machine}: invalid input: {name} is not a declared "
                f"input model (declared: {declared}); submit an instance of a declared model"
            )
            raise InvalidInput(message, [{"type": "undeclared_model", "loc": (), "msg": message}])
        return validated  # type: ignore[no-any-return]

    def validate_result(self, value: object) -> R:
        """Validate a tracked action's result against the declared result type."""
        return self._validate(self._result_adapter, value, "tracked result")  # type: ignore[no-any-return]

    def _validate(self, adapter: TypeAdapter[Any], value: object, what: str) -> Any:
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            raise InvalidInput(
                f"machine {self.types.machine}: invalid {what}: {exc}",
                [dict(e) for e in exc.errors(include_url=False)],
            ) from exc

    # -- encoding -------------------------------------------------------------------

    def encode(
        self,
        stream: str,
        version: int,
        prev_hash: str,
        input: Input[I, R],
        actions: tuple[Tracked[A] | Untracked[U], ...] | list[Tracked[A] | Untracked[U]],
    ) -> EncodedRecord:
        """Encode a record for appending as ``version`` of ``stream``."""
        try:
            actions_json = self._actions_adapter.dump_json(list(actions), warnings="error")
        except (PydanticSerializationError, ValueError) as exc:
            raise MachineError(
                f"machine {self.types.machine}: stream {stream!r}: the STF emitted an action "
                f"that is not of a declared action type: {exc}"
            ) from exc
        self._check_reads_back(
            stream, self._actions_decoder, actions_json, list(actions), "actions"
        )
        meta_json = _metadata_json(input.meta)
        if isinstance(input, Normal):
            base = self.types.tag_of(input.value)
            tag = self._stored_tags[base]
            value_json = self._value_adapters[base].dump_json(input.value)
            content = b'{"input":%s,"actions":%s,"meta":%s}' % (value_json, actions_json, meta_json)
        else:
            tag = self._completed_tag
            id_json = _ID_ADAPTER.dump_json(input.id)
            result_json = self._result_adapter.dump_json(input.result)
            self._check_reads_back(
                stream, self._result_adapter, result_json, input.result, "tracked result"
            )
            content = b'{"id":%s,"result":%s,"actions":%s,"meta":%s}' % (
                id_json,
                result_json,
                actions_json,
                meta_json,
            )
        digest = chain_hash(prev_hash, stream, version, tag, content)
        body = content[:-1] + b',"hash":"' + digest.encode() + b'"}'
        return EncodedRecord(stream, version, tag, body, digest)

    def _check_reads_back(
        self, stream: str, adapter: TypeAdapter[Any], encoded: bytes, value: object, what: str
    ) -> None:
        """Refuse a value whose stored JSON would decode to something else.

        Models in a union with the same fields encode alike, so decoding picks
        the first one: replay and restore would then see a different action or
        result than the STF did.
        """
        try:
            back: object = adapter.validate_json(encoded)
        except ValidationError as exc:
            back = exc
        if back != value:
            raise MachineError(
                f"machine {self.types.machine}: stream {stream!r}: the {what} {value!r} would "
                f"be read back from the log as {back!r}; give the models of a union distinct "
                "fields (for example a Literal 'kind' field)"
            )

    # -- decoding -------------------------------------------------------------------

    def decode(self, raw: RawRecord) -> Record[I, A, R, U]:
        """Decode a stored record; raises a :class:`RecordDecodeError` subclass if it cannot.

        A record of the current version is validated straight from its JSON
        bytes; an older one goes through the machine's upcasters first.
        """
        body_model = self._bodies.get(raw.tag)
        try:
            if body_model is not None:
                tag = raw.tag
                body: Any = body_model.__pydantic_validator__.validate_json(raw.body)
            else:
                tag, body_model, data = self._upcast(raw)
                body = body_model.model_validate(data)
        except ValidationError as exc:
            raise self._corrupt(raw, exc) from exc
        inp: Normal[I] | Completed[R]
        if tag == self._completed_tag:
            inp = Completed(body.id, body.result, body.meta)
        else:
            inp = Normal(body.input, body.meta)
        return Record(
            raw.stream, raw.version, raw.position, raw.tag, inp, tuple(body.actions), body.hash
        )

    def fold_input(self, raw: RawRecord) -> Normal[I] | None:
        """The input of ``raw`` if folding may skip :meth:`decode`, else None.

        For a machine that declares no tracked actions, a normal record of a
        current type is validated straight into its ``Normal`` input, through
        the same declared types as in :meth:`decode`. Its action entries must
        be untracked ones (no ``"id"``), but the actions in them are neither
        validated nor built, since folding does not need them; its hash must
        be a string, but only :meth:`stored_hash` returns it. :meth:`decode`,
        replay checks and ``fasm_es.verify`` still validate everything.

        None for any other record, and for a body that does not validate:
        decode that one instead, which says what is wrong with it.
        """
        validate = self._fold_inputs.get(raw.tag)
        if validate is None:
            return None
        try:
            return validate(raw.body)
        except ValidationError:
            return None

    def stored_hash(self, raw: RawRecord) -> str:
        """The chain hash stored in ``raw``'s body (as :meth:`decode` would give it)."""
        try:
            return _StoredHash.model_validate_json(raw.body).hash
        except ValidationError as exc:
            raise self._corrupt(raw, exc) from exc

    def _corrupt(self, raw: RawRecord, exc: ValidationError) -> CorruptRecord:
        return CorruptRecord(
            raw.stream,
            raw.version,
            f"body of record type {raw.tag!r} does not match machine "
            f"{self.types.machine}'s declaration: {exc}",
        )

    def _upcast(self, raw: RawRecord) -> tuple[str, type[BaseModel], Any]:
        """Decode an older record's JSON and upcast it to a current body."""
        parsed = parse_tag(raw.tag)
        known = parsed is not None and (
            parsed[0] in self.types.input_tags
            or parsed[0] == COMPLETED_TAG
            or any(key[0] == parsed[0] for key in self.schema.upcasters)
        )
        if parsed is None or not known:
            raise UnknownRecordType(raw.stream, raw.version, raw.tag, self.types.machine)
        try:
            data = json.loads(raw.body)
        except ValueError as exc:
            raise CorruptRecord(raw.stream, raw.version, f"body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise CorruptRecord(raw.stream, raw.version, "body is not a JSON object")
        stored_hash = data.pop("hash", None)
        try:
            tag, data = self.schema.upcast(parsed[0], parsed[1], data)
        except LookupError as exc:
            raise UnknownRecordType(
                raw.stream, raw.version, raw.tag, self.types.machine, str(exc)
            ) from exc
        current = self.schema.current_tag(tag)
        body_model = self._bodies.get(current)
        if body_model is None:
            raise UnknownRecordType(raw.stream, raw.version, raw.tag, self.types.machine)
        data["hash"] = stored_hash
        return current, body_model, data
