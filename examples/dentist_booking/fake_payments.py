"""A deterministic fake of the payment service the dentist-booking machine calls.

:meth:`FakePayments.handle` answers one tracked action (``Preauth``,
``CheckStatus`` or ``Release``) the way a careful real service would:

- Each call that changes money (``Preauth``, ``Release``) is applied at most
  once per **idempotency key** ``(stream, action id)``. The ledger keeps one
  :class:`LedgerEntry` per key, counting deliveries and applications; a key
  delivered again is not applied again, and is answered with the payment's
  current status. The same key arriving with a different action raises
  :class:`IdempotencyKeyReused` (a machine that reuses ids is broken).
- A payment is named by its ``Preauth``'s key. ``CheckStatus`` reads it.
  Asking about a payment the service never saw (the ``Preauth`` was lost in
  a crash) answers ``Failed`` and *voids* that key, so a ``Preauth`` arriving
  late under it authorizes nothing. Releasing an unknown payment voids it too.
- Decisions are deterministic: a ``random.Random(seed)`` drawn twice per new
  ``Preauth`` (decline? pending?), whatever the outcome, so the same calls in
  the same order always get the same answers. A pending payment resolves
  after ``pending_checks`` status reads.

:meth:`FakePayments.held_cents` says how much money the service holds for a
stream, so a test can compare it with the bookings the machine confirmed.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from examples.dentist_booking.machine import (
    CheckStatus,
    Failed,
    Pending,
    Preauth,
    Release,
    Released,
    Success,
)
from fasm_es import ActionId

IdempotencyKey = tuple[str, int]
"""``(stream, action id)``: the key a tracked action is applied under at most once."""


class ActionKey(Protocol):
    """What names a tracked action to a handler: its stream and action id."""

    @property
    def stream(self) -> str: ...

    @property
    def action_id(self) -> ActionId: ...


class AuthStatus(StrEnum):
    """Where a payment (an authorization) stands at the service."""

    PROCESSING = "processing"
    AUTHORIZED = "authorized"
    DECLINED = "declined"
    RELEASED = "released"
    VOID = "void"


@dataclass
class Authorization:
    """A payment at the service, named by its ``Preauth``'s key.

    ``decision`` is what a ``PROCESSING`` payment resolves to after
    ``checks_left`` status reads.
    """

    key: IdempotencyKey
    request_id: int
    amount_cents: int
    status: AuthStatus
    decision: AuthStatus
    reason: str = ""
    checks_left: int = 0


@dataclass
class LedgerEntry:
    """One money-changing call under its idempotency key."""

    key: IdempotencyKey
    action: Preauth | Release
    deliveries: int = 1


class IdempotencyKeyReused(ValueError):
    """One idempotency key arrived with two different actions."""


class FakePayments:
    """A deterministic payment service; see the module docstring.

    ``decline_rate`` and ``pending_rate`` are the chances a new ``Preauth``
    is declined or left pending; ``declined_patients`` are always declined.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        decline_rate: float = 0.0,
        pending_rate: float = 0.0,
        pending_checks: int = 1,
        declined_patients: Iterable[str] = (),
    ) -> None:
        self._rng = random.Random(seed)
        self.decline_rate = decline_rate
        self.pending_rate = pending_rate
        self.pending_checks = pending_checks
        self.declined_patients = frozenset(declined_patients)
        self.authorizations: dict[IdempotencyKey, Authorization] = {}
        self.ledger: dict[IdempotencyKey, LedgerEntry] = {}
        self.applications: Counter[IdempotencyKey] = Counter()
        self.calls: list[tuple[IdempotencyKey, str]] = []

    def handle(
        self, stream: str, action_id: ActionId, action: Preauth | CheckStatus | Release
    ) -> Success | Failed | Released | Pending:
        """Answer the tracked action ``action_id`` of ``stream``."""
        if not isinstance(action_id, int):
            raise TypeError(f"the dentist-booking machine uses int action ids, got {action_id!r}")
        key = (stream, action_id)
        self.calls.append((key, action.kind))
        if isinstance(action, CheckStatus):
            return self._status((stream, action.preauth_id))
        entry = self.ledger.get(key)
        if entry is not None:
            if entry.action != action:
                raise IdempotencyKeyReused(
                    f"key {key} was first used for {entry.action!r}, now for {action!r}"
                )
            entry.deliveries += 1
            payment = key if isinstance(action, Preauth) else (stream, action.preauth_id)
            return self._status(payment)
        self.ledger[key] = LedgerEntry(key, action)
        self.applications[key] += 1
        if isinstance(action, Preauth):
            return self._preauthorize(key, action)
        return self._release((stream, action.preauth_id))

    def __call__(
        self, action: Preauth | CheckStatus | Release, key: ActionKey
    ) -> Success | Failed | Released | Pending:
        """The same as :meth:`handle`, in the engine's handler form ``handler(action, key)``."""
        return self.handle(key.stream, key.action_id, action)

    def held_cents(self, stream: str) -> int:
        """The money authorized and not released for ``stream``."""
        return sum(
            a.amount_cents
            for key, a in sorted(self.authorizations.items())
            if key[0] == stream and a.status == AuthStatus.AUTHORIZED
        )

    def preauths_per_request(self, stream: str) -> Counter[int]:
        """How many ``Preauth`` keys each request of ``stream`` used (a sound machine uses 1)."""
        return Counter(
            e.action.request_id
            for key, e in sorted(self.ledger.items())
            if key[0] == stream and isinstance(e.action, Preauth)
        )

    # -- the service's rules ------------------------------------------------------------------

    def _preauthorize(
        self, key: IdempotencyKey, action: Preauth
    ) -> Success | Failed | Released | Pending:
        # Always two draws, so one call's outcome never shifts the next call's.
        declined = (
            self._rng.random() < self.decline_rate or action.patient in self.declined_patients
        )
        pending = self._rng.random() < self.pending_rate
        existing = self.authorizations.get(key)
        if existing is not None:
            # A status check or a release voided this key before the Preauth arrived.
            return Failed(reason="the payment was voided before it arrived")
        decision = AuthStatus.DECLINED if declined else AuthStatus.AUTHORIZED
        payment = Authorization(
            key=key,
            request_id=action.request_id,
            amount_cents=action.amount_cents,
            status=AuthStatus.PROCESSING if pending else decision,
            decision=decision,
            reason="card declined" if declined else "",
            checks_left=self.pending_checks if pending else 0,
        )
        self.authorizations[key] = payment
        return self._answer(payment)

    def _release(self, payment_key: IdempotencyKey) -> Released:
        payment = self.authorizations.get(payment_key)
        if payment is None:
            self.authorizations[payment_key] = self._void(payment_key)
        elif payment.status in (AuthStatus.AUTHORIZED, AuthStatus.PROCESSING):
            payment.status = AuthStatus.RELEASED
        return Released()

    def _status(self, payment_key: IdempotencyKey) -> Success | Failed | Released | Pending:
        payment = self.authorizations.get(payment_key)
        if payment is None:
            payment = self._void(payment_key)
            self.authorizations[payment_key] = payment
        elif payment.status == AuthStatus.PROCESSING:
            payment.checks_left -= 1
            if payment.checks_left <= 0:
                payment.status = payment.decision
        return self._answer(payment)

    @staticmethod
    def _void(key: IdempotencyKey) -> Authorization:
        return Authorization(
            key=key,
            request_id=-1,
            amount_cents=0,
            status=AuthStatus.VOID,
            decision=AuthStatus.VOID,
            reason="no such payment (voided)",
        )

    @staticmethod
    def _answer(payment: Authorization) -> Success | Failed | Released | Pending:
        if payment.status == AuthStatus.AUTHORIZED:
            return Success(amount_cents=payment.amount_cents)
        if payment.status == AuthStatus.PROCESSING:
            return Pending()
        if payment.status == AuthStatus.RELEASED:
            return Released()
        return Failed(reason=payment.reason)
