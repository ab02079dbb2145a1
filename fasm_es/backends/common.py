"""What the backends share."""

from __future__ import annotations

from collections.abc import Sequence

from fasm_es.errors import ConcurrencyConflict
from fasm_es.record import EncodedRecord


def conflict_for(record: EncodedRecord, detail: str) -> ConcurrencyConflict:
    """The conflict error for a record whose version another writer took."""
    return ConcurrencyConflict(record.stream, record.version, detail)


def check_consecutive(records: Sequence[EncodedRecord]) -> None:
    """Records of one stream in one append must have consecutive versions."""
    last: dict[str, int] = {}
    for r in records:
        previous = last.get(r.stream)
        if previous is not None and r.version != previous + 1:
            raise conflict_for(
                r,
                f"records of one stream in one append must be consecutive "
                f"(version {previous} then {r.version})",
            )
        last[r.stream] = r.version
