"""docker-py blocks; asyncio must not. Every engine call runs in a small thread pool of its own,
and the event stream is pumped by one of those threads into the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from planctond.engine.port import ContainerEvent, EventStream

log = logging.getLogger(__name__)
T = TypeVar("T")

# Stops and starts of a whole pool can be in flight at once; 16 keeps a burst from queueing
# behind a slow call without letting a stuck engine pile up threads.
THREADS = 16


class ThreadRunner:
    def __init__(self, threads: int = THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="docker")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def follow(self, stream: EventStream) -> AsyncIterator[ContainerEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[ContainerEvent | None] = asyncio.Queue()

        def pump() -> None:
            try:
                for ev in stream:
                    loop.call_soon_threadsafe(queue.put_nowait, ev)
            except Exception as exc:
                log.debug("event stream ended: %s", exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        fut = loop.run_in_executor(self._pool, pump)
        try:
            while (ev := await queue.get()) is not None:
                yield ev
        finally:
            with contextlib.suppress(Exception):
                stream.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(fut, 5)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
