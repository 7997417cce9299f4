"""Config reloads: on request (SIGHUP, D-Bus Reload), when the file or a drop-in changes on disk,
and when the remote config brings a new document (`remote_watch.py` hands it over).

A reload that fails keeps the config in force and says why (`config-rejected`); one that
succeeds says what it changes for running pilots (`config-loaded`): a changed spec lets running
pilots finish their work, changed limits are applied to them in place, a removed pool's pilots
are stopped by the next decision.

Nothing in the file ever costs the running host its pilots:

- the file is read bounded (`read_limited`): a FIFO or /dev/zero in its place is a rejection,
  not a stuck watch;
- a file that was loaded and has vanished (a config tool replacing it, an admin moving it) is a
  rejection too, never a fall back to the built-in dummy pool: the defaults are for a host that
  never had a file, and the rule lives here, on what any loader returns, so no loader repeats it;
- a loader that fails with anything but `ConfigError` (a bug) is a rejection with the traceback
  logged, not the death of this root task;
- each rejection is said once per change of the file, and once per explicit request;
- a reload that starts naming a remote URL puts it in force only with its document: fetched
  then, or the reload is refused and the config in force stays (never a host without pools
  while the new server is slow or down).

A remote document goes through the same `reload`, with the same events and the same rules for
running pilots; only after its config is applied is it the one in force (and kept on disk).

Writes to the context: `config`, `stop_pilots_on_exit`, `last_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from planctond.config.dropins import layers_digest
from planctond.config.errors import ConfigError, Problem
from planctond.config.model import Config, PoolConfig
from planctond.config.remote import RemoteDocument
from planctond.engine.spec import resource_limits
from planctond.supervisor.api import ControlError
from planctond.supervisor.context import Context
from planctond.supervisor.events import EventKind
from planctond.supervisor.ports import Runner
from planctond.supervisor.remote_watch import RemoteWatch

log = logging.getLogger(__name__)


class Loader(Protocol):
    """The config at a path (with its drop-ins), laid over a remote document when given one.
    Called with the path alone when there is no remote document to use."""

    def __call__(self, path: str | None, document: RemoteDocument | None = ..., /) -> Config: ...


def describe_changes(old: Config, new: Config) -> list[str]:
    """What a reload from `old` to `new` means for the pilots, in words for the admin."""
    changes: list[str] = []
    for pool in new.pools:
        before = old.pool(pool.name)
        if before is None:
            changes.append(f"pool {pool.name} added")
            continue
        fields = sorted(k for k, v in pool.spec_fields().items() if before.spec_fields()[k] != v)
        if fields:
            changes.append(
                f"pool {pool.name}: {', '.join(fields)} changed; running pilots finish their work, new pilots use the new spec"
            )
        if resource_limits(pool) != resource_limits(before):
            changes.append(
                f"pool {pool.name}: cpus/memory/swap changed; applied to running pilots in place"
            )
    for pool in old.pools:
        if new.pool(pool.name) is None:
            changes.append(f"pool {pool.name} removed; its pilots are stopped")
    if old.state_dir != new.state_dir:
        changes.append("state_dir changed; takes effect at the next restart")
    if old.owner.cgroup != new.owner.cgroup:
        where = new.owner.cgroup or "the whole host"
        changes.append(f"owner.cgroup changed; the owner's CPU use is read from {where} now")
    if old.docker.url != new.docker.url or old.docker.cgroup_parent != new.docker.cgroup_parent:
        changes.append("docker.url/cgroup_parent changed; takes effect at the next restart")
    return changes


class ConfigWatch:
    def __init__(
        self,
        ctx: Context,
        loader: Loader,
        runner: Runner,
        update_resources: Callable[[PoolConfig], Awaitable[None]],
        owner_scope_changed: Callable[[], None],
    ) -> None:
        self._ctx = ctx
        self._loader = loader
        self._runner = runner
        self._update_resources = update_resources
        self._owner_scope_changed = owner_scope_changed
        self._digest = layers_digest(ctx.config_path)
        self._last_crash = ""
        self.remote: RemoteWatch | None = None  # set by the supervisor when remotes are wired
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        """Root task: reload when the file's or a drop-in's content changes (checked every
        `config_check`)."""
        ctx = self._ctx
        while not ctx.shutdown.is_set():
            await ctx.sleep(ctx.config.config_check)
            if ctx.shutdown.is_set():
                return
            digest = await self._runner.call(layers_digest, ctx.config_path)
            if digest != self._digest:
                log.info("%s changed; reloading", ctx.config_path)
                # A bad file was said as config-rejected; the last good config stays.
                with contextlib.suppress(ControlError):
                    await self.reload()

    async def reload(self, candidate: RemoteDocument | None = None) -> None:
        """Raises ControlError (the last good config stays) when the new one is invalid.
        `candidate`: a remote document just fetched, to lay under the host's files.

        One reload at a time: a local one running beside a remote one could otherwise put back
        the remote document the other just replaced, and the next check, answered 304, would
        never notice."""
        async with self._lock:
            await self._reload(candidate)

    async def _reload(self, candidate: RemoteDocument | None) -> None:
        ctx = self._ctx
        remote = self.remote
        in_force = ctx.config.remote
        if candidate is not None and (in_force is None or in_force.url != candidate.url):
            return  # fetched before a reload changed the URL: not this host's remote any more
        try:
            # Taken before reading: a change made while loading is noticed at the next check.
            self._digest = await self._runner.call(layers_digest, ctx.config_path)
            document = candidate or (remote.accepted if remote is not None else None)
            new = await self._load(document)
            self._refuse_gone_file(new)
            if remote is not None and candidate is None and self._new_url(new, document):
                assert new.remote is not None
                document = await remote.fetch_now(new.remote)
                new = await self._load(document)
        except ConfigError as exc:
            self._reject(str(exc))
            raise ControlError(str(exc)) from exc
        except Exception as exc:
            message = self._loader_failed(exc)
            self._reject(message)
            raise ControlError(message) from exc
        self._last_crash = ""
        await self._apply(new)
        if remote is not None:
            url = new.remote.url if new.remote is not None else None
            await remote.in_force(document if document is not None and document.url == url else None)  # fmt: skip
            if candidate is None:
                remote.wake()  # the host's files may have changed the remote's settings

    async def _load(self, document: RemoteDocument | None) -> Config:
        path = self._ctx.config_path
        if document is None:
            return await self._runner.call(self._loader, path)
        return await self._runner.call(self._loader, path, document)

    def _new_url(self, new: Config, document: RemoteDocument | None) -> bool:
        """The host's files name a remote URL that was not in force and has no document."""
        old = self._ctx.config.remote
        if new.remote is None or (old is not None and old.url == new.remote.url):
            return False
        return document is None or document.url != new.remote.url

    def _refuse_gone_file(self, new: Config) -> None:
        """A loader gives the built-in defaults (`source` None) for a missing file; that is
        right at a first start without one, wrong once a file was loaded: it has gone."""
        old = self._ctx.config.source
        if new.source is None and old is not None:
            raise ConfigError(
                [
                    Problem(
                        old, "", None, "the file is gone (moved or deleted); loaded when it is back"
                    )
                ]
            )

    def _loader_failed(self, exc: Exception) -> str:
        """A loader bug must not stop the daemon: a rejection, its traceback logged once."""
        message = f"{self._ctx.config_path}: cannot load (a bug: {type(exc).__name__}: {exc})"
        if message != self._last_crash:
            self._last_crash = message
            log.error("the config loader failed", exc_info=exc)
        return message

    def _reject(self, reason: str) -> None:
        ctx = self._ctx
        ctx.last_error = reason
        ctx.emit(
            EventKind.CONFIG_REJECTED,
            f"config rejected, keeping the last good one: {reason}",
            reason=reason,
        )

    async def _apply(self, new: Config) -> None:
        ctx = self._ctx
        old, ctx.config = ctx.config, new
        if not ctx.shutdown.is_set():
            ctx.stop_pilots_on_exit = new.docker.stop_pilots_on_exit
        for w in new.warnings:
            log.warning("%s", w)
        for pool in new.pools:
            before = old.pool(pool.name)
            if before is not None and resource_limits(pool) != resource_limits(before):
                await self._update_resources(pool)
        if new.owner.cgroup != old.owner.cgroup:
            self._owner_scope_changed()
        changes = describe_changes(old, new)
        summary = "; ".join(changes) if changes else "no change to pools"
        ctx.last_error = ""
        ctx.emit(
            EventKind.CONFIG_LOADED, f"config loaded from {new.source or '(defaults)'}: {summary}"
        )
        ctx.kick()
