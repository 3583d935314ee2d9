"""The view's pure part: objects by (kind, namespace, name), indexed by their model.

Everything the operator owns carries ``modelcanary.io/model``; that label,
with the namespace, names the ModelDeployment whose pass reads the object
(its :data:`Owner`). Every change the store takes in returns the owners it
touched, so the edge can wake exactly those passes and no other.

Newer wins, never older. Two sources feed the store: the watches, and the
API server's answers to the operator's own writes (``remember``), so the pass
after a write sees what it wrote even before the watch delivers the echo. An
event already in flight when the write was answered is older than the
answer and must not replace it; nor may a late event bring back an object a
DELETED event removed. Both are decided by ``resourceVersion``. Kubernetes
calls it opaque, but an etcd-backed API server issues it from one counter
that only grows; the store compares it only when both sides are integers,
and otherwise takes what came last (the watch's own order).

What is kept is the object without ``metadata.managedFields``: no pass reads
them, and they are often the largest part of a Deployment.

Nothing here does I/O or knows kr8s; the watch loops (``view.watch``) and the
readers (routers, applier, reconcile) are the edges.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from modelcanary.api.names import LABEL_MODEL


@dataclass(frozen=True)
class Kind:
    """A kind the view holds, and how to reach it on the API server."""

    kind: str
    group: str
    version: str
    plural: str
    labelled: bool = True
    """Every object of this kind a pass reads carries the model label (ours all do).
    False where a pass also reads a person's object that may not (their HTTPRoute or
    Service): a miss in the view is then not proof of absence, and the reader asks
    the API server."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


DEPLOYMENT: Final = Kind("Deployment", "apps", "v1", "deployments")
AUTOSCALER: Final = Kind("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers")
SERVICE: Final = Kind("Service", "", "v1", "services", labelled=False)
DRILL: Final = Kind("RollbackDrill", "modelcanary.io", "v1alpha1", "rollbackdrills")
ROUTE: Final = Kind("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes", labelled=False)
CRONJOB: Final = Kind("CronJob", "batch", "v1", "cronjobs")
"""The drill schedule's CronJob (``spec.drill``): a sharded loop's first look at a
model without one asks the view whether a schedule was left, not the API server."""
KINDS: Final = (DEPLOYMENT, AUTOSCALER, SERVICE, DRILL, ROUTE, CRONJOB)
MODEL_DEPLOYMENT: Final = Kind(
    "ModelDeployment", "modelcanary.io", "v1alpha1", "modeldeployments", labelled=False
)
"""Watched only in sharded mode, with no label selector: a person's object carries none."""
DISPATCHED: Final = (MODEL_DEPLOYMENT, DRILL)
"""The kinds whose objects get a loop of their own in sharded mode (every one, unselected)."""

Owner = tuple[str, str]
"""(namespace, value of ``modelcanary.io/model``): whose pass reads an object."""
Key = tuple[str, str, str]
"""(kind, namespace, name)."""


def owner_of(obj: Mapping[str, Any]) -> Owner | None:
    metadata = obj.get("metadata") or {}
    model = (metadata.get("labels") or {}).get(LABEL_MODEL)
    namespace = metadata.get("namespace")
    if not model or not namespace:
        return None
    return str(namespace), str(model)


def _version(obj: Mapping[str, Any] | None) -> int | None:
    if obj is None:
        return None
    value = (obj.get("metadata") or {}).get("resourceVersion")
    if not isinstance(value, str | int) or not str(value).isdigit():
        return None
    return int(value)


def is_newer(candidate: Mapping[str, Any], than: Mapping[str, Any] | None) -> bool:
    """Whether ``candidate`` may replace ``than`` (see the module's note on resourceVersion)."""
    mine, theirs = _version(candidate), _version(than)
    if mine is None or theirs is None:
        return True
    return mine > theirs


