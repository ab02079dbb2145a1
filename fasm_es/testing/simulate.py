"""``simulate(spec, seeds, steps)``: run seeds, and on failure explain it well.

A failure raises :class:`SimulationFailure` with the seed, the step, the check
that failed, a shrunk trace (the shortest list of steps found that still fails
the same check) and a one-line command that replays the run.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fasm_es.testing.ops import Op
from fasm_es.testing.probe import Findings
from fasm_es.testing.simulator import CheckFailed, Run, RunStats
from fasm_es.testing.spec import Simulation

DEFAULT_SHRINK_RUNS = 150


class SimulationFailure(AssertionError):
    """A simulation found a broken check; the message says how to reproduce it."""

    def __init__(
        self,
        *,
        machine: str,
        seed: int,
        step: int,
        steps: int,
        check: str,
        message: str,
        trace: Sequence[Op],
        shrunk: Sequence[Op],
        command: str,
    ) -> None:
        self.machine = machine
        self.seed = seed
        self.step = step
        self.steps = steps
        self.check = check
        self.message = message
        self.trace = list(trace)
        self.shrunk = list(shrunk)
        self.command = command
        lines = [
            f"simulation of machine {machine} failed: seed {seed}, step {step} of {steps}",
            f"check {check!r}: {message}",
            f"shrunk trace ({len(self.shrunk)} of {step} steps):",
            *(f"  {n}. {op.describe()}" for n, op in enumerate(self.shrunk, 1)),
            f"replay: {command}",
        ]
        super().__init__("\n".join(lines))


@dataclass
class SimulationReport:
    """What passing runs exercised, summed over seeds."""

    machine: str
    seeds: list[int]
    steps: int
    stats: RunStats = field(default_factory=RunStats)
    mutates_before_rejecting: list[str] = field(default_factory=list)
    probed_calls: int = 0

    def summary(self) -> str:
        """A one-paragraph account of the runs."""
        s = self.stats
        lines = [
            f"machine {self.machine}: {len(self.seeds)} seeds x {self.steps} steps passed "
            f"({s.steps} steps)",
            f"  inputs {s.submitted} (accepted {s.accepted}, rejected {s.rejected}, invalid "
            f"{s.invalid}, conflicts {s.conflicts}); answers {s.delivered}, failed calls "
            f"{s.failed_calls}, lost {s.lost}",
            f"  crashes {s.crashes}, store errors {s.store_errors} ({s.unknown_outcomes} of "
            f"unknown outcome; {s.outages} outages refused {s.refused_calls} calls), "
            f"second-writer appends {s.second_writer}, time jumps "
            f"{s.time_jumps}; duplicates refused {s.duplicates_refused}, late refused "
            f"{s.late_refused}, late accepted {s.late_accepted}; replay checks "
            f"{s.replay_checks}; determinism probes {self.probed_calls}",
        ]
        if self.mutates_before_rejecting:
            lines.append(
                f"  note: the STF changed state before rejecting "
                f"{len(self.mutates_before_rejecting)} times (fasm-es refolds the state, but "
                f"under fasm's rules this corrupts memory), e.g. "
                f"{self.mutates_before_rejecting[0]}"
            )
        return "\n".join(lines)


def locate(spec: Simulation[Any]) -> str | None:
    """``module:attribute`` under which ``spec`` can be imported, if it is a module-level name."""
    if spec.location:
        return spec.location
    for name, module in list(sys.modules.items()):
        if name == "__main__" or module is None:
            continue
        for attribute, value in list(vars(module).items()):
            if value is spec:
                return f"{name}:{attribute}"
    return None


def replay_command(spec: Simulation[Any], seed: int, steps: int) -> str:
    """The one-line command that replays ``seed`` for ``steps`` steps."""
    where = locate(spec) or "MODULE:SIMULATION"
    return f"python -m fasm_es.testing {where} --seed {seed} --steps {steps}"


def run_one(spec: Simulation[Any], seed: int, steps: int) -> Run:
    """Run one seed; raises :class:`CheckFailed` (not yet explained) at the first failure."""
    run = Run(spec, seed, steps)
    run.run()
    return run


def _fails_alike(spec: Simulation[Any], seed: int, ops: Sequence[Op], check: str) -> bool:
    try:
        Run(spec, seed, len(ops), ops=ops).run()
    except CheckFailed as failure:
        return failure.check == check
    return False


def shrink(
    spec: Simulation[Any], seed: int, ops: Sequence[Op], check: str, budget: int
) -> list[Op]:
    """The shortest list of steps found (by removing chunks) that still fails ``check``."""
    current = list(ops)
    runs = 0
    chunk = max(len(current) // 2, 1)
    while chunk >= 1 and runs < budget:
        index = 0
        while index < len(current) and runs < budget:
            candidate = current[:index] + current[index + chunk :]
            runs += 1
            if candidate and _fails_alike(spec, seed, candidate, check):
                current = candidate
            else:
                index += chunk
        chunk //= 2
    return current


def simulate(
    spec: Simulation[Any],
    seeds: Iterable[int] | int = 100,
    steps: int = 1000,
    *,
    shrink_runs: int = DEFAULT_SHRINK_RUNS,
) -> SimulationReport:
    """Run ``spec`` for each seed (``seeds`` may be a count: seeds 0..n-1) for ``steps`` steps.

    Returns a :class:`SimulationReport` when every check held on every seed;
    raises :class:`SimulationFailure` at the first seed that fails.
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    name = spec.machine().name
    report = SimulationReport(name, seed_list, steps)
    for seed in seed_list:
        run = Run(spec, seed, steps)
        try:
            run.run()
        except CheckFailed as failure:
            step = len(run.trace)
            shrunk = shrink(spec, seed, run.trace, failure.check, shrink_runs)
            raise SimulationFailure(
                machine=name,
                seed=seed,
                step=step,
                steps=steps,
                check=failure.check,
                message=failure.message,
                trace=run.trace,
                shrunk=shrunk,
                command=replay_command(spec, seed, step),
            ) from failure
        report.stats.add(run.stats)
        report.mutates_before_rejecting += run.findings.mutates_before_rejecting[:3]
        report.probed_calls += run.findings.probed_calls
    return report


__all__ = [
    "Findings",
    "SimulationFailure",
    "SimulationReport",
    "locate",
    "replay_command",
    "run_one",
    "shrink",
    "simulate",
]
