"""The view's I/O edge: LIST then WATCH each kind the passes read, and the readers over it.

kr8s watches rather than kopf indices. kopf indices are built by kopf's own
watches, but only for resources with handlers, and an index handler on
Deployments, Services and HPAs would make kopf watch them with its own
machinery: every event goes through kopf's per-object queues, with its
progress storage and its ``kopf.zalando.org`` annotations on objects it
considers "handled", and kopf cannot select by label (its filters run after
every object has been received). A plain label-selected watch per kind is
what an informer is: the API server sends only the operator's objects, and
the store (``view.store``) is a plain dict. kr8s's own ``watch`` is not
used: on 410 Gone it restarts at the same, expired resourceVersion (so it
loops), and it hides the LIST's resourceVersion that a watch must start at.
Here the HTTP goes through kr8s's client (``call_api``), like every other
request of the operator.

Each (kind, namespace) has one loop, which never ends before the operator:

* LIST with the ``modelcanary.io/model`` selector, in pages; the list
  replaces what the store held for that kind, and every owner whose objects
  differ is woken (a change made while the watch was down is not lost);
* WATCH from the list's resourceVersion, with bookmarks, for a few minutes
  at a time, resuming from the last version seen;
* 410 Gone (the version has been compacted away): LIST again;
* any other failure (a refused connection while the API server restarts, a
  5xx, a broken stream, even a bug): the view stops answering for the kind,
  so passes read the API server rather than a view that may miss events, and
  the loop LISTs again after a backoff that doubles to 10 s
  (a restarted API server is back within seconds; one LIST attempt per kind
  every 10 s during an outage costs it nothing);
* 404 on the LIST: the kind is not served (no Gateway API CRDs on a cluster
  that routes by replicas). The view answers "none" for it and watches the
  kind's CRD (``served``), so CRDs installed later are picked up at once; where
  CRDs cannot be watched, it looks again every minute.

Each watch asks the API server for 5 to 10 minutes at random, as client-go's
reflectors do: a controller at rest reconnects its watches and sends nothing
else, so that span is most of its requests at rest.

A pass reads through :class:`View`: from the store once its kind is synced,
from the API server before that (start-up, or a watch that never listed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import httpx
import kr8s
import kr8s.asyncio

from modelcanary import telemetry
from modelcanary.api.names import LABEL_MODEL, model_label
from modelcanary.apierrors import API_ERRORS
from modelcanary.rest import ObjectRef, status_code
from modelcanary.view.served import until_served
from modelcanary.view.store import KINDS, Key, Kind, Owner, Store
from modelcanary.view.stream import watch_events

log = logging.getLogger(__name__)

WATCH_SECONDS: Final = 300
"""The shortest the API server keeps one watch open (the next resumes where it ended);
each asks for between this and twice it, at random, so reconnects do not bunch."""
BACKOFF_MAX_SECONDS: Final = 10.0
MISSING_RETRY_SECONDS: Final = 60.0
PAGE: Final = 500
_NOT_FOUND: Final = 404
_GONE: Final = 410

OnChange = Callable[[set[Owner]], None]
OnKeys = Callable[[Kind, set[Key]], None]
"""Told the keys of every object an event or a LIST may have changed; reads the store."""
_BROKEN: Final[tuple[type[Exception], ...]] = (*API_ERRORS, httpx.HTTPError, ValueError, KeyError)
"""What breaks a watch (a restart, a cut stream, a garbled line): list again after a backoff."""


class _Expired(Exception):
    """The watch's resourceVersion is too old: list again."""