def known_newer(candidate: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    """Whether ``candidate`` is certainly a later version of the object than ``than``."""
    mine, theirs = _version(candidate), _version(than)
    return mine is not None and theirs is not None and mine > theirs


def _kept(obj: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = _copy_interned(obj)
    (kept.get("metadata") or {}).pop("managedFields", None)
    return kept


def _copy_interned(value: Any) -> Any:
    """A deep copy of parsed JSON whose keys are interned.

    The JSON parser makes new key strings for every object it reads, so a thousand
    Deployments hold a thousand copies of ``"metadata"``, ``"labels"`` and every
    other key; interned, each key is held once and the parser's copies are freed.
    """
    if isinstance(value, Mapping):
        return {
            sys.intern(key) if isinstance(key, str) else key: _copy_interned(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_copy_interned(item) for item in value]
    return value


def _key(kind: Kind, obj: Mapping[str, Any]) -> Key:
    metadata = obj["metadata"]
    return kind.kind, str(metadata.get("namespace") or ""), str(metadata["name"])


@dataclass
class Store:
    """What the watches have seen, and the answers to the operator's own writes."""

    _objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    _by_owner: dict[tuple[str, str, str], set[Key]] = field(default_factory=dict)
    """(kind, namespace, model label) -> keys."""
    _gone: dict[Key, int] = field(default_factory=dict)
    """resourceVersion at which an object was deleted, so an older event cannot revive it."""
    _synced: set[str] = field(default_factory=set)
    _missing: set[str] = field(default_factory=set)
    _outside: set[Key] = field(default_factory=set)
    """Objects that a read found but no watch will bring: a user's Service named in the
    spec, which carries none of the labels the watches select."""

    # -- what the watches say ------------------------------------------------------

    def upsert(self, kind: Kind, obj: Mapping[str, Any]) -> set[Owner]:
        """Take ``obj`` if it is newer than what the store holds; the owners it touched."""
        key = _key(kind, obj)
        old = self._objects.get(key)
        tombstone = self._gone.get(key)
        if not is_newer(obj, old):
            return set()
        version = _version(obj)
        if old is None and tombstone is not None and version is not None and version <= tombstone:
            return set()
        self._gone.pop(key, None)
        return self._put(kind, key, _kept(obj), old)

    def remove(self, kind: Kind, obj: Mapping[str, Any]) -> set[Owner]:
        """A DELETED event: forget the object (unless the store holds a newer one)."""
        key = _key(kind, obj)
        old, version = self._objects.get(key), _version(obj)
        held = _version(old)
        if held is not None and version is not None and held > version:
            return set()  # an object of that name made again since: it stays
        if version is not None:
            self._gone[key] = version
        return self._drop(kind, key)

    def replace(
        self,
        kind: Kind,
        objects: Iterable[Mapping[str, Any]],
        *,
        namespace: str | None = None,
        listed_at: str | None = None,
    ) -> set[Owner]:
        """A fresh LIST of ``kind`` (in ``namespace``, or all): it is the whole truth at
        ``listed_at``. Objects it lacks are dropped, unless the store heard of them
        (a write's answer) after the list was taken. Returns every owner whose
        objects were added, changed or dropped."""
        touched: set[Owner] = set()
        seen: set[Key] = set()
        for obj in objects:
            key = _key(kind, obj)
            seen.add(key)
            old = self._objects.get(key)
            if old is not None and _version(old) == _version(obj) and _version(obj) is not None:
                continue
            if old is not None and not is_newer(obj, old):
                continue
            touched |= self._put(kind, key, _kept(obj), old)
        mark = {"metadata": {"resourceVersion": listed_at}}
        for key in [k for k in self._objects if k[0] == kind.kind]:
            if key in seen or (namespace is not None and key[1] != namespace):
                continue
            if listed_at is not None and not is_newer(mark, self._objects[key]):
                continue  # written after the list was taken: the list cannot know it
            touched |= self._drop(kind, key)
        self._gone = {
            key: version
            for key, version in self._gone.items()
            if key[0] != kind.kind or (namespace is not None and key[1] != namespace)
        }
        self._synced.add(kind.kind)
        self._missing.discard(kind.kind)
        return touched

    def mark_missing(self, kind: Kind) -> set[Owner]:
        """The kind is not served (its CRD is not installed): nothing of it exists."""
        touched = {
            owner
            for key in [k for k in self._objects if k[0] == kind.kind]
            for owner in self._drop(kind, key)
        }
        self._missing.add(kind.kind)
        self._synced.add(kind.kind)
        return touched

    def mark_stale(self, kind: Kind) -> None:
        """Its watch broke: events may be missed until it lists again, so the view no
        longer answers for the kind (readers ask the API server meanwhile)."""
        self._synced.discard(kind.kind)
        self._missing.discard(kind.kind)

    # -- what a pass reads ---------------------------------------------------------

    def synced(self, kind: Kind) -> bool:
        """Listed at least once (or known not to exist): the view can answer for it."""
        return kind.kind in self._synced

    def missing(self, kind: Kind) -> bool:
        return kind.kind in self._missing

    def note_outside(self, kind: Kind, namespace: str, name: str, *, there: bool) -> None:
        """A read found the object outside the watches (``there``), or found nothing."""
        key = (kind.kind, namespace, name)
        if there:
            self._outside.add(key)
        else:
            self._outside.discard(key)

    def outside(self, kind: Kind, namespace: str, name: str) -> bool:
        """A read found this object before and no watch holds it: only a read can say."""
        return (kind.kind, namespace, name) in self._outside

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of one object, or None if the view does not hold it."""
        found = self._objects.get((kind.kind, namespace, name))
        return _copy_interned(found) if found is not None else None

    def of_model(self, kind: Kind, namespace: str, model: str) -> list[dict[str, Any]]:
        """Copies of every object of ``kind`` labelled for ``model`` in ``namespace``, by name."""
        keys = sorted(self._by_owner.get((kind.kind, namespace, model), ()))
        return [_copy_interned(self._objects[key]) for key in keys]

    def keys(self, kind: Kind) -> set[Key]:
        """The keys of every object of ``kind`` the view holds."""
        return {key for key in self._objects if key[0] == kind.kind}

    def __len__(self) -> int:
        return len(self._objects)

    # -- bookkeeping -----------------------------------------------------------------

    def _put(
        self, kind: Kind, key: Key, obj: dict[str, Any], old: Mapping[str, Any] | None
    ) -> set[Owner]:
        touched: set[Owner] = set()
        if old is not None:
            touched |= self._unindex(kind, key, old)
        self._objects[key] = obj
        owner = owner_of(obj)
        if owner is not None:
            self._by_owner.setdefault((kind.kind, *owner), set()).add(key)
            touched.add(owner)
        return touched

    def _drop(self, kind: Kind, key: Key) -> set[Owner]:
        old = self._objects.pop(key, None)
        return self._unindex(kind, key, old) if old is not None else set()

    def _unindex(self, kind: Kind, key: Key, old: Mapping[str, Any]) -> set[Owner]:
        owner = owner_of(old)
        if owner is None:
            return set()
        index = (kind.kind, *owner)
        keys = self._by_owner.get(index)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_owner[index]
        return {owner}


class OwnWrites:
    """The API server's answer to the operator's last write of each object, by uid.

    A pass is given the object as kopf's watch last delivered it, which may be
    older than the operator's own status write of a moment ago; deciding on
    it would decide again from the status before. So each answer is kept, and
    used while it is certainly newer than what the pass was given.
    """

    def __init__(self) -> None:
        self._answers: dict[str, dict[str, Any]] = {}

    def keep(self, answer: Mapping[str, Any]) -> None:
        uid = (answer.get("metadata") or {}).get("uid")
        if uid:
            self._answers[str(uid)] = dict(answer)

    def seen(self, obj: Mapping[str, Any]) -> None:
        """A watch delivered ``obj``: drop the answer it has caught up with.

        :meth:`freshest` asks this too, but only when a pass runs, and at rest no
        pass runs: a kept answer would be a second copy of every object the
        operator ever wrote (a fifth of its memory per object, tracemalloc at N=300).
        """
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        answer = self._answers.get(uid)
        if answer is not None and not known_newer(answer, obj):
            del self._answers[uid]

    def __len__(self) -> int:
        return len(self._answers)

    def freshest(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        """``obj``, or the answer to our own last write of it if that is certainly newer."""
        self.seen(obj)  # the watch may have caught up: then keep nothing
        return self._answers.get(str(obj["metadata"].get("uid", "")), obj)

    def forget(self, uid: str) -> None:
        self._answers.pop(uid, None)
