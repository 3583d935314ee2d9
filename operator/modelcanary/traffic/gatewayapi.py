"""The Gateway API router: weights are the backendRefs of an HTTPRoute's first rule.

Each revision has its own ClusterIP Service (``<md_name>-<revision>``), and the
route's first rule points at them with ``weight`` set to the revision's
percent, so the weights a person reads in the route are the percents the
rollout asked for.

Two kinds of route:

* **ours**: ``create: true`` and the route did not exist. The operator creates
  it (parentRefs from the spec, one rule, owned by the ModelDeployment) and
  the garbage collector removes it with the ModelDeployment;
* **a user's**: the route exists and the ModelDeployment does not own it. The
  operator manages the backendRefs of the first rule and nothing else: other
  rules, matches, filters, hostnames and parentRefs stay as the user wrote
  them. Before its first change it saves the rule's backendRefs in the
  annotation ``modelcanary.io/original-backend-refs``, in the same patch, and
  ``finalize`` puts them back, so deleting the ModelDeployment hands the
  route back as it was found.

Revisions at 0% are left out of the route rather than kept at weight 0. A
zero-weight backend carries no traffic either way, but it keeps pointing at a
Service that is deleted once its revision falls out of the history, which a
Gateway then reports as an unresolved reference on the whole route; and a rule
holds at most 16 backendRefs.

Each update is one JSON patch of ``/spec/rules/0/backendRefs`` that carries
the resourceVersion it was computed from, so an edit made in between is never
overwritten blindly: the API server answers 409 Conflict, and the router reads
again and retries a few times. A weight a person edits later is simply read back by
``get_weight``, and the rollout sees the drift.

The route carries the ``modelcanary.io/model`` label, a user's route too
(``ensure`` adds it; ``finalize`` takes it off again), so the operator's
label-selected watch sees it: ``ensure`` and ``get_weight`` read the route
from the view (``view.watch.View``) and a hand-edited weight wakes the pass.
The writes read the route from the API server, since a guarded patch needs
the current resourceVersion, and the API server's answer to every write goes
into the view: a weight is confirmed by what the API server answered or its
watch sent, never by what the operator meant to write.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import new_class

from modelcanary.api.modeldeployment import (
    GatewayAPIRouter,
    ParentReference,
)
from modelcanary.api.names import LABEL_MODEL, model_label
from modelcanary.rollout.observations import RouterObservation
from modelcanary.traffic.weights import check_weights, percentages
from modelcanary.view.store import ROUTE
from modelcanary.view.watch import View
from modelcanary.workloads.applier import plain, read
from modelcanary.workloads.builders import (
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
    OwnerRef,
    revision_name,
    revision_of,
)

HTTPRoute = new_class("HTTPRoute.gateway.networking.k8s.io/v1", namespaced=True)

ANNOTATION_ORIGINAL: Final = "modelcanary.io/original-backend-refs"
"""JSON of the first rule's backendRefs before the operator changed them (null: none)."""

ATTEMPTS: Final = 3
"""Read-patch rounds before a conflicting writer wins this pass (the next pass retries)."""

_BACKEND_DEFAULTS: Final = {"group": "", "kind": "Service", "weight": 1}
_PARENT_DEFAULTS: Final = {"group": "gateway.networking.k8s.io", "kind": "Gateway"}
_FOREIGN: Final = ""
"""Key for backends that are not revisions of this model; no revision is empty."""


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


