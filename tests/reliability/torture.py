"""The crash-torture driver: SIGKILL an engine process at random moments under load; check all.

Processes (each its own interpreter, see :mod:`workers`):

- the **service** (:mod:`workers.service`), the outside ledger, with its own ledger file;
- the **engine** (:mod:`workers.engine`), the Ledger machine on the store under test;
- the **client** (:mod:`workers.client`), submitting deposits and recording each acknowledgement;
- the **projector** (:mod:`workers.projector`), the latest-state view following the log.

The driver kills the engine (and the projector) with SIGKILL after a random
time under load, or during its restore, then, with the engine dead, checks
the log against what every other side recorded, starts a new engine, and
checks again once it has restored. After the last kill the client stops, the
engine finishes every outstanding action, and the final checks run.

Checks after each kill (each failure is listed in the report, not raised):

- every acknowledged input is in the log exactly once, at the version it
  was acknowledged with; no reference is in the log twice (duplicates); an
  input acknowledged as rejected is not in the log;
- the service applied no key the log does not show as a tracked action
  emitted (an action dispatched before its record committed), and each
  completion in the log carries the service's receipt for that key;
- after the restart: each stream's state in the new engine equals the fold
  of the log up to its version (replay also re-checks every record's
  actions); every tracked action outstanding at the kill is dispatched again
  by the new engine (the service sees its key from the new generation);
- the projection, caught up, holds each stream's fold at its version;
- at the end: nothing is outstanding, every tracked action was applied at the
  service exactly once and completed in the log exactly once, every stream's
  hash chain verifies, and the followed projection equals one rebuilt from
  scratch.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from workers.machine import Account, Ledger
from workers.projector import VIEW_TABLE, latest_state
from workers.wire import request

from fasm_es import Codec, Completed, Normal, Streams, Tracked, open_store, verify
from fasm_es.fold import apply_record, initial
from fasm_es.outstanding import RESERVED_PREFIX
from projections import Runner

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parents[1]


# -- processes -----------------------------------------------------------------------------


def worker_env() -> dict[str, str]:
    """The environment of a worker process: the repository and this folder on the path."""
    paths = [str(REPOSITORY), str(HERE), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def spawn(module: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """Start ``python -m workers.MODULE ARGS``, its output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", f"workers.{module}", *args],
            env=worker_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPOSITORY,
        )


