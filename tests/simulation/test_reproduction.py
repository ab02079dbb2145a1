"""Same seed, same run, byte for byte; a recorded trace replays to the same log."""

from __future__ import annotations

from dataclasses import replace

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
    # The run did exercise faults, commits of unknown outcome and outages among them.
    assert first.stats.crashes > 0 and first.stats.delivered > 0
    assert first.stats.unknown_outcomes > 0
    assert first.stats.refused_calls > first.stats.outages > 0


def test_different_seeds_give_different_runs() -> None:
    assert finished(1).log_bytes() != finished(2).log_bytes()


def test_a_recorded_trace_replays_to_the_same_log() -> None:
    seeded = finished(11)
    assert any(getattr(op, "store_error", None) for op in seeded.trace)
    assert any(getattr(op, "outage", 0) for op in seeded.trace)
    replayed = Run(SIMULATION, 11, 0, ops=seeded.trace)
    replayed.run()
    assert replayed.log_bytes() == seeded.log_bytes()
    assert replayed.stats == seeded.stats


def test_outages_draw_nothing_from_a_run_without_store_errors() -> None:
    """A spec without store errors keeps its runs, whatever the chance of an outage."""
    runs = []
    for outage in (0.0, 1.0):
        faults = replace(SIMULATION.faults, store_error=0.0, outage=outage)
        run = Run(replace(SIMULATION, faults=faults), 3, 300)
        run.run()
        runs.append(run)
    assert [op.describe() for op in runs[0].trace] == [op.describe() for op in runs[1].trace]
    assert runs[0].log_bytes() == runs[1].log_bytes()
    assert runs[0].stats.store_errors == runs[0].stats.outages == 0
