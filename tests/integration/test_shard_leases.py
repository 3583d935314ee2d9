"""Shard Leases against the real API server: three ShardManagers split the shards, one
killed (its task cancelled, nothing released) loses them to the others within the
bound, a graceful stop hands them over at once, and no shard has two owners at any
sampled moment. Last, the chart's sharding Role is exactly what a manager needs.

Short timings (lease 3 s, renew deadline 2 s, retry 0.5 s) keep the test short; the
managers share one event loop, so they share one clock. Every wait is on a
condition with a timeout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest
import yaml

from e2e.harness import ControlPlane
from modelcanary.shards.leases import (
    LEASE_API,
    LEASE_VERBS,
    ShardManager,
    replica_lease_name,
    shard_lease_name,
)
from modelcanary.shards.ownership import Timing
from tests.chart import CHART, run_helm, token_kubeconfig, write_values

pytestmark = pytest.mark.integration

SHARDS = 8
TIMING = Timing(lease_duration=3.0, renew_deadline=2.0, retry_period=0.5)
SAMPLE = 0.02


class Replicas:
    """Managers in one loop, their tasks, and a sampler that checks every ``SAMPLE`` s
    that no shard has two owners, counting the cut-off (killed) managers' own view."""

    def __init__(self, api: kr8s.asyncio.Api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.managers: dict[str, ShardManager] = {}
        self.cut_off: dict[str, ShardManager] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.changes: dict[str, list[tuple[frozenset[int], frozenset[int]]]] = {}
        self.samples = 0
        self.double_owned: list[tuple[int, list[str]]] = []
        self._sampler: asyncio.Task[None] | None = None

    def start(self, identity: str) -> ShardManager:
        self.changes[identity] = []

        async def on_change(gained: frozenset[int], lost: frozenset[int]) -> None:
            self.changes[identity].append((gained, lost))

        manager = ShardManager(
            self.api, self.namespace, identity, SHARDS, timing=TIMING, on_change=on_change
        )
        self.managers[identity] = manager
        self.tasks[identity] = asyncio.create_task(manager.run())
        if self._sampler is None:
            self._sampler = asyncio.create_task(self._sample())
        return manager

    async def kill(self, identity: str) -> None:
        """As a SIGKILL: the loop stops mid-whatever, nothing is released."""
        task = self.tasks.pop(identity)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # Still sampled: were it only cut off (a partition, a stall) rather than
        # dead, its owned() must lapse before anyone else's begins.
        self.cut_off[identity] = self.managers.pop(identity)

    async def stop(self, identity: str) -> None:
        """A graceful stop: the loop stops, then every Lease it held is freed."""
        manager = self.managers[identity]
        await self.kill(identity)
        await manager.release()

    def owned(self) -> dict[str, frozenset[int]]:
        return {identity: m.owned() for identity, m in self.managers.items()}

    def counts(self) -> list[int]:
        return sorted(len(shards) for shards in self.owned().values())

    def all_owned(self) -> bool:
        owned = self.owned().values()
        return sum(len(s) for s in owned) == SHARDS and set().union(*owned) == set(range(SHARDS))

    def heard(self, identity: str) -> frozenset[int]:
        """What ``identity``'s on_change calls add up to."""
        shards: set[int] = set()
        for gained, lost in self.changes[identity]:
            shards = (shards | gained) - lost
        return frozenset(shards)

    def slowest_round(self) -> float:
        return max(m.slowest_round for m in self.managers.values())

    async def _sample(self) -> None:
        while True:
            by_shard: dict[int, list[str]] = {}
            everyone = {**self.managers, **self.cut_off}
            for identity, manager in everyone.items():
                for k in manager.owned():
                    by_shard.setdefault(k, []).append(identity)
            self.double_owned += [(k, ids) for k, ids in by_shard.items() if len(ids) > 1]
            self.samples += 1
            await asyncio.sleep(SAMPLE)

    async def close(self) -> None:
        for identity in list(self.tasks):
            await self.kill(identity)
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)