class View:
    """What a pass reads: the store when it can answer, the API server when it cannot.

    ``remember`` takes the API server's answer to one of the operator's own
    writes, so the next pass reads what was written even before the watch's
    echo arrives. :attr:`direct` is a view reading the API server instead
    (its writes' answers still go into the store): what a pass that is about
    to act reads. A direct view is made for one pass and reads each object,
    and each model's list of a kind, at most once: the router's ``ensure`` and
    ``get_weight`` both need the shared Service, and the revisions and the
    router both need the Deployments; asking the API server twice within
    milliseconds told the pass nothing new and was a third of a new object's
    requests (bench-scale).
    """

    def __init__(
        self,
        api: kr8s.asyncio.Api,
        store: Store | None = None,
        *,
        direct: bool = False,
        written: dict[tuple[str, ...], dict[str, Any]] | None = None,
    ) -> None:
        self.api = api
        self.store = store if store is not None else Store()
        self.is_direct = direct
        self.acting = direct
        """A pass acts on what this view says: a direct view, or a pass's view that the
        pass need not read again (:meth:`acting_view`)."""
        self._read_once: dict[tuple[str, ...], asyncio.Future[Any]] = {}
        """A direct view's reads, shared by concurrent readers: ("get", kind, namespace,
        name) or ("list", kind, namespace, model)."""
        self._written = written
        """A pass's view (:meth:`for_pass`): the API server's answers to its writes, by
        ("get", kind, namespace, name), which its direct view starts from."""

    def for_pass(self) -> View:
        """A view for one pass: reads as this one does, and remembers the pass's writes,
        so that its :attr:`direct` view does not read again what the pass just wrote."""
        return View(self.api, self.store, written={})

    def acting_view(self) -> View:
        """This pass's view, for a pass that acts on it without reading the API server
        again (a first revision): readers that otherwise read the API server before a
        write (the replicas router's list of Deployments) read it, with the pass's
        own writes in it."""
        view = View(self.api, self.store, written=self._written)
        view.acting = True
        return view

    @property
    def direct(self) -> View:
        """A new direct view, for one pass: it starts with nothing read but the answers
        to the pass's own writes (a pass's view, :meth:`for_pass`)."""
        view = View(self.api, self.store, direct=True)
        for key, obj in (self._written or {}).items():
            view._read_once[key] = _answered(obj)
        return view

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        store = self.store
        if not self.is_direct:
            if store.synced(kind):
                if store.missing(kind):
                    return None
                found = store.get(kind, namespace, name)
                if found is not None or kind.labelled:
                    return found
            return await api_get(self.api, kind, namespace, name)
        answer: dict[str, Any] | None = await self._once(
            ("get", kind.plural, namespace, name),
            lambda: api_get(self.api, kind, namespace, name),
        )
        return answer

    async def of_model(self, kind: Kind, namespace: str, md_name: str) -> list[dict[str, Any]]:
        model = model_label(md_name)
        selector = {LABEL_MODEL: model}
        if not self.is_direct:
            if self.store.synced(kind):
                return self.store.of_model(kind, namespace, model)
            return await api_list(self.api, kind, namespace, selector)
        found: list[dict[str, Any]] = await self._once(
            ("list", kind.plural, namespace, model),
            lambda: api_list(self.api, kind, namespace, selector),
        )
        return found

    async def _once(self, key: tuple[str, ...], read: Callable[[], Awaitable[Any]]) -> Any:
        task = self._read_once.get(key)
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            # A failed read is not kept: the next reader asks again.
            task = self._read_once[key] = asyncio.ensure_future(read())
        return await asyncio.shield(task)

    def remember(self, kind: Kind, obj: dict[str, Any]) -> None:
        """The API server's answer to one of the operator's own writes."""
        metadata = obj.get("metadata") or {}
        if not metadata.get("name"):
            return
        self.store.upsert(kind, obj)
        namespace, name = str(metadata.get("namespace")), str(metadata["name"])
        if self._written is not None:
            self._written[("get", kind.plural, namespace, name)] = obj
        if not self.is_direct:
            return
        # A later read in this pass gets what was written: the object itself, and
        # the model's list with it in place of what was read (as a LIST now would
        # answer). A list still being read is dropped: the next reader asks again.
        model = (metadata.get("labels") or {}).get(LABEL_MODEL)
        for key, read in list(self._read_once.items()):
            if key[:3] != ("list", kind.plural, namespace):
                continue
            if not read.done() or read.cancelled() or read.exception() is not None:
                del self._read_once[key]
                continue
            others = [o for o in read.result() if (o.get("metadata") or {}).get("name") != name]
            self._read_once[key] = _answered([*others, obj] if key[3] == model else others)
        self._read_once[("get", kind.plural, namespace, name)] = _answered(obj)


def _answered(answer: Any) -> asyncio.Future[Any]:
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done.set_result(answer)
    return done


async def api_get(
    api: kr8s.asyncio.Api, kind: Kind, namespace: str, name: str
) -> dict[str, Any] | None:
    """One GET; None when it does not exist (or its kind is not served)."""
    return await ObjectRef(api, kind.api_version, kind.plural, namespace, name).get()


async def api_list(
    api: kr8s.asyncio.Api, kind: Kind, namespace: str | None, selector: dict[str, str]
) -> list[dict[str, Any]]:
    items, _ = await _list(api, kind, namespace, ",".join(f"{k}={v}" for k, v in selector.items()))
    return items


async def _list(
    api: kr8s.asyncio.Api, kind: Kind, namespace: str | None, selector: str
) -> tuple[list[dict[str, Any]], str | None]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"labelSelector": selector, "limit": PAGE}
    version: str | None = None
    while True:
        async with api.call_api(
            "GET", version=kind.api_version, namespace=namespace, url=kind.plural, params=params
        ) as response:
            page = response.json()
        metadata = page.get("metadata") or {}
        version = version or metadata.get("resourceVersion")
        items.extend(page.get("items") or [])
        if not metadata.get("continue"):
            return items, version
        params = {**params, "continue": metadata["continue"]}


