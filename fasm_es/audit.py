"""Tamper evidence: verify each stream's hash chain (DESIGN guarantee 9).

Every record's hash covers the previous record's hash, its stream, version,
type tag and body (see :mod:`fasm_es.record`). :func:`verify` re-reads the
stored bytes, recomputes each chain and reports the first place per stream
where a record was edited, deleted, inserted or reordered.

What a chain cannot show by itself: removing a stream's newest records, or
rewriting a whole stream with freshly computed hashes. Keep the ``heads`` of a
report (each stream's version and last hash) somewhere the database's writers
cannot change, and pass them back as ``expected_heads`` to catch those too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from fasm_es.errors import RecordDecodeError
from fasm_es.record import GENESIS, chain_hash, split_hash
from fasm_es.store import EventStore

BreakKind = Literal["edited", "missing", "malformed", "reordered", "truncated"]


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first place a stream's chain does not hold."""

    stream: str
    version: int
    kind: BreakKind
    detail: str

    def __str__(self) -> str:
        return f"stream {self.stream!r} version {self.version}: {self.kind}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Head:
    """A stream's newest version and its chain hash."""

    version: int
    hash: str


@dataclass
class VerifyReport:
    """The outcome of :func:`verify`: records checked, breaks found, each stream's head."""

    streams: int = 0
    records: int = 0
    breaks: list[ChainBreak] = field(default_factory=list)
    heads: dict[str, Head] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no chain is broken."""
        return not self.breaks


def verify_stream(store: EventStore, stream: str) -> tuple[ChainBreak | None, Head, int]:
    """Check one stream's chain; return (first break or None, head, records read)."""
    try:
        return _walk(store, stream)
    except RecordDecodeError as exc:
        # Only an encrypted store decodes while reading raw bytes.
        return (
            ChainBreak(stream, exc.version, "malformed", str(exc)),
            Head(exc.version - 1, ""),
            exc.version,
        )


def _walk(store: EventStore, stream: str) -> tuple[ChainBreak | None, Head, int]:
    prev = GENESIS
    expected = 1
    last_position = 0
    count = 0
    for raw in store.read_stream(stream):
        count += 1
        if raw.version != expected:
            kind: BreakKind = "missing" if raw.version > expected else "reordered"
            detail = (
                f"version {expected} is missing (deleted), the next stored is {raw.version}"
                if kind == "missing"
                else f"version {raw.version} appears again after version {expected - 1}"
            )
            return ChainBreak(stream, expected, kind, detail), Head(expected - 1, prev), count
        if raw.position <= last_position:
            return (
                ChainBreak(
                    stream,
                    raw.version,
                    "reordered",
                    f"global position {raw.position} is not after the previous record's "
                    f"{last_position}",
                ),
                Head(raw.version - 1, prev),
                count,
            )
        split = split_hash(raw.body)
        if split is None:
            return (
                ChainBreak(stream, raw.version, "malformed", "the body carries no chain hash"),
                Head(raw.version - 1, prev),
                count,
            )
        content, stored = split
        if chain_hash(prev, stream, raw.version, raw.tag, content) != stored:
            return (
                ChainBreak(
                    stream,
                    raw.version,
                    "edited",
                    "the record does not match its chain hash: it was edited, or records "
                    "before it were inserted, deleted or reordered",
                ),
                Head(raw.version - 1, prev),
                count,
            )
        prev = stored
        last_position = raw.position
        expected += 1
    return None, Head(expected - 1, prev), count


def verify(
    store: EventStore,
    streams: Iterable[str] | None = None,
    *,
    expected_heads: Mapping[str, Head] | None = None,
    progress: Callable[[str], None] | None = None,
) -> VerifyReport:
    """Verify the chains of ``streams`` (default: every stream in the store).

    With ``expected_heads`` (from an earlier report, kept elsewhere), a stream
    whose head is now older than recorded, or whose hash at that version
    differs, is reported as ``truncated`` or ``edited``; a stream that has
    disappeared is reported as ``truncated`` at version 1.
    """
    report = VerifyReport()
    names = list(streams) if streams is not None else None
    seen: set[str] = set()
    for stream in names if names is not None else store.streams():
        seen.add(stream)
        broken, head, count = verify_stream(store, stream)
        report.streams += 1
        report.records += count
        report.heads[stream] = head
        if broken is not None:
            report.breaks.append(broken)
        elif expected_heads is not None and stream in expected_heads:
            _compare_head(store, stream, expected_heads[stream], head, report)
        if progress is not None:
            progress(stream)
    if expected_heads is not None and names is None:
        for stream in sorted(set(expected_heads) - seen):
            report.breaks.append(
                ChainBreak(stream, 1, "truncated", "the stream has no records any more")
            )
    return report


def _compare_head(
    store: EventStore, stream: str, expected: Head, head: Head, report: VerifyReport
) -> None:
    if expected.version == 0:
        return
    if head.version < expected.version:
        report.breaks.append(
            ChainBreak(
                stream,
                head.version + 1,
                "truncated",
                f"the stream ends at version {head.version} but reached {expected.version}",
            )
        )
        return
    at = next(iter(store.read_stream(stream, after=expected.version - 1, upto=expected.version)))
    split = split_hash(at.body)
    if split is None or split[1] != expected.hash:
        report.breaks.append(
            ChainBreak(
                stream,
                expected.version,
                "edited",
                "the chain hash at the recorded head differs: the stream was rewritten",
            )
        )
