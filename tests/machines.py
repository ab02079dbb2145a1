"""Small machines shared by the tests, each built to exercise one part of the contract.

- :class:`Tally`: a counter with a limit that emits an untracked action per
  increment and counts its STF calls (guarantees 1, 2, 5, 6, 8).
- :class:`Fragile`: mutates state, then rejects or crashes on request
  (guarantee 2).
- :class:`Payments` / :class:`AsyncPayments`: the same tracked-action logic as
  a plain and an ``async`` STF and restore (completions, restore, encoding).
- :class:`Ledger`: remembers every token it applied, so a lost or doubly
  applied input is visible (guarantee 6).
- :class:`Burst`: emits as many actions as asked, against a small capacity.
- :class:`Sloppy`: emits actions it does not declare, on request.
- :class:`Stamped`: copies each input's metadata into its state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from fasm_es import (
    Actions,
    ActionsFull,
    Completed,
    EventStore,
    Input,
    Normal,
    NoTracked,
    RawRecord,
    Rejection,
    StateMachine,
    Streams,
    Tracked,
    fold,
    open_store,
)

# -- Tally: a counter with a limit --------------------------------------------------


class TallyState(BaseModel):
    """The running total and its limit."""

    value: int = 0
    limit: int = 100


class Increment(BaseModel):
    """Add ``by`` to the total."""

    by: int = 1


class Incremented(BaseModel):
    """Untracked notification of an accepted increment."""

    previous: int
    current: int


class OverLimit(Rejection):
    """The increment would pass the limit."""


class Tally(StateMachine[TallyState, Increment, NoTracked, NoTracked, Incremented]):
    """Counts up to a limit; ``calls`` counts every STF call (live and replay)."""

    def __init__(self) -> None:
        self.calls = 0

    def stf(
        self,
        state: TallyState,
        input: Input[Increment, NoTracked],
        actions: Actions[NoTracked, Incremented],
    ) -> None:
        self.calls += 1
        assert isinstance(input, Normal)
        current = state.value + input.value.by
        if current > state.limit:
            raise OverLimit(f"{state.value} + {input.value.by} passes {state.limit}")
        actions.emit(Incremented(previous=state.value, current=current))
        state.value = current


class TallyEmitsTwice(Tally):
    """Changed code: from a total of 2 on, emits an extra notification."""

    def stf(
        self,
        state: TallyState,
        input: Input[Increment, NoTracked],
        actions: Actions[NoTracked, Incremented],
    ) -> None:
        previous = state.value
        super().stf(state, input, actions)
        if previous >= 2:
            actions.emit(Incremented(previous=state.value, current=state.value))


class TallyStricter(Tally):
    """Changed code: a lower limit, so some recorded increments are now rejected."""

    def initial_state(self) -> TallyState:
        return TallyState(limit=3)


# -- Fragile: mutates, then fails ----------------------------------------------------


class FragileState(BaseModel):
    """A total and the history of what was added (a nested mutable value)."""

    total: int = 0
    history: list[int] = []


class Op(BaseModel):
    """Add ``by``; then ``reject`` raises a Rejection and ``crash`` a ZeroDivisionError."""

    by: int
    then: Literal["accept", "reject", "crash"] = "accept"


class Refused(Rejection):
    """The Fragile machine refuses an input after mutating its state."""


class Fragile(StateMachine[FragileState, Op, NoTracked, NoTracked, NoTracked]):
    """Mutates state before deciding, which fasm leaves to the author's care."""

    def __init__(self) -> None:
        self.calls = 0

    def stf(
        self,
        state: FragileState,
        input: Input[Op, NoTracked],
        actions: Actions[NoTracked, NoTracked],
    ) -> None:
        self.calls += 1
        assert isinstance(input, Normal)
        state.total += input.value.by
        state.history.append(input.value.by)
        if input.value.then == "reject":
            raise Refused(f"refused after adding {input.value.by}")
        if input.value.then == "crash":
            _ = 1 // 0


# -- Payments: tracked actions, completions, restore --------------------------------


class PaymentsState(BaseModel):
    """Charges waiting for their result, and the settled total."""

    next_id: int = 1
    pending: dict[str, int] = {}
    settled: int = 0
    failed: int = 0


class Charge(BaseModel):
    """Charge ``amount``; ``ids`` chooses int or string action ids."""

    amount: int
    ids: Literal["int", "str"] = "int"


class Cancel(BaseModel):
    """A second input model, so the input type is a union."""

    reason: str