def kill(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to a process this driver started, and reap it."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def wait_for_file(path: Path, process: subprocess.Popen[bytes], log: Path, timeout: float) -> bool:
    """Wait until ``path`` exists; False if ``process`` exited first (raises after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise AssertionError(f"{path.name} did not appear within {timeout:.0f} s:\n{tail}")
        time.sleep(0.01)
    return True


@contextmanager
def short_dir() -> Iterator[Path]:
    """A directory with a short path, for Unix sockets (their paths are limited to ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="fasm-t-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def ask(socket: Path, message: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """One request to a worker, from blocking code."""
    return asyncio.run(request(socket, message, timeout=timeout))


# -- what each side recorded ---------------------------------------------------------------


class Lines:
    """A file of JSON lines another process appends to, read incrementally (whole lines only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def new(self) -> list[dict[str, Any]]:
        """The lines appended since the last call."""
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        return [json.loads(line) for line in data[:end].splitlines() if line.strip()]


@dataclass
class LogFacts:
    """What the log shows, read incrementally: inputs by reference, actions by key."""

    position: int = 0
    records: int = 0
    refs: Counter[str] = field(default_factory=Counter)
    at: dict[str, tuple[str, int]] = field(default_factory=dict)
    emitted: set[str] = field(default_factory=set)
    completed: Counter[str] = field(default_factory=Counter)
    receipts: dict[str, str] = field(default_factory=dict)
    streams: set[str] = field(default_factory=set)

    def read(self, url: str) -> None:
        """Read the records appended since the last call."""
        codec = Codec.for_machine(Ledger())
        with open_store(url) as store:
            for raw in store.read_log(after=self.position):
                self.position = raw.position
                if raw.stream.startswith(RESERVED_PREFIX):
                    continue
                record = codec.decode(raw)
                self.records += 1
                self.streams.add(record.stream)
                if isinstance(record.input, Normal):
                    ref = record.input.value.ref
                    self.refs[ref] += 1
                    self.at.setdefault(ref, (record.stream, record.version))
                else:
                    assert isinstance(record.input, Completed)
                    key = f"{record.stream}/{record.input.id}"
                    self.completed[key] += 1
                    self.receipts.setdefault(key, record.input.result.receipt)
                for action in record.actions:
                    if isinstance(action, Tracked):
                        self.emitted.add(f"{record.stream}/{action.id}")

    def outstanding(self) -> set[str]:
        """Keys of tracked actions emitted and not completed."""
        return {k for k in self.emitted if k not in self.completed}

    def duplicates(self) -> list[str]:
        """References stored more than once."""
        return sorted(ref for ref, n in self.refs.items() if n > 1)


@dataclass
class ServiceFacts:
    """What the outside service recorded: which keys it applied, and who asked for each."""

    applied: Counter[str] = field(default_factory=Counter)
    receipts: dict[str, str] = field(default_factory=dict)
    repeats: int = 0
    requested_by: dict[int, set[str]] = field(default_factory=dict)

    def add(self, entries: list[dict[str, Any]]) -> None:
        """Account for new ledger entries."""
        for e in entries:
            key = e["key"]
            if e["outcome"] == "applied":
                self.applied[key] += 1
                self.receipts[key] = e["receipt"]
            else:
                self.repeats += 1
            self.requested_by.setdefault(int(e["generation"]), set()).add(key)


def fold_at(
    streams: Streams[Any, Any, Any, Any, Any], stream: str, versions: set[int]
) -> dict[int, Any]:
    """The state of ``stream`` folded from its first record, at each of ``versions``.

    One pass; every record's recorded actions are checked against the STF's
    (a divergence raises ``ReplayDivergence``).
    """
    machine = streams.machine
    current = initial(machine, stream)
    actions = machine.new_actions()
    found: dict[int, Any] = {}
    if 0 in versions:
        found[0] = copy.deepcopy(current.state)
    top = max(versions, default=0)
    for record in streams.records(stream, upto=top):
        apply_record(machine, current, record, actions, check_actions=True)
        if record.version in versions:
            found[record.version] = copy.deepcopy(current.state)
    return found


# -- the report ----------------------------------------------------------------------------


@dataclass
class TortureReport:
    """The figures of one torture run, and every problem found (the goal: none)."""

    backend: str
    kills: int = 0
    kills_during_restore: int = 0
    acknowledged: int = 0
    rejected: int = 0
    records: int = 0
    losses: int = 0
    duplicates: int = 0
    redispatched: int = 0
    service_applied: int = 0
    service_repeats: int = 0
    seconds: float = 0.0
    client_errors: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        """Note a broken guarantee (kept short: the first few of each kind say enough)."""
        if len(self.problems) < 200:
            self.problems.append(text)

    def summary(self) -> str:
        """One line for people."""
        return (
            f"{self.backend}: {self.kills} kills survived ({self.kills_during_restore} during "
            f"restore), {self.acknowledged:,} inputs acknowledged ({self.rejected:,} rejected), "
            f"{self.records:,} records, losses {self.losses}, duplicates {self.duplicates}, "
            f"{self.redispatched:,} outstanding actions re-dispatched, "
            f"{self.service_applied:,} applied at the service ({self.service_repeats:,} repeat "
            f"requests refused), {len(self.problems)} problems, {self.seconds:.0f} s"
        )

    def as_json(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return asdict(self)


# -- the driver ----------------------------------------------------------------------------


class Torture:
    """One torture run on the store at ``url`` (see the module docstring).

    ``view_url`` is where the projection lives (default: the store's own
    database). ``restore_kill_share`` of the kills land during the new
    engine's start instead of under load.
    """

    def __init__(
        self,
        url: str,
        workdir: Path,
        *,
        backend: str,
        kills: int,
        seed: int = 0,
        streams: int = 16,
        concurrency: int = 16,
        run_between: tuple[float, float] = (0.3, 2.0),
        restore_kill_share: float = 0.15,
        view_url: str | None = None,
    ) -> None:
        self.url = url
        self.view_url = view_url or url
        self.work = workdir
        self.kills = kills
        self.rng = random.Random(seed)
        self.seed = seed
        self.streams = streams
        self.concurrency = concurrency
        self.run_between = run_between
        self.restore_kill_share = restore_kill_share
        self.report = TortureReport(backend)
        self.log = LogFacts()
        self.service = ServiceFacts()
        self.acks: dict[str, dict[str, Any]] = {}
        self._ack_lines = Lines(workdir / "acks.jsonl")
        self._ledger_lines = Lines(workdir / "ledger.jsonl")
        self.generation = 0
        self.engine: subprocess.Popen[bytes] | None = None
        self.projector: subprocess.Popen[bytes] | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        self.view = latest_state()

    # -- processes ------------------------------------------------------------------------

    def start_engine(self, sockets: Path) -> Path:
        self.generation += 1
        ready = self.work / f"ready-{self.generation}.json"
        self.engine = spawn(
            "engine",
            str(sockets / "engine.sock"),
            self.url,
            str(sockets / "service.sock"),
            str(ready),
            "--name",
            "engine",
            "--generation",
            str(self.generation),
            log=self.work / "engine.log",
        )
        self.processes.append(self.engine)
        return ready

    def start_projector(self) -> None:
        self.projector = spawn(
            "projector", self.url, self.view_url, log=self.work / "projector.log"
        )
        self.processes.append(self.projector)

    # -- checks ---------------------------------------------------------------------------

    def read_everything(self) -> None:
        self.log.read(self.url)
        self.service.add(self._ledger_lines.new())
        for ack in self._ack_lines.new():
            self.acks[ack["ref"]] = ack

    def check_log(self) -> None:
        """With the engine dead: acknowledged inputs once each, no phantom action, receipts."""
        self.read_everything()
        r, log = self.report, self.log
        for ref, ack in self.acks.items():
            count = log.refs.get(ref, 0)
            if ack["status"] == "accepted":
                if count == 0:
                    r.problem(f"acknowledged input {ref} is not in the log (lost)")
                elif log.at[ref] != (ack["stream"], ack["version"]):
                    r.problem(f"input {ref} acknowledged as {ack['stream']} v{ack['version']} "
                              f"but stored as {log.at[ref]}")  # fmt: skip
            elif ack["status"] == "rejected" and count:
                r.problem(f"input {ref} was acknowledged as rejected but is in the log")
            elif ack["status"] == "failed":
                r.problem(f"input {ref} failed with a non-retryable error: {ack}")
        for key, n in self.service.applied.items():
            if n > 1:
                r.problem(f"the service applied {key} {n} times")
            if key not in log.emitted:
                r.problem(f"the service applied {key}, which no committed record emitted")
        for key, receipt in log.receipts.items():
            if self.service.receipts.get(key) != receipt:
                r.problem(f"{key} completed with receipt {receipt!r}, the service issued "
                          f"{self.service.receipts.get(key)!r}")  # fmt: skip
            if log.completed[key] > 1:
                r.problem(f"{key} completed {log.completed[key]} times in the log")
        self.update_counts()

    def update_counts(self) -> None:
        r, log = self.report, self.log
        accepted = [ref for ref, a in self.acks.items() if a["status"] == "accepted"]
        r.acknowledged = len(accepted)
        r.rejected = sum(1 for a in self.acks.values() if a["status"] == "rejected")
        r.losses = sum(1 for ref in accepted if log.refs.get(ref, 0) == 0)
        r.duplicates = len(log.duplicates())
        r.records = log.records
        r.service_applied = len(self.service.applied)
        r.service_repeats = self.service.repeats

    def check_states(self, socket: Path, runner: Runner) -> None:
        """Each stream's live and projected states equal the fold of the log at their versions."""
        with open_store(self.url) as store:
            streams = Streams(Ledger(), store)
            runner.catch_up()
            for stream in sorted(self.log.streams):
                answer = ask(socket, {"op": "state", "stream": stream})
                if not answer.get("ok"):
                    self.report.problem(f"state of {stream}: {answer}")
                    continue
                live = Account.model_validate(answer["state"])
                with runner.engine.connect() as connection:
                    projected = self.view.state(connection, stream)
                view_version = projected.applied if projected is not None else 0
                folded = fold_at(streams, stream, {live.applied, view_version})
                if folded.get(live.applied) != live:
                    self.report.problem(
                        f"{stream}: the engine's state at version {live.applied} differs from "
                        f"the fold of the log: {live!r} != {folded.get(live.applied)!r}"
                    )
                if projected is not None and folded.get(view_version) != projected:
                    self.report.problem(f"{stream}: the projection at version {view_version} "
                                        "differs from the fold of the log")  # fmt: skip

    def check_redispatched(self, outstanding: set[str], generation: int, timeout: float) -> None:
        """Every key outstanding at the kill reaches the service from ``generation``."""
        deadline = time.monotonic() + timeout
        while True:
            self.service.add(self._ledger_lines.new())
            missing = outstanding - self.service.requested_by.get(generation, set())
            if not missing:
                self.report.redispatched += len(outstanding)
                return
            if time.monotonic() > deadline:
                self.report.problem(
                    f"generation {generation} did not dispatch again {len(missing)} outstanding "
                    f"action(s) within {timeout:.0f} s: {sorted(missing)[:5]}"
                )
                return
            time.sleep(0.02)

    def final_checks(self, runner: Runner) -> None:
        self.check_log()
        r, log = self.report, self.log
        if log.outstanding():
            r.problem(f"{len(log.outstanding())} tracked action(s) still outstanding at the end: "
                      f"{sorted(log.outstanding())[:5]}")  # fmt: skip
        for key in log.emitted:
            if self.service.applied.get(key, 0) != 1:
                r.problem(f"{key} was applied {self.service.applied.get(key, 0)} times")
        for ref in log.duplicates():
            r.problem(f"input {ref} is stored {log.refs[ref]} times")
        with open_store(self.url) as store:
            chains = verify(store, sorted(log.streams))
        for broken in chains.breaks:
            r.problem(f"hash chain broken: {broken}")
        runner.catch_up()
        fresh = Runner(
            latest_state("accounts_rebuilt", VIEW_TABLE + "_rebuilt"), self.url, self.view_url
        )
        try:
            fresh.catch_up()
            followed = runner.rows(VIEW_TABLE)
            rebuilt = fresh.rows(VIEW_TABLE + "_rebuilt")
        finally:
            fresh.close()
        if followed != rebuilt:
            r.problem("the followed projection differs from a rebuild from scratch")
        if len(followed) != len(log.streams):
            r.problem(f"the projection has {len(followed)} streams, the log {len(log.streams)}")

    # -- the run --------------------------------------------------------------------------

    def run(self) -> TortureReport:
        started = time.monotonic()
        try:
            with short_dir() as sockets:
                self._run(sockets)
        finally:
            for process in self.processes:
                kill(process)
            self.report.seconds = time.monotonic() - started
        return self.report

    def _run(self, sockets: Path) -> None:
        service = spawn(
            "service",
            str(sockets / "service.sock"),
            str(self.work / "ledger.jsonl"),
            "--seed",
            str(self.seed),
            log=self.work / "service.log",
        )
        self.processes.append(service)
        ready = self.start_engine(sockets)
        assert self.engine is not None
        if not wait_for_file(ready, self.engine, self.work / "engine.log", 120):
            raise AssertionError(self._tail("engine.log"))
        client = spawn(
            "client",
            str(self.work / "acks.jsonl"),
            str(self.work / "client-done.json"),
            "--engine",
            f"engine={sockets / 'engine.sock'}",
            "--streams",
            str(self.streams),
            "--concurrency",
            str(self.concurrency),
            "--seed",
            str(self.seed),
            log=self.work / "client.log",
        )
        self.processes.append(client)
        self.start_projector()
        runner = Runner(self.view, self.url, self.view_url)
        try:
            while self.report.kills < self.kills:
                self._kill_and_restart(sockets, runner)
            self._finish(sockets, client, runner)
        finally:
            runner.close()

    def _kill(self) -> set[str]:
        """SIGKILL the engine (and the projector); check the log; return what is outstanding."""
        kill(self.engine)
        kill(self.projector)
        self.report.kills += 1
        self.check_log()
        return self.log.outstanding()

    def _kill_and_restart(self, sockets: Path, runner: Runner) -> None:
        """One kill under load, then possibly more during restores, until an engine is ready."""
        time.sleep(self.rng.uniform(*self.run_between))
        outstanding = self._kill()
        ready = self.start_engine(sockets)
        while self.report.kills < self.kills and self.rng.random() < self.restore_kill_share:
            time.sleep(self.rng.uniform(0.0, 0.8))  # the new engine is starting: kill it again
            self.report.kills_during_restore += int(not ready.exists())
            outstanding = self._kill()
            ready = self.start_engine(sockets)
        assert self.engine is not None
        if not wait_for_file(ready, self.engine, self.work / "engine.log", 120):
            raise AssertionError(f"the engine exited during restore:\n{self._tail('engine.log')}")
        self.check_redispatched(outstanding, self.generation, timeout=60)
        self.check_states(sockets / "engine.sock", runner)
        self.start_projector()

    def _finish(self, sockets: Path, client: subprocess.Popen[bytes], runner: Runner) -> None:
        assert self.engine is not None
        wait_for_file(
            self.work / f"ready-{self.generation}.json", self.engine, self.work / "engine.log", 120
        )
        kill(client, signal.SIGTERM)
        done = self.work / "client-done.json"
        if done.exists():
            self.report.client_errors = {
                k: v for k, v in json.loads(done.read_text()).items() if not k.startswith("ack_")
            }
        else:
            self.report.problem(f"the client did not finish cleanly: {self._tail('client.log')}")
        deadline = time.monotonic() + 120
        while True:
            idle = ask(sockets / "engine.sock", {"op": "idle", "timeout": 60}, timeout=90)
            self.log.read(self.url)
            if idle.get("ok") and not self.log.outstanding():
                break
            if time.monotonic() > deadline:
                self.report.problem(f"the engine never became idle: {idle}")
                break
            time.sleep(0.1)
        kill(self.engine, signal.SIGTERM)
        if self.engine.returncode != 0:
            self.report.problem(f"the engine did not stop cleanly ({self.engine.returncode})")
        kill(self.projector)
        self.final_checks(runner)

    def _tail(self, name: str) -> str:
        path = self.work / name
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""
