"""Multiprocess: durable submits/s on PostgreSQL from three engine processes beside one.

Each run starts engine processes on a fresh schema of one PostgreSQL
database, every one with a :class:`~fasm_es.partition.PartitionLease` over
the same partitions, and waits until they hold equal shares. Then, in the
same wall-clock window of ``seconds`` (each process has loaded its streams
beforehand), each process's submitters send
``Increment(by=1)`` to the counter streams of its own partitions, one at a
time each; a submit counts if its record was committed (durable) inside the
window. The total concurrency is the same for one process and for three
(split between them), so the one-process baseline gets as much group-commit
batching as the three together.

- **baseline**: one engine process holding every partition;
- **ours**: three engine processes sharing them.

Repetitions alternate (1, 3, 1, 3, ...) so a noisy neighbour slows both
alike; each rate is the median. Run as a module, this file is one engine
process of a run::

    python -m benchmarks.multiprocess URL NAME PROCESSES PARTITIONS STREAMS CONCURRENCY DIR
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks.report import Figure, Goal, render
from benchmarks.submit import Progress, percentile

POSTGRES_URL_ENV = "FASM_ES_BENCH_POSTGRES_URL"
DEFAULT_SECONDS = 10.0
DEFAULT_CONCURRENCY = 384
DEFAULT_STREAMS = 3000
DEFAULT_PARTITIONS = 48
DEFAULT_REPEAT = 3
QUICK = {"seconds": 2.0, "repeat": 1}
SCALING_GOAL = Goal(at_least=1.0)
REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class ProcessRun:
    """What one engine process did in the measured window."""

    name: str
    commits: int
    partitions: int
    latencies_ms: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Run:
    """One timed run of ``processes`` engine processes."""

    processes: int
    seconds: float
    members: tuple[ProcessRun, ...]

    @property
    def commits(self) -> int:
        """Durable submits committed in the window, by all processes."""
        return sum(m.commits for m in self.members)

    @property
    def rate(self) -> float:
        """Durable submits per second, all processes together."""
        return self.commits / self.seconds


# -- one engine process ------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> dict[str, Any]:
    from examples.counter import Counter, Increment
    from fasm_es import Engine
    from fasm_es.partition import PartitionLease

    lease = PartitionLease(args.url, name=args.name, partitions=args.partitions, poll_interval=0.2)
    share = args.partitions // args.processes
    work = Path(args.dir)
    latencies: list[float] = []
    async with Engine(Counter(), args.url, partitions=lease) as engine:
        while (
            len(lease.owned()) != share or await asyncio.to_thread(lease.members) != args.processes
        ):
            await asyncio.sleep(0.1)
        mine = [s for s in (f"counter-{i}" for i in range(args.streams)) if lease.owns(s)]
        for stream in mine:  # load each stream once, before the window: steady state is timed
            await engine.state(stream)
        (work / f"ready-{args.name}").write_text(str(len(lease.owned())))
        go = work / "go"
        while not go.exists():
            await asyncio.sleep(0.01)
        start, seconds = json.loads(go.read_text())
        end = start + seconds
        counter = iter(range(10**12))

        async def submitter() -> None:
            while time.time() < end:
                stream = mine[next(counter) % len(mine)]
                began = time.time()
                await engine.submit(stream, Increment(by=1))
                done = time.time()
                if start <= began and done <= end:
                    latencies.append(done - began)

        await asyncio.sleep(max(0.0, start - time.time()))
        await asyncio.gather(*(submitter() for _ in range(args.concurrency)))
        partitions = len(lease.owned())
    return {
        "name": args.name,
        "commits": len(latencies),
        "partitions": partitions,
        "latencies_ms": [round(x * 1000, 3) for x in latencies],
    }


def worker(argv: list[str]) -> None:
    """Entry point of one engine process (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.multiprocess")
    for name in ("url", "name"):
        parser.add_argument(name)
    for name in ("processes", "partitions", "streams", "concurrency"):
        parser.add_argument(name, type=int)
    parser.add_argument("dir")
    args = parser.parse_args(argv)
    result = asyncio.run(_serve(args))
    out = Path(args.dir) / f"result-{args.name}.json"
    out.with_suffix(".partial").write_text(json.dumps(result))
    os.replace(out.with_suffix(".partial"), out)


# -- the driver --------------------------------------------------------------------------


def with_schema(url: str, schema: str) -> str:
    """``url`` with the store's ``schema`` option set."""
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE".encode())


def _wait(paths: list[Path], processes: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        failed = [p for p in processes if p.poll() not in (None, 0)]
        if failed:
            raise RuntimeError(f"an engine process exited with {failed[0].returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"engine processes not ready within {timeout:.0f} s")
        time.sleep(0.05)


def run_once(
    url: str,
    processes: int,
    *,
    seconds: float,
    concurrency: int,
    streams: int,
    partitions: int,
    work: Path,
) -> Run:
    """One run: ``processes`` engines on a fresh schema, each with its share of the submitters."""
    schema = f"bench_mp_{uuid.uuid4().hex[:12]}"
    run_dir = work / schema
    run_dir.mkdir(parents=True)
    paths = [str(REPOSITORY), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    names = [f"p{i}" for i in range(processes)]
    children: list[subprocess.Popen[bytes]] = []
    try:
        for name in names:
            command = [
                *(sys.executable, "-m", "benchmarks.multiprocess", with_schema(url, schema)),
                *(name, str(processes), str(partitions), str(streams)),
                *(str(concurrency // processes), str(run_dir)),
            ]
            with open(run_dir / f"{name}.log", "wb") as log:
                children.append(
                    subprocess.Popen(
                        command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPOSITORY
                    )
                )
        _wait([run_dir / f"ready-{n}" for n in names], children, 120)
        (run_dir / "go").write_text(json.dumps([time.time() + 0.5, seconds]))
        _wait([run_dir / f"result-{n}.json" for n in names], children, seconds + 120)
        for child in children:
            child.wait(timeout=60)
        members = []
        for name in names:
            data = json.loads((run_dir / f"result-{name}.json").read_text())
            members.append(
                ProcessRun(name, data["commits"], data["partitions"], tuple(data["latencies_ms"]))
            )
        return Run(processes, seconds, tuple(members))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        _drop_schema(url, schema)


@dataclass(frozen=True, slots=True)
class MultiprocessResult:
    """Every run of the benchmark, one process and three, alternating."""

    seconds: float
    concurrency: int
    streams: int
    partitions: int
    single: tuple[Run, ...]
    three: tuple[Run, ...]

    @property
    def single_rate(self) -> float:
        """Median submits/s of one engine process."""
        return statistics.median(r.rate for r in self.single)

    @property
    def three_rate(self) -> float:
        """Median submits/s of three engine processes together."""
        return statistics.median(r.rate for r in self.three)

    def latency_ms(self, runs: tuple[Run, ...], fraction: float) -> float:
        """A latency percentile over every submit of ``runs``, in milliseconds."""
        values = [x for r in runs for m in r.members for x in m.latencies_ms]
        return percentile(values, fraction) if values else 0.0

    def figures(self) -> list[Figure]:
        """Three processes' throughput beside one's, and the latencies."""
        return [
            Figure("multiprocess_throughput", "durable submits/s, 3 engine processes",
                   "submits/s", self.three_rate, "1 engine process", self.single_rate,
                   SCALING_GOAL),
            Figure("multiprocess_latency_p50", "submit latency p50, 3 processes", "ms",
                   self.latency_ms(self.three, 0.5), "1 process p50",
                   self.latency_ms(self.single, 0.5)),
            Figure("multiprocess_latency_p99", "submit latency p99, 3 processes", "ms",
                   self.latency_ms(self.three, 0.99), "1 process p99",
                   self.latency_ms(self.single, 0.99)),
        ]  # fmt: skip

    def as_json(self) -> dict[str, Any]:
        """Rates, per-process commits and figures as plain JSON values."""
        return {
            "seconds": self.seconds,
            "concurrency": self.concurrency,
            "streams": self.streams,
            "partitions": self.partitions,
            "per_s": {"three": round(self.three_rate), "one": round(self.single_rate)},
            "runs": {
                "one": [round(r.rate) for r in self.single],
                "three": [round(r.rate) for r in self.three],
                "three_per_process": [[m.commits for m in r.members] for r in self.three],
            },
            "figures": {f.key: f.as_json() for f in self.figures()},
        }


def run(
    url: str,
    *,
    seconds: float = DEFAULT_SECONDS,
    concurrency: int = DEFAULT_CONCURRENCY,
    streams: int = DEFAULT_STREAMS,
    partitions: int = DEFAULT_PARTITIONS,
    repeat: int = DEFAULT_REPEAT,
    cache_dir: Path,
    progress: Progress = lambda _: None,
) -> MultiprocessResult:
    """Time one engine process and three, ``repeat`` times each, alternating."""
    if partitions % 3 or concurrency % 3:
        raise ValueError("partitions and concurrency must be multiples of 3 (equal shares)")
    if min(seconds, streams, repeat) <= 0:
        raise ValueError("seconds, streams and repeat must be positive")
    work = cache_dir / "multiprocess"
    work.mkdir(parents=True, exist_ok=True)
    single: list[Run] = []
    three: list[Run] = []
    options = {
        "seconds": seconds,
        "concurrency": concurrency,
        "streams": streams,
        "partitions": partitions,
        "work": work,
    }
    for round_ in range(1, repeat + 1):
        for processes, runs in ((1, single), (3, three)):
            progress(f"{processes} engine process(es), {seconds:g} s, repetition {round_}")
            runs.append(run_once(url, processes, **options))  # type: ignore[arg-type]
    return MultiprocessResult(
        seconds, concurrency, streams, partitions, tuple(single), tuple(three)
    )


# -- command line ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The multiprocess benchmark's options."""
    parser.add_argument(
        "--postgres-url",
        default=None,
        help=f"a PostgreSQL database to run on (default: ${POSTGRES_URL_ENV}; none: skipped)",
    )
    parser.add_argument("--seconds", type=float, default=None, help="measured window per run")
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="submitters in all"
    )
    parser.add_argument("--streams", type=int, default=DEFAULT_STREAMS)
    parser.add_argument("--repeat", type=int, default=None, help="alternating repetitions")


def main(args: argparse.Namespace, console: Console, progress: Progress) -> dict[str, Any]:
    """Run the benchmark from parsed options, print its table, return its JSON."""
    url = args.postgres_url or os.environ.get(POSTGRES_URL_ENV)
    if not url:
        console.print(
            f"multiprocess: skipped (no PostgreSQL: pass --postgres-url or set {POSTGRES_URL_ENV})"
        )
        return {"skipped": "no PostgreSQL URL"}
    defaults = QUICK if args.quick else {"seconds": DEFAULT_SECONDS, "repeat": DEFAULT_REPEAT}
    result = run(
        url,
        seconds=args.seconds or defaults["seconds"],
        concurrency=args.concurrency,
        streams=args.streams,
        repeat=int(args.repeat or defaults["repeat"]),
        cache_dir=args.cache_dir,
        progress=progress,
    )
    render(
        console,
        "Multiprocess: durable submits per second on PostgreSQL, 3 engine processes vs 1",
        result.figures(),
        [
            f"{result.concurrency} submitters in all (split evenly between the processes), "
            f"{result.streams:,} counter streams in {result.partitions} partitions held with "
            f"advisory locks, {result.seconds:g} s windows; every submit returns once its "
            "record is committed. Rates are medians of alternating repetitions.",
        ],
    )
    return result.as_json()


if __name__ == "__main__":
    worker(sys.argv[1:])