class ChargeCard(BaseModel):
    """Tracked action: charge the card."""

    amount: int


class CheckStatus(BaseModel):
    """Tracked action re-issued by restore: ask how a charge went.

    Its field differs from ChargeCard's: two models of one union with the same
    fields would encode alike (the codec refuses such an action).
    """

    amount_due: int


class ChargeResult(BaseModel):
    """The result of a tracked charge."""

    ok: bool


class Receipt(BaseModel):
    """Untracked action: tell the customer."""

    amount: int
    ok: bool


PaymentInput = Charge | Cancel
PaymentAction = ChargeCard | CheckStatus


class NothingPending(Rejection):
    """Cancel with no charge pending."""


def payments_step(
    state: PaymentsState,
    input: Input[PaymentInput, ChargeResult],
    actions: Actions[PaymentAction, Receipt],
) -> None:
    """The payments STF body, shared by the plain and the async machine."""
    if isinstance(input, Completed):
        key = str(input.id)
        # Lenient on purpose: the engine, not the STF, must keep a duplicate
        # completion out (guarantee 5); this STF would apply it silently.
        amount = state.pending.pop(key, 0)
        if input.result.ok:
            state.settled += amount
        else:
            state.failed += 1
        actions.emit(Receipt(amount=amount, ok=input.result.ok))
        return
    value = input.value
    if isinstance(value, Cancel):
        if not state.pending:
            raise NothingPending(value.reason)
        actions.emit(Receipt(amount=0, ok=False))
        return
    n = state.next_id
    action_id: int | str = n if value.ids == "int" else f"c{n}"
    state.next_id += 1
    state.pending[str(action_id)] = value.amount
    actions.track(action_id, ChargeCard(amount=value.amount))


def payments_restore(state: PaymentsState, actions: Actions[PaymentAction, Receipt]) -> None:
    """Re-issue a CheckStatus for each pending charge, in id order."""
    for key in sorted(state.pending):
        action_id: int | str = int(key) if key.isdigit() else key
        actions.track(action_id, CheckStatus(amount_due=state.pending[key]))


class Payments(StateMachine[PaymentsState, PaymentInput, PaymentAction, ChargeResult, Receipt]):
    """Charges cards through tracked actions; uses the default restore."""

    def __init__(self) -> None:
        self.calls = 0

    def stf(
        self,
        state: PaymentsState,
        input: Input[PaymentInput, ChargeResult],
        actions: Actions[PaymentAction, Receipt],
    ) -> None:
        self.calls += 1
        payments_step(state, input, actions)


class CheckingPayments(Payments):
    """Payments whose restore re-issues CheckStatus instead of the original charge."""

    def restore(self, state: PaymentsState, actions: Actions[PaymentAction, Receipt]) -> None:
        payments_restore(state, actions)


class AsyncPayments(
    StateMachine[PaymentsState, PaymentInput, PaymentAction, ChargeResult, Receipt]
):
    """The same logic as :class:`CheckingPayments`, as ``async`` functions."""

    async def stf(
        self,
        state: PaymentsState,
        input: Input[PaymentInput, ChargeResult],
        actions: Actions[PaymentAction, Receipt],
    ) -> None:
        payments_step(state, input, actions)

    async def restore(self, state: PaymentsState, actions: Actions[PaymentAction, Receipt]) -> None:
        payments_restore(state, actions)


class Suspending(StateMachine[TallyState, Increment, NoTracked, NoTracked, Incremented]):
    """An async STF that really waits on something: forbidden (rule 1)."""

    async def stf(
        self,
        state: TallyState,
        input: Input[Increment, NoTracked],
        actions: Actions[NoTracked, Incremented],
    ) -> None:
        import asyncio

        state.value += 1
        await asyncio.sleep(0)


# -- Ledger: every applied token is visible -----------------------------------------


class LedgerState(BaseModel):
    """The tokens applied, in order, and their sum."""

    tokens: list[str] = []
    total: int = 0


class Entry(BaseModel):
    """One uniquely named amount."""

    token: str
    amount: int


class Ledger(StateMachine[LedgerState, Entry, NoTracked, NoTracked, NoTracked]):
    """Appends each entry; a token seen twice would show an input applied twice."""

    def stf(
        self,
        state: LedgerState,
        input: Input[Entry, NoTracked],
        actions: Actions[NoTracked, NoTracked],
    ) -> None:
        assert isinstance(input, Normal)
        state.tokens.append(input.value.token)
        state.total += input.value.amount


