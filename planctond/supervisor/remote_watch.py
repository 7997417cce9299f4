"""Root task: check the site's remote config every `remote.interval` (jittered) and hand a new
document to the config watch, which applies it exactly like a local reload.

A bad or unreachable remote can never hurt the host:

- the fetch runs on the runner's threads with its own timeout and size cap: the loop, the ticks
  and the D-Bus replies never wait for the server;
- a request carries the validators of the last document received, so an unchanged config costs
  a 304 and nothing else; a 200 with the text already in force or already refused (a server
  without validators) is not parsed again either;
- whatever fails (server down or slow, TLS, HTTP errors, a response that is no config, a
  document the loader refuses) leaves the config in force alone; it is logged once when it
  starts or changes, once when it ends, never per retry, and `status_extra` shows it in
  `planctonctl status` and D-Bus Status();
- a document in force is kept on disk (`store`), so a restart with the server down runs it.

The config watch applies documents (`reload(candidate)`). Writes to the context only
`last_error`, to clear what its own refused document put there once the server serves a good
one again (a document equal to the one in force needs no reload that would clear it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from planctond import constants as C
from planctond.config.errors import ConfigError, Problem
from planctond.config.model import RemoteConfig
from planctond.config.remote import RemoteDocument
from planctond.remote.fetch import FetchError
from planctond.supervisor.api import ControlError
from planctond.supervisor.context import Context
from planctond.supervisor.ports import Runner

log = logging.getLogger(__name__)

# (settings, last document received) -> a new document, or None for "not modified" (304).
Fetch = Callable[[RemoteConfig, RemoteDocument | None], RemoteDocument | None]


@dataclass
class RemotePort:
    """What the composition root gives the supervisor for remote configs."""

    fetch: Fetch  # blocking; raises FetchError
    save: Callable[[RemoteDocument], None]  # the on-disk copy; raises OSError
    document: RemoteDocument | None = None  # the one in force at start (from the cache)


def next_delay(interval: float, rng: random.Random) -> float:
    """The wait before the next check: the interval give or take `REMOTE_JITTER` of it."""
    return interval * rng.uniform(1 - C.REMOTE_JITTER, 1 + C.REMOTE_JITTER)


def first_delay(interval: float, rng: random.Random) -> float:
    """The wait before the first check after a start, spread over `REMOTE_JITTER` of it."""
    return interval * rng.uniform(0, C.REMOTE_JITTER)


def _clock(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else "-"


class RemoteWatch:
    def __init__(
        self,
        ctx: Context,
        runner: Runner,
        port: RemotePort,
        reload: Callable[[RemoteDocument], Awaitable[None]],
        rng: random.Random | None = None,
    ) -> None:
        self._ctx = ctx
        self._runner = runner
        self._port = port
        self._reload = reload
        self._rng = rng or random.Random()
        self.accepted = port.document  # the document in the config in force
        self._seen = port.document  # the last one received: its validators go out next time
        self._refused = ""  # digest of the last document the loader refused
        self._refusal = ""  # what that refusal put in the context's last_error
        self._problem = ""  # what is wrong now, "" when all is well; said once
        self._since = 0.0  # wall time the problem started
        self._failures = 0
        self._checked = 0.0  # wall time of the last answer from the server
        self._saving_said = ""
        self._wake = asyncio.Event()

    # --- the root task ------------------------------------------------------------------------
    async def run(self) -> None:
        ctx = self._ctx
        first = True
        while not ctx.shutdown.is_set():
            settings = ctx.config.remote
            if settings is None:
                await self._sleep(None)  # woken by a reload that may bring `remote:`
                continue
            if first and self.accepted is None:
                delay = 0.0  # nothing of the remote in force: ask at once
            elif first:
                delay = first_delay(settings.interval, self._rng)
            else:
                interval = settings.interval
                if self.accepted is None:
                    interval = min(interval, C.REMOTE_PENDING_RETRY)
                delay = next_delay(interval, self._rng)
            first = False
            await self._sleep(delay)
            if not ctx.shutdown.is_set() and ctx.config.remote is not None:
                await self.check()

    def wake(self) -> None:
        """Check now (a reload was asked for): a refused document gets another chance, since
        the host's own files, merged with it, may have changed."""
        if self._refused and self._seen is not None and self._seen.digest == self._refused:
            self._seen = self.accepted
        self._refused = ""
        self._wake.set()

    async def _sleep(self, seconds: float | None) -> None:
        waits = [
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._ctx.shutdown.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            self._wake.clear()

    async def check(self) -> None:
        """One conditional fetch and, when it brings a new document, its reload."""
        settings = self._ctx.config.remote
        if settings is None:
            return
        try:
            document = await self._runner.call(self._port.fetch, settings, self._seen)
        except FetchError as exc:
            self._failed(settings, str(exc))
            return
        except Exception as exc:  # a bug met by what a server sent: a failed check, not the end
            if not self._problem.startswith("internal error"):
                log.error("remote config %s: the fetch failed", settings.url, exc_info=exc)
            self._failed(settings, f"internal error (please report it): {type(exc).__name__}: {exc}")  # fmt: skip
            return
        self._checked = self._ctx.clock.wall()
        if document is None:
            log.debug("remote config %s: not modified", settings.url)
            if not (
                self._refused and self._seen is not None and self._seen.digest == self._refused
            ):
                self._fine(settings)  # (still the refused document: still a problem)
            return
        self._seen = document
        if self.accepted is not None and document.digest == self.accepted.digest:
            await self.in_force(document)  # the same text (new validators): nothing to load
            self._fine(settings)
            return
        if document.digest == self._refused:
            return  # refused already, and said so
        try:
            await self._reload(document)
        except ControlError as exc:  # config-rejected was emitted, the last good config stays
            self._refused, self._refusal = document.digest, str(exc)
            self._failed(settings, f"the document fetched at {_clock(document.fetched)} was refused: {exc}")  # fmt: skip
            return
        self._fine(settings)

    async def fetch_now(self, settings: RemoteConfig) -> RemoteDocument:
        """A document of a URL the host's files just started to name (a reload must not put a
        remote in force before its document is here); ConfigError when it cannot be had."""
        try:
            document = await self._runner.call(self._port.fetch, settings, None)
        except FetchError as exc:
            problem = f"the remote config cannot be fetched: {exc}"
            raise ConfigError([Problem(settings.url, "", None, problem)]) from None
        assert document is not None  # no validators were sent: never "not modified"
        self._seen = document
        return document

    async def in_force(self, document: RemoteDocument | None) -> None:
        """The config watch applied a config made with `document` (None: without a remote)."""
        new = document is not None and document != self.accepted
        self.accepted = document
        if document is None or not new:
            return
        try:
            await self._runner.call(self._port.save, document)
        except OSError as exc:
            message = f"cannot keep the remote config on disk ({exc}): a restart while the server is down will wait for it"  # fmt: skip
            if message != self._saving_said:
                self._saving_said = message
                log.error("%s", message)

    # --- health ------------------------------------------------------------------------------
    def _failed(self, settings: RemoteConfig, reason: str) -> None:
        self._failures += 1
        if reason != self._problem:
            if not self._problem:
                self._since = self._ctx.clock.wall()
            self._problem = reason
            log.warning("remote config %s: %s; %s", settings.url, reason, self._in_force())

    def _fine(self, settings: RemoteConfig) -> None:
        if self._refusal and self._ctx.last_error == self._refusal:
            self._ctx.last_error = ""
        self._refusal = ""
        if self._problem:
            log.info("remote config %s: answering again after %d failed checks", settings.url, self._failures)  # fmt: skip
        self._problem, self._failures, self._since = "", 0, 0.0

    def _in_force(self) -> str:
        if self.accepted is None:
            return "no document of it in force yet: no pilots until one is fetched"
        return f"keeping the document fetched at {_clock(self.accepted.fetched)}"

    def status_extra(self) -> dict[str, str]:
        """`remote` for Status()'s extra: the source, its health and what is in force."""
        settings = self._ctx.config.remote
        if settings is None:
            return {}
        if self._problem:
            health = f"failing since {_clock(self._since)} ({self._failures} checks): {self._problem}"  # fmt: skip
        elif self._checked:
            health = f"ok, last answer {_clock(self._checked)}"
        else:
            health = "not checked yet"
        return {"remote": f"{settings.url}: {health}; {self._in_force()}"}
