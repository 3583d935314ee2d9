"""Helpers for tests that drive the operator's async edges against the real API server.

pytest-asyncio is not a dependency: each test runs its coroutine with
``asyncio.run`` through :func:`run_with_owner`, which also creates a real
object for the code under test to hang owner references on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import kr8s.asyncio
from kr8s.asyncio.objects import ConfigMap

from e2e.harness import ControlPlane
from modelcanary.workloads.builders import OwnerRef

T = TypeVar("T")


def run_with_owner(
    plane: ControlPlane, namespace: str, body: Callable[[kr8s.asyncio.Api, OwnerRef], Awaitable[T]]
) -> T:
    """Run ``body`` with a fresh async client and a real owner object."""

    async def main() -> T:
        api = await kr8s.asyncio.api(kubeconfig=str(plane.kubeconfig))
        owner = ConfigMap({"metadata": {"name": "owner", "namespace": namespace}}, api=api)
        await owner.create()
        ref = OwnerRef(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
        return await body(api, ref)

    return asyncio.run(main())


async def eventually(check: Callable[[], Awaitable[T | None]], *, what: str, within: float) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(0.5)