# -- Burst: the actions container's capacity ----------------------------------------


class BurstState(BaseModel):
    """How many actions were emitted, and how many inputs hit the capacity."""

    emitted: int = 0
    truncated: int = 0


class Emit(BaseModel):
    """Emit ``n`` untracked actions; with ``catch`` an ActionsFull is handled."""

    n: int
    catch: bool = False


class Ping(BaseModel):
    """An untracked action."""

    seq: int


class Burst(StateMachine[BurstState, Emit, NoTracked, NoTracked, Ping]):
    """Emits as asked, against a capacity of 3."""

    actions_capacity = 3

    def stf(
        self,
        state: BurstState,
        input: Input[Emit, NoTracked],
        actions: Actions[NoTracked, Ping],
    ) -> None:
        assert isinstance(input, Normal)
        for seq in range(input.value.n):
            try:
                actions.emit(Ping(seq=seq))
            except ActionsFull:
                if not input.value.catch:
                    raise
                state.truncated += 1
                break
            state.emitted += 1


class WideBurst(Burst):
    """The same machine with a larger capacity."""

    actions_capacity = 5


# -- Sloppy: emits what it does not declare -----------------------------------------


class Note(BaseModel):
    """The one declared untracked action."""

    text: str


class Stranger(BaseModel):
    """A model the machine does not declare as an action."""

    text: str


class Misbehave(BaseModel):
    """What to emit."""

    emit: Literal["note", "tracked", "stranger"]


class SloppyState(BaseModel):
    """Counts STF calls that returned normally."""

    accepted: int = 0


class Sloppy(StateMachine[SloppyState, Misbehave, NoTracked, NoTracked, Note]):
    """Declares no tracked actions and only Note as untracked, then breaks that on request."""

    def stf(
        self,
        state: SloppyState,
        input: Input[Misbehave, NoTracked],
        actions: Actions[NoTracked, Note],
    ) -> None:
        assert isinstance(input, Normal)
        state.accepted += 1
        wanted = input.value.emit
        if wanted == "note":
            actions.emit(Note(text="fine"))
        elif wanted == "tracked":
            bad: Any = Tracked(1, Note(text="tracked"))
            actions.add(bad)
        else:
            stranger: Any = Stranger(text="who")
            actions.emit(stranger)


# -- Stamped: metadata reaches the STF ------------------------------------------------


class Seen(BaseModel):
    """What the STF read from one input's metadata."""

    at: str
    actor: str | None


class StampedState(BaseModel):
    """Every input's accepted-at time and actor, in order."""

    seen: list[Seen] = []


class Stamped(StateMachine[StampedState, int, NoTracked, NoTracked, NoTracked]):
    """Records ``input.meta`` into state: time reaches a machine through the log."""

    def stf(
        self,
        state: StampedState,
        input: Input[int, NoTracked],
        actions: Actions[NoTracked, NoTracked],
    ) -> None:
        state.seen.append(Seen(at=input.meta.accepted_at.isoformat(), actor=input.meta.actor))


# -- helpers --------------------------------------------------------------------------


def sqlite_url(tmp_path: Path, name: str = "events.db") -> str:
    """A SQLite URL for a file under ``tmp_path``."""
    return f"sqlite:///{tmp_path / name}"


@contextmanager
def fresh_store(url: str) -> Iterator[EventStore]:
    """A new store on ``url`` (its own connections), closed afterwards."""
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


def raw_records(url: str, stream: str) -> list[RawRecord]:
    """Every stored record of ``stream``, read through a fresh store."""
    with fresh_store(url) as store:
        return list(store.read_stream(stream))


def db_rows(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the SQLite file ``db``, read with plain sqlite3."""
    with closing(sqlite3.connect(db)) as conn:
        tables = [
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
            )
        ]
        return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY 1, 2').fetchall() for t in tables}


def whole_log(url: str) -> list[tuple[str, int, str, bytes]]:
    """The whole log as comparable tuples, read through a fresh store."""
    with fresh_store(url) as store:
        return [(r.stream, r.version, r.tag, r.body) for r in store.read_log()]


def folded_state(streams: Streams[Any, Any, Any, Any, Any], stream: str) -> Any:
    """The state a from-scratch fold of ``stream``'s log gives, ignoring any cache.

    It folds with a new instance of the machine's class, so STF call counters
    on ``streams.machine`` are not disturbed.
    """
    return fold(type(streams.machine)(), stream, streams.records(stream)).state
