"""One watch request's events, as the API server streams them (one JSON object a line).

Shared by the view's watches of labelled objects and the wait on a CRD
(``served``): both ask for a watch of ``seconds`` and read until the server
ends it. Callers close the stream early with ``contextlib.aclosing``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import kr8s.asyncio

from modelcanary.view.store import Kind


async def watch_events(
    api: kr8s.asyncio.Api,
    kind: Kind,
    *,
    namespace: str | None,
    params: dict[str, Any],
    seconds: int,
) -> AsyncGenerator[dict[str, Any], None]:
    """The events of one watch of ``kind`` (``params`` carry watch=true and
    timeoutSeconds=``seconds``), until the API server ends it."""
    async with api.call_api(
        "GET",
        version=kind.api_version,
        namespace=namespace,
        url=kind.plural,
        params=params,
        stream=True,
        # Connecting is quick or broken; reading waits out the server's timeout.
        timeout=httpx.Timeout(10.0, read=seconds + 30.0),
    ) as response:
        async for line in response.aiter_lines():
            if line.strip():
                yield json.loads(line)
