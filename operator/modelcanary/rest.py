"""Reads and writes of one object as plain JSON, over kr8s's client but not its objects.

kr8s keeps an object's body as a python-box ``Box``, converted recursively
whenever an ``APIObject`` is made and again from every answer; the operator
then turned each answer back into plain dicts (a JSON round trip). Over the
ramp of 200 new ModelDeployments that conversion was a quarter of the
operator's CPU (py-spy, bench-scale): every status write built a Box of the
whole ModelDeployment, its history included, and another of the answer. The
hot writes (revisions' Deployments and Services, status patches, the manual
action's clearing) go through here instead: the same requests, through the
same client (its rate limit, its authentication), with plain dicts in and out.

An object is named by :class:`ObjectRef`: the kr8s class only lends its API
version and plural, so a kind's name is still written once, in kr8s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import APIObject

_NOT_FOUND = 404
_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}


def status_code(error: Exception) -> int | None:
    """The HTTP status of a failed request (a ``kr8s.ServerError``); None without one."""
    response = getattr(error, "response", None)
    return response.status_code if response is not None else None


@dataclass(frozen=True)
class ObjectRef:
    """One namespaced object on the API server: where to send its reads and writes."""

    api: kr8s.asyncio.Api
    version: str
    """``apps/v1``, ``v1``, ``modelcanary.io/v1alpha1``: kr8s picks ``/apis`` or ``/api``."""
    plural: str
    namespace: str
    name: str

    @classmethod
    def of(
        cls, kind: type[APIObject], api: kr8s.asyncio.Api, namespace: str, name: str
    ) -> ObjectRef:
        return cls(api, str(kind.version), str(kind.endpoint), namespace, name)

    async def get(self) -> dict[str, Any] | None:
        """One GET; None when the object does not exist."""
        try:
            async with self.api.call_api(
                "GET", version=self.version, namespace=self.namespace, url=self._url()
            ) as response:
                body: dict[str, Any] = response.json()
        except kr8s.ServerError as error:
            if status_code(error) == _NOT_FOUND:
                return None
            raise
        return body

    async def patch(
        self,
        body: Mapping[str, Any] | list[dict[str, Any]],
        *,
        type: Literal["merge", "json"] = "merge",
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """One PATCH; the API server's answer. ``kr8s.NotFoundError`` when it is gone."""
        try:
            async with self.api.call_api(
                "PATCH",
                version=self.version,
                namespace=self.namespace,
                url=self._url(subresource),
                content=json.dumps(body),
                headers={"Content-Type": _CONTENT_TYPES[type]},
            ) as response:
                answer: dict[str, Any] = response.json()
        except kr8s.ServerError as error:
            if status_code(error) == _NOT_FOUND:
                raise kr8s.NotFoundError(
                    f"{self.plural} {self.namespace}/{self.name} does not exist"
                ) from error
            raise
        return answer

    def _url(self, subresource: str | None = None) -> str:
        url = f"{self.plural}/{self.name}"
        return f"{url}/{subresource}" if subresource else url


async def create(
    kind: type[APIObject], api: kr8s.asyncio.Api, body: Mapping[str, Any]
) -> dict[str, Any]:
    """One POST of ``body`` (in ``metadata.namespace``); the API server's answer.

    A 409 (it exists) is raised as kr8s raises it: ``kr8s.ServerError``.
    """
    # As kr8s sends it: its kind and version always set.
    sent = {**body, "apiVersion": str(kind.version), "kind": str(kind.kind)}
    async with api.call_api(
        "POST",
        version=str(kind.version),
        namespace=body["metadata"]["namespace"],
        url=str(kind.endpoint),
        content=json.dumps(sent),
    ) as response:
        answer: dict[str, Any] = response.json()
    return answer
