"""A few Kubernetes API endpoints in memory, at the network edge, for the pass skeleton's tests.

The operator's code runs unchanged over kr8s; only kr8s's HTTP client is
given an ``httpx.MockTransport`` that answers from a dict of objects, the way
Argo Rollouts tests its controller against fixture objects. It knows just
what a pass uses: GET of an object or a collection (a label selector is
honoured), POST, PATCH (merge and JSON patch, the status subresource
included) and DELETE. Every request is recorded, and a test can make chosen
requests fail, as a real API server would, to see what the pass does next.

The real API server tests (tests/integration, tests/e2e) stay the authority
on what the API server does; this fake is only for the glue that needs
many small cases, each in milliseconds.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import kr8s.asyncio

BASE = "http://fake-kube.test"


@dataclass(frozen=True)
class Failure:
    method: str
    path_contains: str
    code: int = 500
    message: str = "the fake API server says no"


@dataclass
class Request:
    method: str
    path: str
    body: Any


@dataclass
class FakeKube:
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Object path (``/apis/apps/v1/namespaces/ns/deployments/name``) -> object."""
    requests: list[Request] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def api(self) -> kr8s.asyncio.Api:
        """A kr8s client whose HTTP goes to this fake (no kubeconfig, no network)."""
        api = kr8s.asyncio.Api(bypass_factory=True, url=BASE)
        api._session = httpx.AsyncClient(
            base_url=BASE,
            transport=httpx.MockTransport(self._handle),
            headers={"content-type": "application/json"},
        )
        return api

    def put(self, path: str, obj: Mapping[str, Any]) -> None:
        stored = copy.deepcopy(dict(obj))
        metadata = stored.setdefault("metadata", {})
        metadata.setdefault("uid", f"uid-{metadata.get('name', 'x')}")
        metadata["resourceVersion"] = str(next(self._versions))
        self.objects[path] = stored

    def get(self, path: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[path])

    def writes(self, fragment: str = "") -> list[Request]:
        return [r for r in self.requests if r.method != "GET" and fragment in r.path]

    # -- the API server ------------------------------------------------------------

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        body: Any = json.loads(request.content) if request.content else None
        self.requests.append(Request(request.method, path, body))
        for failure in self.failures:
            if failure.method == request.method and failure.path_contains in path:
                return _status(failure.code, failure.message)
        if request.method == "GET":
            return self._get(path, request.url.params.get("labelSelector", ""))
        if request.method == "POST":
            name = body["metadata"]["name"]
            if f"{path}/{name}" in self.objects:
                return _status(409, f"{name} already exists")
            self.put(f"{path}/{name}", body)
            return httpx.Response(201, json=self.objects[f"{path}/{name}"])
        subresource = path.endswith("/status")
        target = path.removesuffix("/status") if subresource else path
        if target not in self.objects:
            return _status(404, f"{target} not found")
        if request.method == "DELETE":
            return httpx.Response(200, json=self.objects.pop(target))
        if request.method == "PATCH":
            return self._patch(target, body, request.headers["content-type"], subresource)
        return _status(405, f"{request.method} is not served by the fake")

    def _get(self, path: str, selector: str) -> httpx.Response:
        if path in self.objects:
            return httpx.Response(200, json=self.objects[path])
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        items = [
            obj
            for key, obj in self.objects.items()
            if key.rsplit("/", 1)[0] == path
            and wanted.items() <= (obj["metadata"].get("labels") or {}).items()
        ]
        if items or (path.rsplit("/", 1)[-1].endswith("s") and "namespaces/" in path):
            return httpx.Response(200, json={"items": items, "metadata": {}})
        return _status(404, f"{path} not found")

    def _patch(self, path: str, patch: Any, kind: str, subresource: bool) -> httpx.Response:
        obj = copy.deepcopy(self.objects[path])
        if "json-patch" in kind:
            try:
                obj = _json_patch(obj, patch)
            except _TestFailed as failed:
                return _status(422, f"the test operation failed: {failed}")
        else:
            if subresource:
                patch = {"status": patch.get("status")}  # the status subresource takes only status
            obj = _merge(obj, patch)
        self.put(path, obj)
        return httpx.Response(200, json=self.objects[path])


class _TestFailed(Exception):
    pass


def _status(code: int, message: str) -> httpx.Response:
    return httpx.Response(code, json={"kind": "Status", "code": code, "message": message})


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _json_patch(obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902, the operations a pass uses: test, add, replace, remove."""
    for op in ops:
        *parents, last = [
            part.replace("~1", "/").replace("~0", "~") for part in op["path"].split("/")[1:]
        ]
        node: Any = obj
        for part in parents:
            if part not in node:
                raise _TestFailed(op["path"])
            node = node[part]
        if op["op"] == "test":
            if not isinstance(node, Mapping) or node.get(last) != op["value"]:
                raise _TestFailed(op["path"])
        elif op["op"] == "remove":
            if last not in node:
                raise _TestFailed(op["path"])
            del node[last]
        else:
            node[last] = op["value"]
    return obj
