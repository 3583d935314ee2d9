"""When a kind that is not served may be: its CRD's versions and Established condition,
and the fallback to looking again later where the CRD cannot be watched."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import kr8s.asyncio
import pytest

from modelcanary.view import served
from modelcanary.view.served import crd_name, serves, until_served
from modelcanary.view.store import ROUTE

pytestmark = pytest.mark.unit


def crd(*, version: str = "v1", served: bool = True, established: str = "True") -> dict[str, Any]:
    return {
        "spec": {"versions": [{"name": version, "served": served}]},
        "status": {"conditions": [{"type": "Established", "status": established}]},
    }


def test_the_crd_is_named_by_plural_and_group() -> None:
    assert crd_name(ROUTE) == "httproutes.gateway.networking.k8s.io"


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        (crd(), True),
        (crd(version="v1beta1"), False),
        (crd(served=False), False),
        (crd(established="False"), False),
        ({}, False),
    ],
)
def test_a_crd_serves_the_kind_only_established_and_with_its_version_served(
    found: dict[str, Any], expected: bool
) -> None:
    assert serves(found, ROUTE) is expected


class Refusing:
    """An API client whose every request is refused (no RBAC on CRDs)."""

    def __init__(self) -> None:
        self.calls = 0

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        raise kr8s.ServerError("customresourcedefinitions is forbidden")


def waited(api: object, *, fallback_seconds: float) -> float:
    """Seconds ``until_served`` took for ROUTE on ``api``."""
    started = time.monotonic()
    asyncio.run(
        until_served(
            cast(kr8s.asyncio.Api, api),
            ROUTE,
            watch_seconds=lambda: 300,
            fallback_seconds=fallback_seconds,
        )
    )
    return time.monotonic() - started


def test_where_crds_cannot_be_watched_it_looks_again_after_the_fallback() -> None:
    api = Refusing()
    assert waited(api, fallback_seconds=0.2) >= 0.2
    assert api.calls == 1


class Listing:
    """An API client whose CRD LIST says the kind is served (a 404 was transient)."""

    def __init__(self) -> None:
        self.calls = 0

    def call_api(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self

    async def __aenter__(self) -> Listing:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def json(self) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": "7"}, "items": [crd()]}


def test_a_crd_that_serves_already_is_looked_at_again_soon_not_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A kube-apiserver that is starting answers 404 for a kind its CRD serves:
    # returning at once would make the caller's LIST and this one a tight loop.
    monkeypatch.setattr(served, "SERVED_RETRY_SECONDS", 0.2)
    api = Listing()
    assert 0.2 <= waited(api, fallback_seconds=60) < 5
    assert api.calls == 1
