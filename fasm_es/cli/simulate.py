"""``simulate MODULE:SPEC``: run a deterministic simulation from the command line.

The spec is a :class:`~fasm_es.testing.Simulation` named ``module:attribute``
(imported from the installed packages or the current directory). Seeds run one
at a time, with a progress bar over them on a terminal. Every seed passing
prints the report's summary; the first seed that fails prints the seed, the
step, the failed check, the shrunk trace and the one-line command that
replays it, and exits 1.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, replace
from typing import Annotated, Any

import typer

from fasm_es.errors import FasmError
from fasm_es.testing import Simulation, SimulationFailure, SimulationReport
from fasm_es.testing import simulate as run_simulation
from fasm_es.testing.__main__ import load_spec

from .output import CliError, ExitCode, Output, usage_error
from .session import DebugOption, JsonOption, Session


def simulate(
    ctx: typer.Context,
    spec: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:SPEC",
            help="A fasm_es.testing.Simulation, as module:attribute "
            "(for example examples.coffee_shop.simulation:SIMULATION).",
            show_default=False,
        ),
    ],
    seeds: Annotated[
        int, typer.Option("--seeds", min=1, metavar="N", help="Run seeds 0..N-1.")
    ] = 10,
    steps: Annotated[
        int, typer.Option("--steps", min=1, metavar="N", help="Steps per seed.")
    ] = 1000,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            metavar="S",
            help="Run this one seed instead (as a failure's replay command does).",
            show_default=False,
        ),
    ] = None,
    json_: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Simulate a machine under faults, crashes and restores; check every guarantee each step.

    Runs seeds 0..N-1 (or the one --seed) for --steps steps each. Exits 0 with
    a summary when every check held; exits 1 at the first failing seed,
    printing the seed, the step, the check, a shrunk trace and the command
    that replays it. --json prints one JSON document.
    """
    with Session(ctx, json_=json_) as session:
        found = load(spec)
        chosen = [seed] if seed is not None else list(range(seeds))
        out = session.out
        try:
            report = run_seeds(found, chosen, steps, out)
        except SimulationFailure as failure:
            show_failure(out, spec, failure)
            raise typer.Exit(ExitCode.CHECK_FAILED) from None
        show_report(out, spec, report)


def load(location: str) -> Simulation[Any]:
    """The spec named ``module:attribute``, with that location for its replay command.

    Raises :class:`CliError`: exit code 2 when ``location`` is not
    ``module:attribute``, 4 when it cannot be imported or is not a
    :class:`~fasm_es.testing.Simulation`.
    """
    module_name, sep, attribute = location.partition(":")
    names = [*module_name.split("."), attribute]
    if not sep or not all(name.isidentifier() for name in names):
        raise usage_error(
            f"{location!r} is not module:attribute (for example "
            "examples.coffee_shop.simulation:SIMULATION)"
        )
    try:
        found = load_spec(location)
    except SystemExit as exc:
        # load_spec speaks to a terminal: "error: ..." and a status; keep the words.
        raise CliError(ExitCode.MACHINE, str(exc.code).removeprefix("error: ")) from exc
    except Exception as exc:
        raise CliError(
            ExitCode.MACHINE,
            f"cannot load {location!r}: importing it raised {type(exc).__name__}: {exc}",
        ) from exc
    # The failure's replay command names the spec the way it was given here; a
    # copy carries that, so the imported module's spec is left as it was.
    return replace(found, location=found.location or location)


def run_seeds(spec: Simulation[Any], seeds: list[int], steps: int, out: Output) -> SimulationReport:
    """Run each seed in turn (so the bar can move) and add up the reports.

    Raises :class:`SimulationFailure` at the first seed that fails, and
    :class:`CliError` (exit code 4) when the machine, the spec or the
    simulator raises something that is not a check failing.
    """
    total: SimulationReport | None = None
    with out.progress("simulating", len(seeds)) as meter:
        for seed in seeds:
            meter.note(f"seed {seed}")
            try:
                one = run_simulation(spec, [seed], steps)
            except (SimulationFailure, FasmError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise CliError(
                    ExitCode.MACHINE,
                    f"the simulation stopped at seed {seed} on {type(exc).__name__}: {exc} "
                    "(raised by the machine, the spec or the simulator; --debug shows where)",
                ) from exc
            if total is None:
                total = SimulationReport(one.machine, seeds, steps)
            total.stats.add(one.stats)
            total.mutates_before_rejecting += one.mutates_before_rejecting
            total.probed_calls += one.probed_calls
            meter.advance()
    assert total is not None  # seeds is never empty: --seeds is at least 1
    return total


def fasm_replay(location: str, failure: SimulationFailure) -> str:
    """The ``fasm-es`` command that replays ``failure`` (as its own ``command`` does)."""
    return f"fasm-es simulate {location} --seed {failure.seed} --steps {failure.step}"


def show_report(out: Output, location: str, report: SimulationReport) -> None:
    """Print a passing run: its summary, or a JSON document."""
    if out.json:
        out.document(
            {
                "ok": True,
                "machine": report.machine,
                "spec": location,
                "seeds": report.seeds,
                "steps": report.steps,
                "stats": asdict(report.stats),
                "determinism_probes": report.probed_calls,
                "mutates_before_rejecting": report.mutates_before_rejecting,
            }
        )
        return
    plain(report.summary())


def show_failure(out: Output, location: str, failure: SimulationFailure) -> None:
    """Print a failed run: what failed, the shrunk trace and how to replay it."""
    if out.json:
        out.document(
            {
                "ok": False,
                "machine": failure.machine,
                "spec": location,
                "seed": failure.seed,
                "step": failure.step,
                "steps": failure.steps,
                "check": failure.check,
                "message": failure.message,
                "shrunk": [op.describe() for op in failure.shrunk],
                "command": failure.command,
                "fasm_es_command": fasm_replay(location, failure),
            }
        )
        return
    plain(f"{failure}\n    or: {fasm_replay(location, failure)}")


def plain(text: str) -> None:
    """Print ``text`` on stdout as it is: never wrapped, so the replay command pastes whole."""
    sys.stdout.write(text + "\n")
