"""The torture's checks can fail: planted losses, duplicates and phantom actions are reported."""

from __future__ import annotations

import json
from pathlib import Path

from torture import Torture
from workers.machine import Deposit, Ledger, Posted

from fasm_es import Streams, open_store


def lines(path: Path, *entries: dict[str, object]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))


def test_a_lost_input_a_duplicate_and_a_phantom_action_are_all_reported(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(url) as store:
        streams = Streams(Ledger(), store)
        first = streams.submit("acct", Deposit(ref="c-1", amount=5))
        streams.submit("acct", Deposit(ref="c-2", amount=6))
        streams.submit("other", Deposit(ref="c-2", amount=6))  # the same input stored twice
        streams.complete("acct", 1, Posted(receipt="R-forged"))
    lines(
        tmp_path / "acks.jsonl",
        {"ref": "c-1", "stream": "acct", "status": "accepted", "version": first.version},
        {"ref": "c-9", "stream": "acct", "status": "accepted", "version": 7},  # never stored
        {"ref": "c-2", "stream": "acct", "status": "rejected", "error": "Unlucky"},
    )
    lines(
        tmp_path / "ledger.jsonl",
        {"key": "acct/1", "outcome": "applied", "receipt": "R1", "generation": 1},
        {"key": "ghost/1", "outcome": "applied", "receipt": "R2", "generation": 1},
    )
    torture = Torture(url, tmp_path, backend="sqlite", kills=0)
    torture.check_log()
    report = "\n".join(torture.report.problems)

    assert torture.report.losses == 1
    assert torture.report.duplicates == 1
    assert "c-9 is not in the log (lost)" in report
    assert "c-2 was acknowledged as rejected but is in the log" in report
    assert "ghost/1, which no committed record emitted" in report
    assert "acct/1 completed with receipt 'R-forged', the service issued 'R1'" in report
