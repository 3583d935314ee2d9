"""Sharded mode's Events: posted in the background as kopf posts them, about the object
named by its metadata, and one failed post never ends the ones after it.

kopf's ``kopf.event`` cannot be used there (it needs kopf's object tasks); the
first sharded run posted nothing, because the poster read the namespace from
the top of kopf's body, where there is none, and its task died on the first
event without a word.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from modelcanary.dispatch.events import MAX_MESSAGE_LENGTH, EventPoster

pytestmark = pytest.mark.unit

BODY = {
    "apiVersion": "modelcanary.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"namespace": "ml", "name": "fraud", "uid": "u-1", "labels": {"a": "b"}},
    "spec": {"predictor": {}},
}


class Api:
    def __init__(self, failing: int = 0) -> None:
        self.posted: list[tuple[str | None, str, dict[str, Any]]] = []
        self.failing = failing

    @contextlib.asynccontextmanager
    async def call_api(
        self, method: str, *, version: str, namespace: str | None, url: str, content: str, **_: Any
    ) -> AsyncIterator[None]:
        assert (method, version) == ("POST", "v1")
        if self.failing:
            self.failing -= 1
            raise httpx.ConnectError("refused")
        self.posted.append((namespace, url, json.loads(content)))
        yield


def test_an_event_names_the_object_from_its_metadata() -> None:
    api = Api()
    poster = EventPoster(api)  # type: ignore[arg-type]
    poster.post(BODY, type="Normal", reason="CanaryStarted", message="x" * 5000)
    asyncio.run(poster.drain())
    [(namespace, url, event)] = api.posted
    assert (namespace, url) == ("ml", "events")
    assert event["involvedObject"] == {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelDeployment",
        "namespace": "ml",
        "name": "fraud",
        "uid": "u-1",
    }
    assert (event["type"], event["reason"]) == ("Normal", "CanaryStarted")
    assert event["metadata"]["namespace"] == "ml"
    assert len(event["message"]) <= MAX_MESSAGE_LENGTH


def test_a_failed_post_does_not_stop_the_next() -> None:
    api = Api(failing=1)
    poster = EventPoster(api)  # type: ignore[arg-type]

    async def main() -> None:
        task = asyncio.create_task(poster.run())
        poster.post(BODY, type="Warning", reason="First", message="lost")
        poster.post(BODY, type="Normal", reason="Second", message="kept")
        for _ in range(100):
            if api.posted:
                break
            await asyncio.sleep(0.01)
        assert not task.done()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert [event["reason"] for _, _, event in api.posted] == ["Second"]


def test_a_full_queue_drops_and_counts_rather_than_blocks_a_pass() -> None:
    poster = EventPoster(Api(), queued=2)  # type: ignore[arg-type]
    for reason in ("A", "B", "C", "D"):
        poster.post(BODY, type="Normal", reason=reason, message="")
    assert poster.dropped == 2