async def until(check: Callable[[], bool], what: str, within: float) -> float:
    """Wait for ``check``; return the seconds it took; fail after ``within`` s."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not check():
        if loop.time() - start > within:
            raise AssertionError(f"timed out after {within:.1f}s waiting for {what}")
        await asyncio.sleep(SAMPLE)
    return loop.time() - start


def run(plane: ControlPlane, namespace: str, body: Callable[[Replicas], Awaitable[None]]) -> None:
    async def main() -> None:
        api = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig))
        replicas = Replicas(api, namespace)
        started = asyncio.get_running_loop().time()
        try:
            await body(replicas)
        finally:
            await replicas.close()
        # The sampler kept up: several samples in every round of the test.
        elapsed = asyncio.get_running_loop().time() - started
        assert replicas.samples >= 4 * elapsed / TIMING.retry_period
        assert not replicas.double_owned, replicas.double_owned[:5]

    asyncio.run(main())


def test_three_replicas_split_the_shards_and_a_killed_ones_are_taken_within_the_bound(
    control_plane: ControlPlane, namespace: str
) -> None:
    async def body(replicas: Replicas) -> None:
        for identity in ("op-a", "op-b", "op-c"):
            replicas.start(identity)
        # Three joining at once: each first claims what it prefers, the
        # others' presence shows up, the excess is released and taken.
        await until(
            lambda: replicas.all_owned() and replicas.counts() == [2, 3, 3],
            "8 shards split 3/3/2",
            within=4 * TIMING.takeover_bound(),
        )
        before = replicas.owned()
        victim = next(i for i, shards in before.items() if len(shards) == 3)
        survivors = set(before) - {victim}

        await replicas.kill(victim)
        # Its shards stay its own until the Leases expire: nobody steals them.
        assert set().union(*replicas.owned().values()) == set(range(SHARDS)) - before[victim]
        took = await until(
            lambda: replicas.all_owned() and replicas.counts() == [4, 4],
            f"{victim}'s shards taken, 4/4",
            within=2 * TIMING.takeover_bound(round_latency=1.0),
        )
        bound = TIMING.takeover_bound(round_latency=replicas.slowest_round())
        assert took <= bound + SAMPLE, (took, bound)
        print(f"takeover after the kill: {took:.2f}s, bound {bound:.2f}s")
        # The sampler also watched the victim's own view: it stopped owning
        # (renew deadline) before any survivor began (lease duration).
        assert not replicas.cut_off[victim].owned()
        # Each survivor hears of what it owns now through on_change, at the end
        # of the round whose writes won it (owns() says yes from the write).
        await until(
            lambda: all(replicas.heard(i) == replicas.owned()[i] for i in survivors),
            "on_change told the survivors what they own",
            within=TIMING.retry_period + 2 * replicas.slowest_round(),
        )

    run(control_plane, namespace, body)


def test_a_graceful_stop_hands_its_shards_over_at_once(
    control_plane: ControlPlane, namespace: str
) -> None:
    async def body(replicas: Replicas) -> None:
        leaving = replicas.start("op-leaving")
        staying = replicas.start("op-staying")
        await until(
            lambda: replicas.all_owned() and replicas.counts() == [4, 4],
            "8 shards split 4/4",
            within=4 * TIMING.takeover_bound(),
        )
        assert leaving.owned()
        await replicas.stop("op-leaving")
        assert not leaving.owned()
        # Two rounds at most (one may have just begun with the old Leases),
        # where an expiry would take the lease duration and more.
        took = await until(
            lambda: staying.owned() == frozenset(range(SHARDS)),
            "op-staying owns every shard",
            within=TIMING.lease_duration,
        )
        assert took <= 2 * (TIMING.retry_period + staying.slowest_round), took
        print(f"handover after a graceful stop: {took:.2f}s")
        leases = await _leases(replicas.api, replicas.namespace)
        assert leases[replica_lease_name("op-leaving")]["spec"].get("holderIdentity") is None
        holders = {leases[shard_lease_name(k)]["spec"]["holderIdentity"] for k in range(SHARDS)}
        assert holders == {"op-staying"}

    run(control_plane, namespace, body)


async def _leases(api: kr8s.asyncio.Api, namespace: str) -> dict[str, dict[str, Any]]:
    async with api.call_api(
        "GET", version=LEASE_API, base="/apis", namespace=namespace, url="leases"
    ) as response:
        return {item["metadata"]["name"]: item for item in response.json()["items"]}


def test_the_charts_sharding_role_is_what_a_manager_needs(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    """The chart's Role, bound to a ServiceAccount in the release namespace, lets a
    manager claim and release every shard under that account's own token."""
    values = write_values({"sharding": {"enabled": True}}, tmp_path)
    rendered = run_helm(
        control_plane.toolchain.helm,
        *("template", "rel", str(CHART), "--namespace", namespace, "-f", str(values)),
    )
    assert rendered.returncode == 0, rendered.stderr
    rbac = [
        doc
        for doc in yaml.safe_load_all(rendered.stdout)
        if doc
        and doc["kind"] in ("Role", "RoleBinding")
        and doc["metadata"]["name"] == "rel-modelcanary-shards"
    ]
    assert [doc["kind"] for doc in rbac] == ["Role", "RoleBinding"]
    assert rbac[0]["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": [*LEASE_VERBS]}
    ]
    account = rbac[1]["subjects"][0]["name"]
    code, body = control_plane.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
    )
    assert code == 201, body
    for doc, plural in zip(rbac, ("roles", "rolebindings"), strict=True):
        path = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/{plural}"
        code, body = control_plane.request("POST", path, json.loads(json.dumps(doc)))
        assert code == 201, body
    kubeconfig = token_kubeconfig(control_plane, namespace, account, tmp_path / "sa.kubeconfig")

    async def main() -> None:
        api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig))
        manager = ShardManager(api, namespace, "op-rbac", SHARDS, timing=TIMING)
        await manager.round()  # creates the presence and shard Leases
        await manager.round()  # updates the presence (a PUT; the shards are not due yet)
        assert manager.owned() == frozenset(range(SHARDS))
        await manager.release()
        assert manager.owned() == frozenset()
        leases = await _leases(api, namespace)
        assert {lease["spec"].get("holderIdentity") for lease in leases.values()} == {None}

    asyncio.run(main())
