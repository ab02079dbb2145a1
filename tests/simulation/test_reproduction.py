"""Same seed, same run, byte for byte; a recorded trace replays to the same log."""

from __future__ import annotations

from examples.coffee_shop.simulation import SIMULATION
from fasm_es.testing.simulator import Run


def finished(seed: int, steps: int = 400) -> Run:
    run = Run(SIMULATION, seed, steps)
    run.run()
    return run


def test_same_seed_gives_the_same_run_byte_for_byte() -> None:
    first, second = finished(7), finished(7)
    assert [op.describe() for op in first.trace] == [op.describe() for op in second.trace]
    assert first.log_bytes() == second.log_bytes()
    assert first.stats == second.stats
    # The run did exercise faults, commits of unknown outcome among them.
    assert first.stats.crashes > 0 and first.stats.delivered > 0
    assert first.stats.unknown_outcomes > 0


def test_different_seeds_give_different_runs() -> None:
    assert finished(1).log_bytes() != finished(2).log_bytes()


def test_a_recorded_trace_replays_to_the_same_log() -> None:
    seeded = finished(11)
    assert any(getattr(op, "store_error", None) for op in seeded.trace)
    replayed = Run(SIMULATION, 11, 0, ops=seeded.trace)
    replayed.run()
    assert replayed.log_bytes() == seeded.log_bytes()
    assert replayed.stats == seeded.stats
