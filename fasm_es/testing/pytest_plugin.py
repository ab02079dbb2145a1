"""pytest plugin: run simulations from tests, with seeds and steps from the command line.

Installed with fasm-es (entry point ``pytest11``), so a project's tests get:

- ``--fasm-seed S`` (repeatable): run exactly these seeds;
- ``--fasm-seeds N``: run seeds 0..N-1;
- ``--fasm-steps N``: steps per seed;
- the fixture ``fasm_simulate``: ``fasm_simulate(spec, seeds=..., steps=...)``
  calls :func:`~fasm_es.testing.simulate` with the command-line values in
  place of the test's own, prints the report's summary, and returns the
  report. On failure the :class:`~fasm_es.testing.SimulationFailure` carries
  a note with the pytest command that reruns just the failing seed.

::

    def test_coffee_shop(fasm_simulate):
        fasm_simulate(SIMULATION, seeds=20, steps=500)

    # pytest tests/test_sim.py --fasm-seed 7 --fasm-steps 120   (replay one failure)
    # pytest tests/test_sim.py --fasm-seeds 1000                 (a longer soak)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the simulator is imported when a test uses the fixture, not at startup
    from fasm_es.testing.simulate import SimulationReport
    from fasm_es.testing.spec import Simulation


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--fasm-seed``, ``--fasm-seeds`` and ``--fasm-steps``."""
    group = parser.getgroup("fasm-es", "fasm-es deterministic simulation")
    group.addoption(
        "--fasm-seed",
        action="append",
        type=int,
        default=None,
        metavar="SEED",
        help="run fasm_simulate with this seed only (repeat for several)",
    )
    group.addoption(
        "--fasm-seeds",
        type=int,
        default=None,
        metavar="N",
        help="run fasm_simulate with seeds 0..N-1",
    )
    group.addoption(
        "--fasm-steps",
        type=int,
        default=None,
        metavar="N",
        help="steps per seed for fasm_simulate",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Refuse contradictory or impossible options before any test runs."""
    seeds = config.getoption("fasm_seeds", None)
    if config.getoption("fasm_seed", None) and seeds is not None:
        raise pytest.UsageError("use --fasm-seed or --fasm-seeds, not both")
    if seeds is not None and seeds < 1:
        raise pytest.UsageError(f"--fasm-seeds must be at least 1, got {seeds}")
    steps = config.getoption("fasm_steps", None)
    if steps is not None and steps < 1:
        raise pytest.UsageError(f"--fasm-steps must be at least 1, got {steps}")


@dataclass(frozen=True)
class FasmSimulate:
    """The ``fasm_simulate`` fixture's value: call it like :func:`~fasm_es.testing.simulate`.

    ``seeds`` and ``steps`` hold the command-line values (``None`` when not given);
    they replace what a test passes.
    """

    seeds: list[int] | None
    steps: int | None
    nodeid: str

    def __call__(
        self,
        spec: Simulation[Any],
        seeds: Iterable[int] | int = 100,
        steps: int = 1000,
        **options: Any,
    ) -> SimulationReport:
        """Run ``spec``; the command line's seeds and steps win over these arguments."""
        from fasm_es.testing.simulate import SimulationFailure, simulate

        chosen_seeds = self.seeds if self.seeds is not None else seeds
        chosen_steps = self.steps if self.steps is not None else steps
        try:
            report = simulate(spec, chosen_seeds, chosen_steps, **options)
        except SimulationFailure as failure:
            failure.add_note(
                f"rerun this test on the failing seed: pytest {self.nodeid} "
                f"--fasm-seed {failure.seed} --fasm-steps {failure.step}"
            )
            raise
        print(report.summary())
        return report


@pytest.fixture
def fasm_simulate(request: pytest.FixtureRequest) -> FasmSimulate:
    """Run a simulation spec with the ``--fasm-seed``/``--fasm-seeds``/``--fasm-steps``
    overrides applied; prints the report summary and returns the report."""
    config = request.config
    explicit: list[int] | None = config.getoption("fasm_seed", None)
    count: int | None = config.getoption("fasm_seeds", None)
    seeds = explicit if explicit else (list(range(count)) if count is not None else None)
    return FasmSimulate(seeds, config.getoption("fasm_steps", None), request.node.nodeid)
