"""Several engine processes on one PostgreSQL store: streams partitioned with advisory locks.

Leases in one process check the sharing rules (fair shares, disjoint, all
covered, moved when a holder leaves); then three engine processes serve one
store under load, one is SIGKILLed, and the other two take its partitions
over, dispatch its outstanding actions again, and serve every stream.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import record_figures
from torture import Lines, LogFacts, ServiceFacts, ask, kill, short_dir, spawn, wait_for_file
from workers.machine import Deposit, Ledger, Post, Posted

from fasm_es import DatabaseURLError, Engine, IdempotencyKey, StreamNotOwned
from fasm_es.partition import PartitionLease, partition_of

pytestmark = pytest.mark.postgres

PARTITIONS = 16


def test_a_stream_partition_is_stable_across_processes_and_releases() -> None:
    # BLAKE2b of the id, not Python's salted hash(): every process and release agrees.
    # Pinned values: a change here would move streams between running processes.
    assert partition_of("acct-1", 64) == 24
    assert partition_of("order-7", 1000) == 609
    counts = [0] * 8
    for i in range(8000):
        counts[partition_of(f"stream-{i}", 8)] += 1
    assert min(counts) > 800  # spread evenly enough (1000 expected each)


def test_a_lease_needs_postgresql() -> None:
    with pytest.raises(DatabaseURLError, match="PostgreSQL"):
        PartitionLease("sqlite:///x.db")


async def settle(leases: list[PartitionLease], rounds: int = 4) -> None:
    for _ in range(rounds):
        for lease in leases:
            await lease.rebalance()


def test_leases_share_the_partitions_fairly_and_take_over_a_departed_one(
    postgres_url: str,
) -> None:
    async def scenario() -> None:
        leases = [
            PartitionLease(postgres_url, name=n, partitions=PARTITIONS) for n in ("a", "b", "c")
        ]
        try:
            await leases[0].rebalance()
            assert leases[0].owned() == frozenset(range(PARTITIONS))  # alone: everything
            await settle(leases)
            shares = [lease.owned() for lease in leases]
            assert all(len(s) <= math.ceil(PARTITIONS / 3) for s in shares)
            assert sum(len(s) for s in shares) == PARTITIONS  # disjoint and complete
            assert frozenset().union(*shares) == frozenset(range(PARTITIONS))
            assert await asyncio.to_thread(leases[1].members) == 3
            stream = next(f"s{i}" for i in range(100) if leases[2].owns(f"s{i}"))
            assert await asyncio.to_thread(leases[0].owner_of, stream) == "c"
            await leases[2].detach()  # its session ends: PostgreSQL frees its locks
            await settle(leases[:2])
            shares = [lease.owned() for lease in leases[:2]]
            assert frozenset().union(*shares) == frozenset(range(PARTITIONS))
            assert not shares[0] & shares[1]
        finally:
            for lease in leases:
                await lease.detach()

    asyncio.run(scenario())


def test_an_engine_refuses_streams_it_does_not_serve_and_names_the_owner(
    postgres_url: str,
) -> None:
    async def scenario() -> None:
        async def post(action: Post, key: IdempotencyKey) -> Posted:
            return Posted(receipt=str(key))

        first = PartitionLease(postgres_url, name="first", partitions=PARTITIONS)
        second = PartitionLease(postgres_url, name="second", partitions=PARTITIONS)
        one = Engine(Ledger(), postgres_url, handlers={Post: post}, partitions=first)
        two = Engine(Ledger(), postgres_url, handlers={Post: post}, partitions=second)
        async with one, two:
            await settle([first, second])
            mine = next(f"acct-{i}" for i in range(200) if first.owns(f"acct-{i}"))
            theirs = next(f"acct-{i}" for i in range(200) if second.owns(f"acct-{i}"))
            record = await one.submit(mine, Deposit(ref="r1", amount=5))
            assert record.version == 1
            with pytest.raises(StreamNotOwned) as refused:
                await one.submit(theirs, Deposit(ref="r2", amount=5))
            assert refused.value.stream == theirs
            assert refused.value.partition == partition_of(theirs, PARTITIONS)
            assert await asyncio.to_thread(first.owner_of, theirs) == "second"
            assert one.store.last_version(theirs) == 0  # nothing was appended
            await one.idle(timeout=10)
            assert (await one.state(mine)).posted == 1

    asyncio.run(scenario())


# -- three processes, one killed ----------------------------------------------------------


class Cluster:
    """Three engine processes, the outside service and a client, on one PostgreSQL store."""

    NAMES = ("a", "b", "c")

    def __init__(self, url: str, work: Path, sockets: Path) -> None:
        self.url = url
        self.work = work
        self.sockets = sockets
        self.processes: dict[str, Any] = {}

    def socket(self, name: str) -> Path:
        return self.sockets / f"{name}.sock"

    def start(self, streams: int) -> None:
        self.processes["service"] = spawn(
            "service",
            str(self.socket("service")),
            str(self.work / "ledger.jsonl"),
            log=self.work / "service.log",
        )
        for generation, name in enumerate(self.NAMES, start=1):
            self.processes[name] = spawn(
                "engine",
                str(self.socket(name)),
                self.url,
                str(self.socket("service")),
                str(self.work / f"ready-{name}.json"),
                *("--name", name, "--generation", str(generation)),
                *("--partitions", str(PARTITIONS), "--poll-interval", "0.3"),
                log=self.work / f"engine-{name}.log",
            )
        for name in self.NAMES:
            ready = self.work / f"ready-{name}.json"
            assert wait_for_file(ready, self.processes[name], self.work / f"engine-{name}.log", 120)
        engines = [f"--engine={n}={self.socket(n)}" for n in self.NAMES]
        self.processes["client"] = spawn(
            "client",
            str(self.work / "acks.jsonl"),
            str(self.work / "client-done.json"),
            *engines,
            *("--streams", str(streams), "--concurrency", "24"),
            log=self.work / "client.log",
        )

    def partitions(self, names: tuple[str, ...]) -> dict[str, set[int]]:
        return {n: set(ask(self.socket(n), {"op": "stats"})["partitions"]) for n in names}

    def wait_until_covered(self, names: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            held = self.partitions(names)
            everything = set().union(*held.values())
            if everything == set(range(PARTITIONS)) and sum(map(len, held.values())) == PARTITIONS:
                return held
            assert time.monotonic() < deadline, f"partitions never covered by {names}: {held}"
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes.values():
            kill(process)


def test_three_engine_processes_one_killed_every_stream_still_served(
    postgres_url: str, tmp_path: Path
) -> None:
    streams = 24
    with short_dir() as sockets:
        cluster = Cluster(postgres_url, tmp_path, sockets)
        try:
            cluster.start(streams)
            cluster.wait_until_covered(Cluster.NAMES)
            time.sleep(3)  # load on all three
            doomed = cluster.partitions(("b",))["b"]
            assert doomed, "engine b served no partition before the kill"
            kill(cluster.processes["b"])
            killed_at = LogFacts()
            killed_at.read(postgres_url)
            orphaned = {
                key
                for key in killed_at.outstanding()
                if partition_of(key.split("/")[0], PARTITIONS) in doomed
            }
            held = cluster.wait_until_covered(("a", "c"))
            time.sleep(4)  # load on the two survivors
            kill(cluster.processes["client"], 15)
            for name in ("a", "c"):
                idle = ask(cluster.socket(name), {"op": "idle", "timeout": 60}, timeout=90)
                assert idle["ok"], idle
            facts, service = LogFacts(), ServiceFacts()
            facts.read(postgres_url)
            service.add(Lines(tmp_path / "ledger.jsonl").new())
            acks = Lines(tmp_path / "acks.jsonl").new()
        finally:
            cluster.stop()

    accepted = [a for a in acks if a["status"] == "accepted"]
    assert accepted and not [a for a in acks if a["status"] == "failed"]
    lost = [a["ref"] for a in accepted if facts.refs.get(a["ref"], 0) == 0]
    assert lost == []
    assert facts.duplicates() == []
    assert facts.outstanding() == set()  # the dead engine's actions were finished by others
    assert all(service.applied[key] == 1 for key in facts.emitted)
    assert set(service.applied) == facts.emitted
    survivors = service.requested_by.get(1, set()) | service.requested_by.get(3, set())
    assert orphaned <= survivors  # re-dispatched by a survivor after the takeover
    # Every stream was served after the kill, by the survivors.
    after_kill = {a["stream"] for a in accepted if a["position"] > killed_at.position}
    assert after_kill == {f"acct-{i:03d}" for i in range(streams)}
    assert {a["engine"] for a in accepted if a["position"] > killed_at.position} <= {"a", "c"}
    record_figures(
        "partitions-three-processes-one-killed",
        {
            "acknowledged": len(accepted),
            "after_kill": sum(1 for a in accepted if a["position"] > killed_at.position),
            "orphaned_actions_redispatched": len(orphaned),
            "partitions_after": {k: len(v) for k, v in held.items()},
            "duplicates": len(facts.duplicates()),
            "losses": len(lost),
        },
    )