class Watcher:
    """Keeps a :class:`Store` current for ``kinds`` in ``namespaces`` (None: all)."""

    def __init__(
        self,
        api: kr8s.asyncio.Api,
        store: Store,
        on_change: OnChange,
        *,
        namespaces: Iterable[str] | None = None,
        kinds: Iterable[Kind] = KINDS,
        selector: str = LABEL_MODEL,
        on_keys: OnKeys | None = None,
    ) -> None:
        self.api = api
        self.store = store
        self.on_change = on_change
        self.namespaces: list[str | None] = list(namespaces) if namespaces else [None]
        self.kinds = list(kinds)
        self.selector = selector
        self.on_keys = on_keys
        """For watches of objects with no owner label (sharded mode's ModelDeployments):
        ``on_change`` hears only of labelled owners, this of every key touched."""
        self.restarts = 0
        """Watches broken by an error (not the server's timeout) since the start."""
        self._pending = {(kind.kind, ns) for kind in self.kinds for ns in self.namespaces}
        self.ready = asyncio.Event()
        """Set once every kind in every namespace has been listed (or found missing)."""
        if not self._pending:
            self.ready.set()

    async def run(self) -> None:
        """Run every watch until cancelled."""
        await asyncio.gather(*(self._loop(k, ns) for k in self.kinds for ns in self.namespaces))

    def _synced(self, kind: Kind, namespace: str | None) -> None:
        self._pending.discard((kind.kind, namespace))
        if not self._pending:
            self.ready.set()

    def _tell_keys(self, kind: Kind, keys: set[Key]) -> None:
        if self.on_keys is not None and keys:
            try:
                self.on_keys(kind, keys)
            except Exception:  # a dispatcher's bug must not end the watch
                log.exception("telling %s keys %s failed", kind.kind, sorted(keys))

    def _tell(self, owners: set[Owner]) -> None:
        telemetry.VIEW_OBJECTS.set(len(self.store))
        if owners:
            try:
                self.on_change(owners)
            except Exception:  # a waker's bug must not end the watch
                log.exception("waking %s failed", sorted(owners))

    async def _loop(self, kind: Kind, namespace: str | None) -> None:
        backoff = 1.0
        where = f"{kind.kind} in {namespace or 'all namespaces'}"
        while True:
            try:
                items, version = await _list(self.api, kind, namespace, self.selector)
                before = self.store.keys(kind)
                self._tell(self.store.replace(kind, items, namespace=namespace, listed_at=version))
                self._tell_keys(kind, before | self.store.keys(kind))
                self._synced(kind, namespace)
                backoff = 1.0
                while True:
                    version = await self._watch(kind, namespace, version)
            except asyncio.CancelledError:
                raise
            except _Expired:
                log.info("%s: watch expired; listing again", where)
                continue
            except kr8s.ServerError as error:
                if status_code(error) == _GONE:
                    continue  # answered as a status rather than an event: list again
                if status_code(error) == _NOT_FOUND:
                    log.info("%s is not served (CRD not installed); looking again later", where)
                    before = self.store.keys(kind)
                    self._tell(self.store.mark_missing(kind))
                    self._tell_keys(kind, before)
                    self._synced(kind, namespace)
                    await until_served(
                        self.api,
                        kind,
                        watch_seconds=watch_seconds,
                        fallback_seconds=MISSING_RETRY_SECONDS,
                    )
                    continue
                delay = self._broken(kind, where, error, backoff)
            except Exception as error:  # a watch must outlive any failure, a bug included
                delay = self._broken(kind, where, error, backoff)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    def _broken(self, kind: Kind, where: str, error: Exception, backoff: float) -> float:
        self.restarts += 1
        telemetry.WATCH_RESTARTS.inc()
        self.store.mark_stale(kind)
        if isinstance(error, _BROKEN):
            log.warning("%s: watch failed (%s); listing again in %.0f s", where, error, backoff)
        else:
            log.exception("%s: watch failed; listing again in %.0f s", where, backoff)
        return backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    async def _watch(self, kind: Kind, namespace: str | None, version: str | None) -> str | None:
        """One watch request until the server ends it; the last resourceVersion seen."""
        seconds = watch_seconds()
        params: dict[str, Any] = {
            "watch": "true",
            "labelSelector": self.selector,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": seconds,
        }
        if version:
            params["resourceVersion"] = version
        events = watch_events(self.api, kind, namespace=namespace, params=params, seconds=seconds)
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                version = self._event(kind, event) or version
        return version

    def _event(self, kind: Kind, event: dict[str, Any]) -> str | None:
        kind_of_event, obj = event.get("type"), event.get("object") or {}
        if kind_of_event == "ERROR":
            if obj.get("code") == _GONE:
                raise _Expired
            raise kr8s.ServerError(str(obj.get("message", obj)))
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind_of_event in ("ADDED", "MODIFIED"):
            self._tell(self.store.upsert(kind, obj))
        elif kind_of_event == "DELETED":
            self._tell(self.store.remove(kind, obj))
        metadata = obj.get("metadata") or {}
        if kind_of_event in ("ADDED", "MODIFIED", "DELETED") and metadata.get("name"):
            self._tell_keys(
                kind, {(kind.kind, str(metadata.get("namespace") or ""), str(metadata["name"]))}
            )
        return str(version) if version else None


def watch_seconds() -> int:
    """How long to ask for one watch: 5 to 10 minutes, as client-go's reflectors do."""
    return int(WATCH_SECONDS * random.uniform(1.0, 2.0))  # noqa: S311 - jitter, not a secret


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel a watcher's task and wait for it to end."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
