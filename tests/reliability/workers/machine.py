"""The machine under torture: deposits to accounts, each posted to an outside ledger.

A :class:`Deposit` carries a reference chosen by the client (unique per
input), so the log shows whether an input was stored once, twice or never.
Each accepted deposit emits a tracked :class:`Post` to the outside ledger
service; its :class:`Posted` result (the service's receipt) comes back as a
completion. The state is small and order-sensitive: ``receipts`` is a running
hash of every receipt in completion order, so a completion applied twice, lost
or reordered changes it.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field

from fasm_es import Actions, Completed, Input, Rejection, StateMachine

UNLUCKY = 97
"""Deposits whose amount is a multiple of this are rejected (about 1 in 97)."""


class Deposit(BaseModel):
    """Put ``amount`` into the account; ``ref`` names this input (the client's choice)."""

    model_config = ConfigDict(extra="forbid")

    ref: str = Field(min_length=1, max_length=200)
    amount: int = Field(ge=1, le=1_000_000)


class Post(BaseModel):
    """Tracked action: record the deposit at the outside ledger service."""

    ref: str
    amount: int


class Posted(BaseModel):
    """The outside ledger's answer: its receipt for the posting."""

    receipt: str


class Account(BaseModel):
    """An account: ``applied`` counts the records folded, so it equals the stream's version."""

    applied: int = 0
    balance: int = 0
    next_id: int = 1
    pending: dict[int, int] = Field(default_factory=dict)
    posted: int = 0
    receipts: str = ""


class Unlucky(Rejection):
    """The deposit's amount is a multiple of :data:`UNLUCKY`."""


class Ledger(StateMachine[Account, Deposit, Post, Posted, None]):
    """Deposits, each posted once to an outside ledger (see the module docstring)."""

    def stf(
        self, state: Account, input: Input[Deposit, Posted], actions: Actions[Post, None]
    ) -> None:
        if isinstance(input, Completed):
            state.pending.pop(int(input.id), None)
            state.posted += 1
            digest = hashlib.sha256(f"{state.receipts}|{input.result.receipt}".encode())
            state.receipts = digest.hexdigest()[:32]
            state.applied += 1
            return
        deposit = input.value
        if deposit.amount % UNLUCKY == 0:
            raise Unlucky(f"deposit {deposit.ref}: {deposit.amount} is a multiple of {UNLUCKY}")
        action_id = state.next_id
        actions.track(action_id, Post(ref=deposit.ref, amount=deposit.amount))
        state.next_id += 1
        state.pending[action_id] = deposit.amount
        state.balance += deposit.amount
        state.applied += 1
