"""Schema evolution: versions of stored record types and the upcasters between them.

Stored data outlives code. When a record type's shape changes, the machine
raises its version and supplies an upcaster that turns a body of the old
version into one of the next::

    class Payments(StateMachine[...]):
        schema_versions = {"Process": 2, "Snapshot": 2}

        @upcaster("Process", 1)
        def process_v1(body: dict[str, Any]) -> dict[str, Any]:
            body["input"]["currency"] = "EUR"
            return body

A record's tag is stored as ``Process`` at version 1 and ``Process@2`` from
version 2 on. Reading an old record applies the upcasters in order (1 to 2,
2 to 3, ...) to its JSON body, then validates it with the current type. An
upcaster may also move a body to another tag (``to="Reversal"``) when a type
was renamed or folded into another. ``"Snapshot"`` versions the stored
snapshot bodies (the state type) the same way. Bodies handed to upcasters are
plain JSON values (dicts, lists, strings, numbers); upcasters must be pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from fasm_es.errors import DefinitionError

Body: TypeAlias = dict[str, Any]
UpcasterFn: TypeAlias = Callable[[Body], Body]

SNAPSHOT_TAG = "Snapshot"


@dataclass(frozen=True, slots=True)
class Upcaster:
    """Turns a body of ``tag`` at ``version`` into one of ``to`` at ``to_version``."""

    tag: str
    version: int
    to: str
    to_version: int
    fn: UpcasterFn


def upcaster(
    tag: str, version: int, *, to: str | None = None
) -> Callable[[UpcasterFn], UpcasterFn]:
    """Mark a function in a machine class as the upcaster of ``tag`` bodies at ``version``.

    Without ``to`` the result is ``tag`` at ``version + 1``; with ``to`` it is
    version 1 of the tag ``to`` (upcast further from there if ``to`` has moved on).
    """
    if version < 1:
        raise DefinitionError(f"upcaster for {tag!r}: versions start at 1, got {version}")

    def mark(fn: UpcasterFn) -> UpcasterFn:
        target = (to, 1) if to is not None else (tag, version + 1)
        fn.__fasm_upcaster__ = Upcaster(tag, version, target[0], target[1], fn)  # type: ignore[attr-defined]
        return fn

    return mark


def stored_tag(tag: str, version: int) -> str:
    """The tag as stored: ``tag`` for version 1, ``tag@version`` after."""
    return tag if version == 1 else f"{tag}@{version}"


def parse_tag(stored: str) -> tuple[str, int] | None:
    """Split a stored tag into (tag, version); None if the version part is malformed."""
    base, sep, version = stored.partition("@")
    if not sep:
        return base, 1
    if not version.isdigit() or int(version) < 1:
        return None
    return base, int(version)


@dataclass(frozen=True)
class Schema:
    """A machine's current version of each tag and its upcasters."""

    machine: str
    versions: Mapping[str, int]
    upcasters: Mapping[tuple[str, int], Upcaster]

    def version(self, tag: str) -> int:
        """The current version of ``tag`` (1 unless declared)."""
        return self.versions.get(tag, 1)

    def current_tag(self, tag: str) -> str:
        """The stored form of ``tag`` at its current version."""
        return stored_tag(tag, self.version(tag))

    def upcast(self, tag: str, version: int, body: Body) -> tuple[str, Body]:
        """Bring ``body`` of ``tag`` at ``version`` to a current tag; return (tag, body).

        Raises ``LookupError`` with a message naming the missing upcaster, or
        saying the record is newer than this code.
        """
        for _ in range(1000):
            step = self.upcasters.get((tag, version))
            current = self.version(tag)
            if step is None or (step.to == tag and version >= current):
                if version == current:
                    return tag, body
                if version > current:
                    raise LookupError(
                        f"record type {tag!r} version {version} is newer than machine "
                        f"{self.machine} knows (version {current}): deploy the newer code"
                    )
                raise LookupError(
                    f"no upcaster from {tag!r} version {version} to version {version + 1} "
                    f"in machine {self.machine} (add one with @upcaster({tag!r}, {version}))"
                )
            body = step.fn(body)
            if not isinstance(body, dict):
                raise LookupError(
                    f"upcaster {step.fn.__name__} for {tag!r} version {version} returned "
                    f"{type(body).__name__}, not a dict"
                )
            tag, version = step.to, step.to_version
        raise LookupError(f"upcasters for {tag!r} loop; check their 'to' targets")

    @classmethod
    def collect(
        cls,
        machine: str,
        namespace: Mapping[str, Any],
        versions: Mapping[str, int],
        inherited: Mapping[tuple[str, int], Upcaster],
    ) -> Schema:
        """Gather the upcasters marked in a machine class body."""
        found = dict(inherited)
        for value in namespace.values():
            fn = value.__func__ if isinstance(value, staticmethod | classmethod) else value
            mark = getattr(fn, "__fasm_upcaster__", None)
            if isinstance(mark, Upcaster):
                found[(mark.tag, mark.version)] = mark
        for tag, version in versions.items():
            if not isinstance(version, int) or version < 1:
                raise DefinitionError(
                    f"machine {machine}: schema_versions[{tag!r}] must be an int >= 1"
                )
            for v in range(1, version):
                if (tag, v) not in found:
                    raise DefinitionError(
                        f"machine {machine}: {tag!r} is at version {version} but has no "
                        f"upcaster from version {v} (add @upcaster({tag!r}, {v}))"
                    )
        return cls(machine, dict(versions), found)
