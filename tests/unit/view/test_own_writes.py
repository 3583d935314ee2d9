"""The answers to the operator's own writes are kept only until the watch catches up:
a pass right after a write decides from what it wrote, and at rest nothing is held twice."""

from __future__ import annotations

import asyncio
import json
import types
from collections.abc import Callable, Coroutine
from typing import Any, cast

import kopf
import pytest

from modelcanary import handlers
from modelcanary.dispatch.feed import Feed
from modelcanary.dispatch.loops import Dispatcher
from modelcanary.view import store as view
from modelcanary.view.store import OwnWrites, Store

pytestmark = pytest.mark.unit


def model_deployment(version: str, phase: str = "Healthy", uid: str = "u-1") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "a", "uid": uid, "resourceVersion": version},
        "spec": {},
        "status": {"phase": phase},
    }


def test_a_pass_decides_from_its_own_write_until_the_watch_delivers_it() -> None:
    writes = OwnWrites()
    writes.keep(model_deployment("12", "Progressing"))
    stale = model_deployment("11", "Healthy")
    writes.seen(stale)  # an event from before the write: the answer stays
    assert writes.freshest(stale)["status"]["phase"] == "Progressing"
    assert len(writes) == 1
    writes.seen(model_deployment("12", "Progressing"))  # the write's own echo
    assert len(writes) == 0
    assert writes.freshest(stale)["status"]["phase"] == "Healthy"


@pytest.mark.parametrize("echo", ["13", "not-a-number"])
def test_a_later_or_incomparable_version_drops_the_kept_answer(echo: str) -> None:
    writes = OwnWrites()
    writes.keep(model_deployment("12"))
    writes.seen(model_deployment("12", uid="someone-else"))
    assert len(writes) == 1
    writes.seen(model_deployment(echo))
    assert len(writes) == 0


class _Quiet:
    def observed(self, *_: Any) -> None: ...

    def wake(self, *_: Any) -> None: ...

    async def forgotten(self, *_: Any) -> None: ...


def test_sharded_mode_drops_the_answer_when_the_unselected_watch_delivers_the_echo() -> None:
    store, writes = Store(), OwnWrites()
    feed = Feed(store, cast(Dispatcher, _Quiet()), on_model_deployment=writes.seen)
    writes.keep(model_deployment("12", "Progressing"))
    store.upsert(view.MODEL_DEPLOYMENT, model_deployment("11"))
    feed.keys_changed(view.MODEL_DEPLOYMENT, {("ModelDeployment", "ns", "a")})
    assert len(writes) == 1
    store.upsert(view.MODEL_DEPLOYMENT, model_deployment("12", "Progressing"))
    feed.keys_changed(view.MODEL_DEPLOYMENT, {("ModelDeployment", "ns", "a")})
    assert len(writes) == 0


def test_kopfs_event_handler_drops_the_answer_in_the_default_mode() -> None:
    # kopf's decorator hides the coroutine function's type.
    nudge = cast(Callable[..., Coroutine[Any, Any, None]], handlers.models.nudge)
    writes = OwnWrites()
    writes.keep(model_deployment("12", "Progressing"))
    memo = kopf.Memo()
    memo.reconciler = types.SimpleNamespace(own_writes=writes)
    asyncio.run(nudge(uid="u-1", body=cast(kopf.Body, model_deployment("12")), memo=memo))
    assert len(writes) == 0
    without_reconciler = nudge(
        uid="u-1", body=cast(kopf.Body, model_deployment("13")), memo=kopf.Memo()
    )
    asyncio.run(without_reconciler)  # before start-up has made one: nothing to drop


def test_the_view_holds_each_key_once_and_hands_out_independent_copies() -> None:
    store = Store()
    first, second = (
        json.loads(json.dumps(model_deployment("5", uid=uid) | {"kind": "x"})) for uid in "ab"
    )
    first["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    second["metadata"]["name"] = "b"
    store.upsert(view.MODEL_DEPLOYMENT, first)
    store.upsert(view.MODEL_DEPLOYMENT, second)
    a = store.get(view.MODEL_DEPLOYMENT, "ns", "a")
    b = store.get(view.MODEL_DEPLOYMENT, "ns", "b")
    assert a is not None
    assert b is not None
    assert "managedFields" not in a["metadata"]
    assert {k: v for k, v in first.items() if k != "metadata"} == {
        k: v for k, v in a.items() if k != "metadata"
    }
    key_of_a = next(k for k in a["metadata"] if k == "resourceVersion")
    key_of_b = next(k for k in b["metadata"] if k == "resourceVersion")
    assert key_of_a is key_of_b
    a["status"]["phase"] = "changed by a reader"
    again = store.get(view.MODEL_DEPLOYMENT, "ns", "a")
    assert again is not None
    assert again["status"]["phase"] == "Healthy"
