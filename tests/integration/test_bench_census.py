"""The scale bench's census against a real API server: one LIST, then a watch that
keeps every object's summary current through creates, updates, deletes and the
watch's own end (timeoutSeconds), without listing again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench.kube import Census, Client
from e2e.harness import ControlPlane
from e2e.harness.kubernetes import wait_for

pytestmark = pytest.mark.integration


def value_of(item: dict[str, Any]) -> str | None:
    return (item.get("data") or {}).get("v")


def config_map(name: str, value: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"census": "yes"}}, "data": {"v": value}}


def until(census: Census[str | None], holds: Callable[[list[str | None]], bool], what: str) -> None:
    wait_for(lambda: holds(census.values()), timeout=10, interval=0.05, what=what)


def test_the_census_follows_creates_updates_and_deletes_past_the_watchs_end(
    control_plane: ControlPlane, namespace: str
) -> None:
    client = Client(control_plane.kubeconfig)
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    client.must("POST", path, config_map("before", "listed"))
    with Census(client, path, value_of, watch_seconds=1) as census:
        # The first LIST is in when the census starts (the namespace's own CA map too).
        assert "listed" in census.values()
        for index in range(3):
            client.must("POST", path, config_map(f"made-{index}", "new"))
        until(census, lambda values: values.count("new") == 3, "three creates")
        client.must(
            "PATCH",
            f"{path}/made-0",
            {"data": {"v": "changed"}},
            content_type="application/merge-patch+json",
        )
        client.must("DELETE", f"{path}/made-1")
        until(
            census,
            lambda values: values.count("new") == 1 and "changed" in values,
            "an update and a delete",
        )
        # Past two of the watch's 1 s ends: it resumes from its version, no LIST.
        wait_for(lambda: census.watches >= 3, timeout=10, interval=0.05, what="two re-watches")
        client.must("POST", path, config_map("after", "late"))
        until(census, lambda values: "late" in values, "a create after the watch restarted")
        assert census.relists == 1
