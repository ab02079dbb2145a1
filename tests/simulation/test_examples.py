"""Every example machine passes the simulator's default budget with every fault on.

Each example's ``SIMULATION`` runs for 100 seeds x 1000 steps with the
default :class:`~fasm_es.testing.Faults`; the report's figures are printed
(``pytest -s`` or a CI log shows them) and checked, so a spec that stopped
exercising a fault (no crash, no rejection, no duplicate...) fails here
instead of passing vacuously. Two more tests look past the machines' own
state, at their outside services after a run: money the fake payment
services hold agrees with what the machines settled, and the payments
machine's durable timers really fire.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import import_module
from typing import Any

import pytest

from examples.dentist_booking.fake_payments import AuthStatus
from examples.dentist_booking.machine import BookingState, RequestStatus
from examples.dentist_booking.simulation import PaymentsWorld
from examples.payments.machine import Account
from examples.payments.service import charge_key
from examples.payments.simulation import GatewayWorld
from fasm_es import Completed, TimerFired
from fasm_es.testing import Faults, Simulation, simulate
from fasm_es.testing.simulate import run_one
from fasm_es.testing.simulator import Run

SEEDS = 100
STEPS = 1000


@dataclass(frozen=True)
class Example:
    """An example's simulation module, and whether its machine emits tracked actions."""

    module: str
    tracked: bool

    def spec(self) -> Simulation[Any]:
        """The example's ``SIMULATION``."""
        spec: Simulation[Any] = import_module(self.module).SIMULATION
        return spec


EXAMPLES = [
    Example("examples.counter.simulation", tracked=False),
    Example("examples.coffee_shop.simulation", tracked=True),
    Example("examples.dentist_booking.simulation", tracked=True),
    Example("examples.payments.simulation", tracked=True),
]


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.module.split(".")[1] for e in EXAMPLES])
def test_example_passes_the_default_budget_with_every_fault(example: Example) -> None:
    spec = example.spec()
    assert spec.faults == Faults()  # the defaults: every fault on

    report = simulate(spec, seeds=SEEDS, steps=STEPS)
    print(report.summary())

    s = report.stats
    assert report.seeds == list(range(SEEDS)) and s.steps == SEEDS * STEPS
    assert s.accepted > 0 and s.rejected > 0 and s.invalid > 0
    assert s.crashes > 0 and s.second_writer > 0 and s.time_jumps > 0
    assert s.store_errors > s.unknown_outcomes > 0
    assert s.refused_calls > s.outages > 0
    assert s.replay_checks >= SEEDS * (STEPS // spec.replay_every)
    assert report.probed_calls > 0
    if example.tracked:
        assert s.delivered > 0 and s.failed_calls > 0 and s.lost > 0
        assert s.duplicates_refused > 0
        assert s.late_accepted > 0 and s.late_refused > 0
    else:
        assert s.delivered == s.failed_calls == s.lost == 0


def finished_runs(module: str, seeds: range) -> list[Run]:
    """Runs of an example's spec, left as they ended (determinism already has its own test)."""
    spec = replace(import_module(module).SIMULATION, determinism_every=0)
    return [run_one(spec, seed, STEPS) for seed in seeds]


def test_payments_timers_fire_and_the_gateway_agrees_with_the_accounts() -> None:
    fired = cancelled = settled = 0
    for run in finished_runs("examples.payments.simulation", range(3)):
        assert isinstance(run.world, GatewayWorld)
        gateway = run.world.gateway
        for stream in run.spec.streams:
            for record in run.second_writer.records(stream):
                inp = record.input
                fired += isinstance(inp, Completed) and isinstance(inp.result, TimerFired)
            account: Account = run.second_writer.state(stream)
            for n, payment in sorted(account.payments.items()):
                at_gateway = gateway.state_of(charge_key(stream, n))
                where = f"seed {run.seed} {stream} payment {n} ({payment.status})"
                if payment.status == "confirmed":
                    assert at_gateway == "charged", f"{where}: gateway says {at_gateway}"
                elif payment.status == "failed":
                    assert at_gateway in ("declined", "voided"), f"{where}: {at_gateway}"
                elif payment.status == "cancelled":
                    assert at_gateway != "charged", f"{where}: the money stayed charged"
                    cancelled += 1
                settled += payment.status != "pending"
    assert fired > 0 and cancelled > 0 and settled > 0


def test_dentist_money_held_by_the_service_matches_the_bookings() -> None:
    confirmed = ended = 0
    for run in finished_runs("examples.dentist_booking.simulation", range(3)):
        assert isinstance(run.world, PaymentsWorld)
        service = run.world.service
        for stream in run.spec.streams:
            state: BookingState = run.second_writer.state(stream)
            for rid, request in sorted(state.requests.items()):
                payment = service.authorizations.get((stream, request.preauth_id))
                status = payment.status if payment is not None else None
                where = f"seed {run.seed} {stream} request {rid} ({request.status})"
                if request.status == RequestStatus.CONFIRMED:
                    assert payment is not None and status == AuthStatus.AUTHORIZED, where
                    assert payment.amount_cents == request.amount_cents, where
                    confirmed += 1
                elif request.awaiting is None:  # ended otherwise: nothing may stay held
                    assert status not in (AuthStatus.AUTHORIZED, AuthStatus.PROCESSING), where
                    ended += 1
    assert confirmed > 0 and ended > 0
