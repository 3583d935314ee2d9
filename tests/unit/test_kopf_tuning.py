"""kopf's per-event work made cheaper, with what kopf decides unchanged."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from typing import Any, cast

import kopf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcanary.kopf_tuning import (
    KOPF_OBJECT_LOGGER,
    SpecEssenceStorage,
    idle,
    quiet_every_event_handlers,
)

pytestmark = pytest.mark.unit

PREFIX = "modelcanary.io"


class NotToBeCopied(dict[str, Any]):
    """A stanza the essence drops: deep-copying it is the cost this storage removes."""

    def __deepcopy__(self, memo: dict[int, Any]) -> NotToBeCopied:
        raise AssertionError("the status was deep-copied")


def model_deployment(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modelcanary.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": "fraud",
            "namespace": "ml",
            "uid": "u-1",
            "resourceVersion": "42",
            "generation": 3,
            "labels": {"team": "risk"},
            "annotations": {
                "note": "kept",
                f"{PREFIX}/last-handled-configuration": '{"spec":{}}\n',
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            },
            "finalizers": [f"{PREFIX}/finalizer"],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"predictor": {"model": {"name": "fraud", "version": "1.0.0"}}, "drill": None},
        "status": status,
    }


def storages() -> tuple[kopf.AnnotationsDiffBaseStorage, SpecEssenceStorage]:
    key = "last-handled-configuration"
    return (
        kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key=key),
        SpecEssenceStorage(prefix=PREFIX, key=key),
    )


def test_the_essence_is_kopfs_own() -> None:
    kopfs, ours = storages()
    raw = model_deployment({"phase": "Healthy", "history": [{"revision": "a" * 10}]})
    body = kopf.Body(cast(kopf.RawBody, raw))
    assert ours.build(body=body) == kopfs.build(body=body)
    assert ours.build(body=body) == {
        "metadata": {"labels": {"team": "risk"}, "annotations": {"note": "kept"}},
        "spec": {"predictor": {"model": {"name": "fraud", "version": "1.0.0"}}, "drill": None},
    }


def test_the_status_is_never_copied() -> None:
    kopfs, ours = storages()
    raw = model_deployment(NotToBeCopied(phase="Healthy"))
    body = kopf.Body(cast(kopf.RawBody, raw))
    with pytest.raises(AssertionError, match="deep-copied"):
        kopfs.build(body=body)
    essence = ours.build(body=body)
    assert "status" not in essence
    assert raw["status"] == {"phase": "Healthy"}, "the body itself is left as it was"


def test_fields_asked_for_by_a_handler_come_from_the_whole_body() -> None:
    kopfs, ours = storages()
    raw = model_deployment({"phase": "Healthy"})
    body = kopf.Body(cast(kopf.RawBody, copy.deepcopy(raw)))
    extra = ["status.phase"]
    assert ours.build(body=body, extra_fields=extra) == kopfs.build(body=body, extra_fields=extra)
    assert ours.build(body=body, extra_fields=extra)["status"] == {"phase": "Healthy"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
annotation_keys = st.sampled_from(
    [
        "note",
        "team.example.com/owner",
        f"{PREFIX}/last-handled-configuration",
        f"{PREFIX}/kopf-managed",
        f"{PREFIX}/action",
        "kopf.zalando.org/last-handled-configuration",
        "other.example.com/kopf-managed",
        "other.example.com/last-handled-configuration",
        "kubectl.kubernetes.io/last-applied-configuration",
    ]
)


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "fraud", "namespace": "ml", "uid": "u-1"}
    if draw(st.booleans()):
        metadata["labels"] = draw(st.dictionaries(st.text(max_size=4), st.text(max_size=4)))
    if draw(st.booleans()):
        metadata["annotations"] = draw(st.dictionaries(annotation_keys, st.text(max_size=4)))
    raw: dict[str, Any] = {"apiVersion": "modelcanary.io/v1alpha1", "kind": "ModelDeployment"}
    raw["metadata"] = metadata
    raw.update(draw(st.dictionaries(st.sampled_from(["spec", "data", "extra"]), json_values)))
    if draw(st.booleans()):
        raw["status"] = {"phase": "Healthy"}
    return raw


@settings(max_examples=300, deadline=None)
@given(raw=bodies())
def test_the_essence_is_kopfs_own_key_order_included(raw: dict[str, Any]) -> None:
    """The essence is stored as JSON and compared with the next one: the same
    content in the same order as kopf's build, whatever the body holds."""
    kopfs, ours = storages()
    body = kopf.Body(cast(kopf.RawBody, raw))
    expected = kopfs.build(body=body)
    assert json.dumps(ours.build(body=body)) == json.dumps(expected)


