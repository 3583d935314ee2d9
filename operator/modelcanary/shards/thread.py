"""A replica's Lease rounds on a thread, an event loop and an API client of their own.

On the operator's event loop, a round waited for everything else the loop had
to do. With 1,000 ModelDeployments created at once (sharded mode, one
replica, two cores) a round's LIST came back and its renewal went out 5 s
later, past the renew deadline: the replica's only shard lapsed and every
loop stopped, more than once in the ramp. Nobody else wanted the shard; with
three replicas it would have moved to one that was idle, and back. Flagger's
users saw the same kind of thing as leader-election crash-loops at about 50
canaries (flagger#638).

So the rounds run here: the thread gets the interpreter at the latest every
switch interval (5 ms) however busy the main loop is, and its requests go
through a client of their own, not queued behind the passes' in the main
client's connection pool and rate limit (client-go's leader election also has
a client of its own). A round is a LIST and a write per shard due, every
``retry_period``: the API server is not flooded by it.

What crosses between the threads:

* :meth:`ShardManager.owns`, called by the main loop before every step, reads
  the manager's holdings, an immutable value the thread replaces whole, and
  the monotonic clock, which both threads share;
* the announcements of shards gained and lost run on the main loop (the
  dispatcher starts and stops loops there), and the thread waits for each to
  finish, as the in-loop rounds did: a shard is written free only after its
  loops have ended.

The stop keeps the runtime's order: :meth:`stop_rounds` (no new shards),
then the caller ends every loop, then :meth:`release` frees the Leases from
the thread and waits for it to end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

from modelcanary.shards.leases import LeaseStore, ShardManager

log = logging.getLogger(__name__)

JOIN_SECONDS = 10.0
"""How long :meth:`LeaseThread.release` waits for the thread to end after freeing."""


class LeaseThread:
    """Runs ``manager``'s rounds and its release on a thread of their own.

    ``make_store`` is called on the thread's event loop and gives the Lease
    store its rounds use (in the operator: over a kr8s client built there, so
    it belongs to that loop).
    """

    def __init__(
        self, manager: ShardManager, make_store: Callable[[], Awaitable[LeaseStore]]
    ) -> None:
        self.manager = manager
        self._make_store = make_store
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rounds: asyncio.Task[None] | None = None
        self._release_asked: asyncio.Event | None = None
        self._started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._rounds_ended: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._ended: concurrent.futures.Future[None] = concurrent.futures.Future()

    def start(self) -> None:
        """Start the thread; the manager's announcements then run on the calling loop."""
        main_loop = asyncio.get_running_loop()
        announce = self.manager.on_change

        async def on_main_loop(gained: frozenset[int], lost: frozenset[int]) -> None:
            if announce is None:
                return

            async def announced() -> None:
                await announce(gained, lost)

            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(announced(), main_loop))

        self.manager.on_change = on_main_loop
        self._thread = threading.Thread(
            target=self._main, name="modelcanary-shard-leases", daemon=True
        )
        self._thread.start()

    async def stop_rounds(self) -> None:
        """No more rounds (so no new shards); returns once the current one has ended."""
        if not await self._wait(self._started):
            return
        assert self._loop is not None
        assert self._rounds is not None
        with contextlib.suppress(RuntimeError):  # the thread's loop has already closed
            self._loop.call_soon_threadsafe(self._rounds.cancel)
        await self._wait(self._rounds_ended)

    async def release(self) -> None:
        """Free every Lease this replica holds (from the thread), then let the thread end."""
        await self.stop_rounds()  # so the thread gets to the release; nothing if done already
        if self._loop is not None and self._release_asked is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._release_asked.set)
        await self._wait(self._ended)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, JOIN_SECONDS)

    # ------------------------------------------------------------------ the thread

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as error:  # ends the thread: said once, and to every waiter
            log.exception("shard leases: the Lease thread ended")
            for future in (self._started, self._rounds_ended, self._ended):
                if not future.done():
                    future.set_exception(error)
        else:
            self._ended.set_result(None)

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._release_asked = asyncio.Event()
        self.manager.store = await self._make_store()
        self._rounds = asyncio.create_task(self.manager.run(), name="modelcanary-shard-rounds")
        self._started.set_result(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._rounds
        self._rounds_ended.set_result(None)
        await self._release_asked.wait()
        await self.manager.release()

    @staticmethod
    async def _wait(future: concurrent.futures.Future[None]) -> bool:
        """Wait for a step of the thread; False if the thread ended in an error instead."""
        try:
            await asyncio.wrap_future(future)
        except Exception:  # logged by the thread
            return False
        return True