def _normal(refs: list[dict[str, Any]] | None, defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    """References with the CRD's defaults filled in, so a read-back compares equal."""
    return [{**defaults, **ref} for ref in refs or []]


def _is_conflict(error: kr8s.ServerError) -> bool:
    """The route changed between our read and our patch (or was created meanwhile)."""
    return error.response is not None and error.response.status_code == 409


class HTTPRouteRouter:
    """Shifts traffic with the backend weights of one HTTPRoute (gateway.networking.k8s.io/v1)."""

    def __init__(
        self,
        api: kr8s.asyncio.Api,
        *,
        namespace: str,
        md_name: str,
        config: GatewayAPIRouter,
        port: int,
        owner: OwnerRef,
        view: View | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.md_name = md_name
        self.config = config
        self.port = port
        self.owner = owner
        self.view = view

    @property
    def route_name(self) -> str:
        return self.config.http_route

    def _where(self) -> str:
        return f"HTTPRoute {self.namespace}/{self.route_name}"

    # -- building --------------------------------------------------------------------

    def backend_refs(self, weights: Mapping[str, int]) -> list[dict[str, Any]]:
        """The first rule's backendRefs for ``weights``; 0% revisions are left out."""
        return [
            {
                "group": "",
                "kind": "Service",
                "name": revision_name(self.md_name, revision),
                "port": self.port,
                "weight": weight,
            }
            for revision, weight in sorted(weights.items())
            if weight > 0
        ]

    def _parent_refs(self) -> list[dict[str, Any]]:
        parents: list[ParentReference] = self.config.parent_refs or []
        return [parent.to_dict() for parent in parents]

    def manifest(self, backend_refs: list[dict[str, Any]]) -> dict[str, Any]:
        """The route the operator creates when ``create`` is true and there is none."""
        return {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {
                "name": self.route_name,
                "namespace": self.namespace,
                "labels": {
                    LABEL_MODEL: model_label(self.md_name),
                    LABEL_NAME: model_label(self.md_name),
                    LABEL_MANAGED_BY: MANAGED_BY,
                },
                "ownerReferences": [self.owner.to_dict()],
            },
            "spec": {"parentRefs": self._parent_refs(), "rules": [{"backendRefs": backend_refs}]},
        }

    # -- reading ---------------------------------------------------------------------

    async def _read(self) -> dict[str, Any] | None:
        """The route as the API server has it now (before a guarded write)."""
        return await read(HTTPRoute, self.api, self.namespace, self.route_name)

    async def _observe(self) -> dict[str, Any] | None:
        """The route as the view has it (the API server's, when there is no view)."""
        if self.view is None:
            return await self._read()
        return await self.view.get(ROUTE, self.namespace, self.route_name)

    def _remember(self, route: Any) -> None:
        if self.view is not None:
            self.view.remember(ROUTE, plain(route))

    def is_ours(self, route: Mapping[str, Any]) -> bool:
        """Created by the operator for this ModelDeployment (it owns the route)."""
        references = route.get("metadata", {}).get("ownerReferences") or []
        return any(ref.get("uid") == self.owner.uid for ref in references)

    def revision_of(self, backend: Mapping[str, Any]) -> str | None:
        """The revision a backendRef points at, or None if it is not one of ours."""
        ref = {**_BACKEND_DEFAULTS, **backend}
        if ref["group"] not in ("", "core") or ref["kind"] != "Service":
            return None
        if ref.get("namespace") not in (None, self.namespace):
            return None
        return revision_of(self.md_name, str(ref.get("name", "")))

    def _first_rule(self, route: Mapping[str, Any]) -> dict[str, Any]:
        rules = (route.get("spec") or {}).get("rules") or []
        if not rules:
            raise ValueError(f"{self._where()} has no rules; the operator manages the first one")
        rule: dict[str, Any] = rules[0]
        return rule

    # -- writing ---------------------------------------------------------------------

    async def _create(self, backend_refs: list[dict[str, Any]]) -> bool:
        """Create our route; False if someone else created it first."""
        route = HTTPRoute(self.manifest(backend_refs), api=self.api)
        try:
            await route.create()
        except kr8s.ServerError as error:
            if error.response is not None and error.response.status_code == 409:
                return False
            raise
        self._remember(route)
        return True

    async def _patch(self, route: Mapping[str, Any], ops: list[dict[str, Any]]) -> None:
        # The resourceVersion we read, written into the patched object, is a
        # precondition: the API server answers 409 Conflict if the route changed
        # since. (A failed JSON-patch "test" op would come back as a bare 422
        # Invalid, which cannot be told apart from a real validation error.)
        guarded = [
            {
                "op": "replace",
                "path": "/metadata/resourceVersion",
                "value": route["metadata"]["resourceVersion"],
            },
            *ops,
        ]
        obj = HTTPRoute(
            {"metadata": {"name": self.route_name, "namespace": self.namespace}}, api=self.api
        )
        await obj.patch(guarded, type="json")
        self._remember(obj)

    def _weight_ops(
        self, route: Mapping[str, Any], backend_refs: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        rule = self._first_rule(route)
        ops: list[dict[str, Any]] = []
        annotations = route["metadata"].get("annotations")
        if not self.is_ours(route) and ANNOTATION_ORIGINAL not in (annotations or {}):
            original = json.dumps(rule.get("backendRefs"), separators=(",", ":"))
            if annotations is None:
                ops.append(
                    {
                        "op": "add",
                        "path": "/metadata/annotations",
                        "value": {ANNOTATION_ORIGINAL: original},
                    }
                )
            else:
                ops.append(
                    {
                        "op": "add",
                        "path": _pointer("metadata", "annotations", ANNOTATION_ORIGINAL),
                        "value": original,
                    }
                )
        current = rule.get("backendRefs")
        if current is None or _normal(current, _BACKEND_DEFAULTS) != _normal(
            backend_refs, _BACKEND_DEFAULTS
        ):
            # "add" on an existing member replaces it: one op whether or not it exists.
            ops.append({"op": "add", "path": "/spec/rules/0/backendRefs", "value": backend_refs})
        return ops

    async def _update(
        self,
        plan: Callable[[Mapping[str, Any]], list[dict[str, Any]]],
        when_missing: Callable[[], Awaitable[bool]],
    ) -> None:
        """Read, plan a JSON patch, apply it guarded by resourceVersion; retry on conflict.

        ``when_missing`` handles a route that does not exist and says whether
        that settles it (False: read again).
        """
        for attempt in range(ATTEMPTS):
            route = await self._read()
            if route is None:
                if await when_missing():
                    return
                continue
            ops = plan(route)
            if not ops:
                return
            try:
                await self._patch(route, ops)
            except kr8s.ServerError as error:
                if _is_conflict(error) and attempt + 1 < ATTEMPTS:
                    continue
                raise
            return
        raise kr8s.ServerError(f"{self._where()} kept changing under the operator; retrying later")

    # -- the Router protocol -----------------------------------------------------------

    async def ensure(self) -> None:
        """Create the route if ``create`` is set and it is missing; keep ours attached.

        A route the operator does not own gets the model label (so the watch
        sees it) and is otherwise not changed here.
        """
        route = await self._observe()
        if route is None:
            if self.config.create:
                # No backends until the first set_weight: the rollout decides them.
                await self._create([])
            return
        labels = route["metadata"].get("labels") or {}
        if labels.get(LABEL_MODEL) != model_label(self.md_name):
            await self._patch(route, self._label_ops(route))
            return
        if not self.is_ours(route):
            return
        wanted = self._parent_refs()
        have = (route.get("spec") or {}).get("parentRefs")
        if _normal(have, _PARENT_DEFAULTS) != _normal(wanted, _PARENT_DEFAULTS):
            await self._patch(route, [{"op": "add", "path": "/spec/parentRefs", "value": wanted}])

    async def set_weight(self, weights: Mapping[str, int]) -> None:
        """One guarded patch of the first rule's backendRefs (none if they already match)."""
        backend_refs = self.backend_refs(check_weights(weights))

        async def when_missing() -> bool:
            if not self.config.create:
                raise kr8s.NotFoundError(f"{self._where()} does not exist")
            return await self._create(backend_refs)

        await self._update(lambda route: self._weight_ops(route, backend_refs), when_missing)

    async def get_weight(self) -> RouterObservation:
        """revision -> percent of the first rule's traffic, from the route as it is now.

        Backends that are not revisions of this model count in the total but are
        not reported, so their share shows up as revisions summing to less than 100.
        """
        route = await self._observe()
        if route is None:
            return RouterObservation(weights=None, error=f"{self._where()} not found")
        try:
            rule = self._first_rule(route)
        except ValueError as error:
            return RouterObservation(weights=None, error=str(error))
        amounts: dict[str, int] = {}
        for backend in rule.get("backendRefs") or []:
            key = self.revision_of(backend) or _FOREIGN
            amounts[key] = amounts.get(key, 0) + int(backend.get("weight", 1))
        shares = percentages(amounts)
        return RouterObservation(weights={k: v for k, v in shares.items() if k != _FOREIGN})

    def _label_ops(self, route: Mapping[str, Any]) -> list[dict[str, Any]]:
        if route["metadata"].get("labels") is None:
            value = {LABEL_MODEL: model_label(self.md_name)}
            return [{"op": "add", "path": "/metadata/labels", "value": value}]
        path = _pointer("metadata", "labels", LABEL_MODEL)
        return [{"op": "add", "path": path, "value": model_label(self.md_name)}]

    def _restore_ops(self, route: Mapping[str, Any]) -> list[dict[str, Any]]:
        if self.is_ours(route):
            return []
        annotations = route["metadata"].get("annotations") or {}
        labelled = LABEL_MODEL in (route["metadata"].get("labels") or {})
        unlabel = [{"op": "remove", "path": _pointer("metadata", "labels", LABEL_MODEL)}]
        if ANNOTATION_ORIGINAL not in annotations:
            return unlabel if labelled else []
        original = json.loads(annotations[ANNOTATION_ORIGINAL])
        ops: list[dict[str, Any]] = []
        rules = (route.get("spec") or {}).get("rules") or []
        if rules and original is not None:
            ops.append({"op": "add", "path": "/spec/rules/0/backendRefs", "value": original})
        elif rules and "backendRefs" in rules[0]:
            ops.append({"op": "remove", "path": "/spec/rules/0/backendRefs"})
        ops.append(
            {"op": "remove", "path": _pointer("metadata", "annotations", ANNOTATION_ORIGINAL)}
        )
        return ops + (unlabel if labelled else [])

    async def finalize(self) -> None:
        """Put a user's backendRefs back as they were; our own route goes with its owner."""

        async def when_missing() -> bool:
            return True

        await self._update(self._restore_ops, when_missing)