def test_the_essence_shares_nothing_with_the_body() -> None:
    _, ours = storages()
    raw = model_deployment({"phase": "Healthy"})
    raw["spec"]["traffic"] = {"steps": [{"weight": 10}]}
    before = copy.deepcopy(raw)
    essence = cast(dict[str, Any], ours.build(body=kopf.Body(cast(kopf.RawBody, raw))))
    essence["spec"]["traffic"]["steps"].append({"weight": 50})
    essence["spec"]["predictor"]["model"]["name"] = "changed"
    essence["metadata"]["labels"]["team"] = "changed"
    assert raw == before


def test_kopfs_build_when_fields_are_ignored() -> None:
    """kopf's ``ignored_fields`` (none here, a user's setting elsewhere): kopf's own build."""
    key = "last-handled-configuration"
    ignoring = ["spec.drill"]
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX, key=key, ignored_fields=ignoring)
    ours = SpecEssenceStorage(prefix=PREFIX, key=key, ignored_fields=ignoring)
    raw = model_deployment(NotToBeCopied(phase="Healthy"))
    body = kopf.Body(cast(kopf.RawBody, raw))
    essence = ours.build(body=body)
    assert "drill" not in essence["spec"]
    raw["status"] = {"phase": "Healthy"}
    assert essence == kopfs.build(body=body)


def test_the_event_handlers_success_is_not_logged_and_its_failure_is(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log_filter = quiet_every_event_handlers(["nudge"])
    logger = logging.getLogger(KOPF_OBJECT_LOGGER)
    try:
        with caplog.at_level(logging.INFO, logger=KOPF_OBJECT_LOGGER):
            logger.info("Handler 'nudge' succeeded.")
            logger.info("Handler 'finalize' succeeded.")
            logger.error("Handler 'nudge' failed with an exception. Will retry.")
        assert [r.getMessage() for r in caplog.records] == [
            "Handler 'finalize' succeeded.",
            "Handler 'nudge' failed with an exception. Will retry.",
        ]
        assert quiet_every_event_handlers(["nudge"]) is not log_filter
        assert sum(1 for f in logger.filters if type(f).__name__ == "EveryEventHandlerLog") == 1
    finally:
        for existing in list(logger.filters):
            logger.removeFilter(existing)


class Stopped:
    """kopf's ``stopped``, as a daemon sees it: falsy until kopf stops the daemon."""

    def __init__(self) -> None:
        self.is_set = False

    def __bool__(self) -> bool:
        return self.is_set


def resting(stopped: Stopped, wake: asyncio.Event, seconds: float = 60.0) -> asyncio.Task[bool]:
    return asyncio.ensure_future(idle(wake, cast(kopf.DaemonStopped, stopped), seconds))


def test_a_wake_or_the_time_runs_the_next_pass() -> None:
    async def test() -> None:
        wake = asyncio.Event()
        task = resting(Stopped(), wake)
        await asyncio.sleep(0)
        wake.set()
        assert await asyncio.wait_for(task, timeout=5) is True
        assert await idle(asyncio.Event(), cast(kopf.DaemonStopped, Stopped()), 0.01) is True

    asyncio.run(test())


def test_kopfs_stop_while_resting_ends_the_daemon_without_a_cancellation() -> None:
    """kopf sets ``stopped`` and then cancels: the daemon returns, so kopf has no
    cancellation to warn about ("is cancelled. Will escalate.")."""

    async def test() -> None:
        stopped = Stopped()
        task = resting(stopped, asyncio.Event())
        await asyncio.sleep(0)
        stopped.is_set = True
        task.cancel()
        assert await asyncio.wait_for(task, timeout=5) is False
        assert not task.cancelled()
        assert task.cancelling() == 0

    asyncio.run(test())


def test_a_cancellation_that_is_not_kopfs_stop_still_cancels() -> None:
    async def test() -> None:
        task = resting(Stopped(), asyncio.Event())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(test())


def test_a_stop_signalled_without_a_cancellation_ends_after_the_rest() -> None:
    async def test() -> None:
        stopped = Stopped()
        stopped.is_set = True
        assert await idle(asyncio.Event(), cast(kopf.DaemonStopped, stopped), 0.01) is False

    asyncio.run(test())
