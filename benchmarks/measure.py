"""Measuring: each run in a fresh process, timed, with its peak memory; medians over runs.

A run happens in a fresh interpreter so that nothing allocated earlier (other
benchmarks, data setup, the previous run's heap) counts or gets in the way. The
child imports the target's module, notes its resident set size (RSS), times one
call of the target, and notes its peak RSS; the difference is what the run
itself needed above the interpreter and its imports. Run as a module, this file
is that child::

    python -m benchmarks.measure benchmarks.replay:replay_ours path/to/file.db
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(field: str) -> int | None:
    try:
        text = _STATUS.read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def reset_peak_rss() -> bool:
    """Restart the peak-RSS high-water mark from the current RSS (Linux); False if it cannot."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def max_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (10**6 bytes).

    On Linux this is ``VmHWM``, the high-water mark of this process image:
    ``ru_maxrss`` would also count the parent's peak, which a child inherits
    across fork and exec. Elsewhere it is ``ru_maxrss``.
    """
    hwm = _status_kb("VmHWM")
    if hwm is not None:
        return hwm * 1024 / 1e6
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    scale = 1 if sys.platform == "darwin" else 1024
    return peak * scale / 1e6


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a target in a fresh process: its time, its memory, and what it returned.

    ``seconds`` is wall-clock time; ``cpu_seconds`` the process's CPU time,
    which other work on a shared machine disturbs less.
    """

    seconds: float
    cpu_seconds: float
    start_mb: float
    peak_mb: float
    result: Any

    @property
    def growth_mb(self) -> float:
        """How far the run raised the peak RSS above the interpreter and its imports."""
        return max(0.0, self.peak_mb - self.start_mb)


@dataclass(frozen=True, slots=True)
class Runs:
    """Repeated runs of one target, summarised for a noisy, shared machine."""

    runs: tuple[Run, ...]

    @property
    def seconds(self) -> tuple[float, ...]:
        """Each run's seconds, in the order they ran."""
        return tuple(r.seconds for r in self.runs)

    @property
    def median_seconds(self) -> float:
        """The median run's seconds: one slow run (a busy neighbour) does not move it."""
        return statistics.median(self.seconds)

    def rate(self, count: int) -> float:
        """``count`` items per second at the median wall-clock time."""
        return count / self.median_seconds

    def cpu_rate(self, count: int) -> float:
        """``count`` items per second of CPU time, at the median."""
        return count / statistics.median(r.cpu_seconds for r in self.runs)

    @property
    def growth_mb(self) -> float:
        """The largest peak-RSS growth of any run."""
        return max(r.growth_mb for r in self.runs)


def run_isolated(target: str, *args: str) -> Run:
    """Run ``module:function`` with string ``args`` once in a fresh interpreter.

    The child imports the module first, so imports are neither timed nor
    counted in the growth. The function's return value must be
    JSON-serialisable; it comes back as ``result`` so the caller can check that
    the run did what it should. Raises ``RuntimeError`` with the child's error
    output if the child fails.
    """
    command = [sys.executable, "-m", "benchmarks.measure", target, *args]
    # The child must import this package whatever the working directory is.
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root}
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"run of {target} failed (exit {done.returncode}):\n{done.stderr}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return Run(
        report["seconds"],
        report["cpu_seconds"],
        report["start_mb"],
        report["peak_mb"],
        report["result"],
    )


def _child(argv: list[str]) -> int:
    if not argv or ":" not in argv[0]:
        print("usage: python -m benchmarks.measure module:function [arg ...]", file=sys.stderr)
        return 2
    module_name, _, function_name = argv[0].partition(":")
    function = getattr(importlib.import_module(module_name), function_name)
    gc.collect()
    # Peaks reached while importing are not the run's: start the mark afresh.
    reset_peak_rss()
    start_mb = max_rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = function(*argv[1:])
    report = {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu_started,
        "start_mb": start_mb,
        "peak_mb": max_rss_mb(),
        "result": result,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
