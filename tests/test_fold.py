"""The pure fold: records in, stream state out; and what restore re-issues from it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from machines import (
    AsyncPayments,
    Charge,
    ChargeCard,
    CheckingPayments,
    CheckStatus,
    Increment,
    Payments,
    PaymentsState,
    Tally,
    TallyStricter,
    sqlite_url,
)

from fasm_es import (
    Codec,
    Completed,
    CompletionNotOutstanding,
    EncodedRecord,
    EventStore,
    ManualClock,
    Metadata,
    Normal,
    Record,
    ReplayDivergence,
    Streams,
    Tracked,
    apply_record,
    fold,
    open_store,
    restore_actions,
    upcaster,
)
from fasm_es.fold import fold_stored
from fasm_es.record import GENESIS


def payments_log(tmp_path: Path) -> Streams[Any, Any, Any, Any, Any]:
    """A payments stream with charges 1, c2, 3 emitted (in that order) and c2 completed."""
    streams = Streams(Payments(), open_store(sqlite_url(tmp_path)), clock=ManualClock())
    streams.submit("p", Charge(amount=10))
    streams.submit("p", Charge(amount=20, ids="str"))
    streams.submit("p", Charge(amount=30))
    streams.complete("p", "c2", {"ok": True})
    return streams


def test_fold_of_the_records_equals_the_live_state(tmp_path: Path) -> None:
    streams = payments_log(tmp_path)
    folded = fold(Payments(), "p", streams.records("p"))
    assert folded.state == streams.state("p")
    assert folded.version == streams.version("p") == 4
    assert folded.outstanding == streams.outstanding("p")
    assert folded.completed == {"c2"}
    assert folded.last_hash == list(streams.records("p"))[-1].hash


def test_fold_from_a_midway_state_equals_the_fold_from_scratch(tmp_path: Path) -> None:
    streams = payments_log(tmp_path)
    records = list(streams.records("p"))
    head = fold(Payments(), "p", records[:2])
    resumed = fold(Payments(), "p", records[2:], start=head)
    whole = fold(Payments(), "p", records)
    assert dataclasses.asdict(resumed) == dataclasses.asdict(whole)


def test_default_restore_returns_outstanding_tracked_actions_in_emission_order(
    tmp_path: Path,
) -> None:
    streams = payments_log(tmp_path)
    folded = fold(Payments(), "p", streams.records("p"))
    assert restore_actions(Payments(), folded) == (
        Tracked(1, ChargeCard(amount=10)),
        Tracked(3, ChargeCard(amount=30)),
    )
    assert streams.restore("p") == restore_actions(Payments(), folded)


def test_a_machine_with_its_own_restore_gets_its_result(tmp_path: Path) -> None:
    streams = payments_log(tmp_path)
    for machine in (CheckingPayments(), AsyncPayments()):
        folded = fold(machine, "p", streams.records("p"))
        assert restore_actions(machine, folded) == (
            Tracked(1, CheckStatus(amount_due=10)),
            Tracked(3, CheckStatus(amount_due=30)),
        )


def test_restore_after_everything_completed_is_empty(tmp_path: Path) -> None:
    streams = payments_log(tmp_path)
    streams.complete("p", 1, {"ok": False})
    streams.complete("p", 3, {"ok": True})
    folded = fold(Payments(), "p", streams.records("p"))
    assert restore_actions(Payments(), folded) == ()
    assert restore_actions(CheckingPayments(), folded) == ()
    assert folded.state == PaymentsState(next_id=4, pending={}, settled=50, failed=1)


def test_gap_in_versions_is_a_replay_divergence(tmp_path: Path) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)))
    for _ in range(3):
        streams.submit("t", Increment())
    first, _, third = streams.records("t")
    with pytest.raises(ReplayDivergence) as info:
        fold(Tally(), "t", [first, third])
    assert (info.value.stream, info.value.version) == ("t", 3)
    assert "gap" in info.value.difference


def test_out_of_order_records_are_a_replay_divergence(tmp_path: Path) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)))
    streams.submit("t", Increment())
    streams.submit("t", Increment())
    first, second = streams.records("t")
    with pytest.raises(ReplayDivergence) as info:
        fold(Tally(), "t", [second, first])
    assert info.value.version == 2


def test_recorded_input_the_stf_now_rejects_is_a_replay_divergence(tmp_path: Path) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)))
    for _ in range(5):
        streams.submit("t", Increment())
    with pytest.raises(ReplayDivergence) as info:
        fold(TallyStricter(), "t", streams.records("t"))
    assert info.value.version == 4
    assert "rejects" in info.value.difference


def test_apply_record_checks_actions_only_when_asked(tmp_path: Path) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)))
    streams.submit("t", Increment(by=2))
    (record,) = streams.records("t")
    forged: Record[Any, Any, Any, Any] = dataclasses.replace(record, actions=())
    machine = Tally()
    lenient = fold(machine, "t", [forged])
    assert lenient.state.value == 2
    start = fold(machine, "t", [])
    with pytest.raises(ReplayDivergence) as info:
        apply_record(machine, start, forged, machine.new_actions(), check_actions=True)
    assert "1 actions where 0 were recorded" in info.value.difference


def test_check_completion_names_why_an_id_is_not_outstanding(tmp_path: Path) -> None:
    streams = payments_log(tmp_path)
    folded = fold(Payments(), "p", streams.records("p"))
    folded.check_completion(1)
    with pytest.raises(CompletionNotOutstanding) as info:
        folded.check_completion("c2")
    assert info.value.reason == "completed"
    with pytest.raises(CompletionNotOutstanding) as info:
        folded.check_completion(99)
    assert info.value.reason == "unknown"
    # 1 and "1" are different ids.
    with pytest.raises(CompletionNotOutstanding):
        folded.check_completion("1")


def test_completion_records_fold_in_order(tmp_path: Path) -> None:
    streams = payments_log(tmp_path)
    kinds = [type(r.input) for r in streams.records("p")]
    assert kinds[-1] is Completed
    states = [fold(Payments(), "p", streams.records("p", upto=v)).state for v in range(5)]
    assert [s.settled for s in states] == [0, 0, 0, 0, 20]
    assert [len(s.pending) for s in states] == [0, 1, 2, 3, 2]


# -- folding records as stored ----------------------------------------------------------


class TallyV2(Tally):
    """The tally after a schema change: increments are stored as version 2 (same shape)."""

    schema_versions = {"Increment": 2}

    @staticmethod
    @upcaster("Increment", 1)
    def same_shape(body: dict[str, Any]) -> dict[str, Any]:
        return body


def tally_log(store: EventStore, stream: str, layout: str) -> None:
    """Append one record per letter of ``layout``: ``o`` stored by the old code (an
    ``Increment`` that loading upcasts), ``n`` by the current one (``Increment@2``)."""
    old: Codec[Any, Any, Any, Any] = Codec(Tally.types, Tally.schema)
    new: Codec[Any, Any, Any, Any] = Codec(TallyV2.types, TallyV2.schema)
    machine, clock = TallyV2(), ManualClock()
    state, prev = machine.initial_state(), GENESIS
    encoded: list[EncodedRecord] = []
    for version, kind in enumerate(layout, start=1):
        inp = Normal(Increment(by=version), Metadata(accepted_at=clock.advance(1)))
        actions = machine.new_actions()
        machine.stf(state, inp, actions)
        codec = old if kind == "o" else new
        encoded.append(codec.encode(stream, version, prev, inp, actions.to_tuple()))
        prev = encoded[-1].hash
    store.append(encoded)


@pytest.mark.parametrize("layout", ["", "n", "nnnnn", "o", "ooo", "oonn", "nnoo", "nonnon"])
def test_fold_stored_equals_the_fold_of_the_decoded_records(tmp_path: Path, layout: str) -> None:
    with open_store(sqlite_url(tmp_path)) as store:
        tally_log(store, "t", layout)
        codec = Codec.for_machine(TallyV2())
        stored = fold_stored(TallyV2(), codec, "t", store.read_stream("t"))
        decoded = fold(TallyV2(), "t", map(codec.decode, store.read_stream("t")))
        hashes = [codec.decode(raw).hash for raw in store.read_stream("t")]
    assert dataclasses.asdict(stored) == dataclasses.asdict(decoded)
    n = len(layout)
    assert stored.state.value == n * (n + 1) // 2
    assert stored.version == n
    assert stored.last_hash == (hashes[-1] if hashes else GENESIS)


def test_fold_stored_of_tracked_actions_and_completions_equals_the_fold(tmp_path: Path) -> None:
    streams = payments_log(tmp_path)
    raws = list(streams.store.read_stream("p"))
    codec = Codec.for_machine(Payments())
    stored = fold_stored(Payments(), codec, "p", raws)
    assert dataclasses.asdict(stored) == dataclasses.asdict(
        fold(Payments(), "p", streams.records("p"))
    )
    # And resumed from a state part way.
    head = fold_stored(Payments(), codec, "p", raws[:2])
    resumed = fold_stored(Payments(), codec, "p", raws[2:], start=head)
    assert dataclasses.asdict(resumed) == dataclasses.asdict(stored)


def test_fold_stored_resumes_from_a_start_state(tmp_path: Path) -> None:
    with open_store(sqlite_url(tmp_path)) as store:
        tally_log(store, "t", "nnonn")
        raws = list(store.read_stream("t"))
    codec = Codec.for_machine(TallyV2())
    whole = fold_stored(TallyV2(), codec, "t", raws)
    for cut in range(len(raws) + 1):
        head = fold_stored(TallyV2(), codec, "t", raws[:cut])
        resumed = fold_stored(TallyV2(), codec, "t", raws[cut:], start=head)
        assert dataclasses.asdict(resumed) == dataclasses.asdict(whole)


def test_fold_stored_reads_current_records_without_decoding_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(sqlite_url(tmp_path)) as store:
        tally_log(store, "t", "nnonn")
        raws = list(store.read_stream("t"))
    codec: Codec[Any, Any, Any, Any] = Codec(TallyV2.types, TallyV2.schema)
    decoded: list[int] = []
    decode = codec.decode

    def counting_decode(raw: Any) -> Any:
        decoded.append(raw.version)
        return decode(raw)

    monkeypatch.setattr(codec, "decode", counting_decode)
    assert fold_stored(TallyV2(), codec, "t", raws).state.value == 15
    assert decoded == [3]  # only the old record, which is upcast


@pytest.mark.parametrize("layout", ["nnn", "ono"])
def test_fold_stored_gap_in_versions_is_a_replay_divergence(tmp_path: Path, layout: str) -> None:
    with open_store(sqlite_url(tmp_path)) as store:
        tally_log(store, "t", layout)
        first, _, third = store.read_stream("t")
    with pytest.raises(ReplayDivergence) as info:
        fold_stored(TallyV2(), Codec.for_machine(TallyV2()), "t", [first, third])
    assert (info.value.stream, info.value.version) == ("t", 3)
    assert "gap" in info.value.difference


def test_fold_stored_of_an_input_the_stf_now_rejects_is_a_replay_divergence(
    tmp_path: Path,
) -> None:
    streams = Streams(Tally(), open_store(sqlite_url(tmp_path)))
    for _ in range(5):
        streams.submit("t", Increment())
    raws = streams.store.read_stream("t")
    with pytest.raises(ReplayDivergence) as info:
        fold_stored(TallyStricter(), Codec.for_machine(TallyStricter()), "t", raws)
    assert info.value.version == 4
    assert "rejects" in info.value.difference
