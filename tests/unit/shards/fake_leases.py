"""Leases in memory, for ShardManager rounds without an API server."""

from __future__ import annotations

from typing import Any


class FakeLeases:
    """Leases by name with a resourceVersion; writes recorded in order, never refused."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.writes: list[tuple[str, str | None]] = []
        self._version = 0

    async def list(self) -> dict[str, dict[str, Any]]:
        return {name: dict(body) for name, body in self.leases.items()}

    async def write(
        self,
        name: str,
        read: dict[str, Any] | None,
        *,
        holder: str | None,
        duration_seconds: int,
        purpose: str,
    ) -> bool:
        self._version += 1
        self.leases[name] = {
            "metadata": {"name": name, "resourceVersion": str(self._version)},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration_seconds},
        }
        self.writes.append((name, holder))
        return True

    def hold(self, name: str, holder: str) -> None:
        self._version += 1
        self.leases[name] = {
            "metadata": {"name": name, "resourceVersion": str(self._version)},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 3},
        }
