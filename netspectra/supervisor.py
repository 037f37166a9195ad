"""Runs the roles of one process as supervised asyncio tasks.

Each role offers ``serve(stop, ready)`` and sets ``ready`` once it accepts work. Roles start
against the data flow — api, then engine, then probe — each only after the one before said
ready, so nothing is published before its consumer listens (on the embedded bus such a message
would be gone). A role neither ready nor waiting for a service that is down (see below) for
``ready_timeout_s`` is hung: the start-up ends with the reason.
What a role raises decides what happens next:

* a permanent fault (a :class:`~netspectra.errors.ConfigError` or
  :class:`~netspectra.errors.PermanentError`, or an OS error no retry can cure: a port taken, an
  address not on this host, a file or directory missing or in the way, permission denied) ends
  the process at once, with one line saying why (exit 2 for a config error, else 1);
* a service that is not there (a :class:`~netspectra.errors.BusError` or
  :class:`~netspectra.errors.StorageError`: NATS or the store down) is one warning line and a
  retry with backoff, for as long as it takes; it does not count as a crash;
* anything else is a crash: logged with its traceback and restarted with exponential backoff;
  too many crashes inside a window end the process with a non-zero code and the reason.

Shutdown goes in data order — probe first, so the engine can drain what
was published and write its final snapshot, then the api — each within a grace period, after
which the role is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from netspectra.errors import BusError, ConfigError, PermanentError, StorageError
from netspectra.logs import current_role

logger = logging.getLogger(__name__)


class Role(Protocol):
    """One part of the pipeline; sets ``ready`` when it accepts work, returns when ``stop`` is set
    (or when its work is done). A restarted role gets the same, already set, ``ready``."""

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event) -> None: ...


@dataclass(frozen=True)
class RestartPolicy:
    """How often a crashing role is restarted before the process gives up."""

    max_failures: int = 5
    window_s: float = 60.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 15.0


#: OS errors a restart cannot cure.
_PERMANENT_ERRNOS = frozenset(
    {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES, errno.EPERM}
    | {errno.ENOENT, errno.ENOTDIR, errno.EISDIR}
)


def fault_kind(error: BaseException) -> str:
    """``"permanent"``, ``"unavailable"`` (a service is down: retry) or ``"crash"`` (restart, counted)."""
    if isinstance(error, ConfigError | PermanentError):
        return "permanent"
    if isinstance(error, OSError) and error.errno in _PERMANENT_ERRNOS:
        return "permanent"
    if isinstance(error, BusError | StorageError):
        return "unavailable"
    return "crash"


class RoleFailedError(Exception):
    """A role failed more often than the restart policy allows."""


@dataclass
class _Slot:
    name: str
    role: Role
    stop: asyncio.Event
    ready: asyncio.Event
    task: asyncio.Task[None] | None = None
    unavailable: bool = False  # a service it needs was down since the supervisor last looked


class Supervisor:
    """Given roles in data order: starts them in reverse, each once the next is ready; stops in data order."""

    def __init__(
        self,
        roles: Sequence[tuple[str, Role]],
        *,
        policy: RestartPolicy | None = None,
        grace_s: float = 30.0,
        ready_timeout_s: float = 60.0,
    ) -> None:
        self._slots = [_Slot(name, role, asyncio.Event(), asyncio.Event()) for name, role in roles]
        self._policy = policy or RestartPolicy()
        self._grace_s = grace_s
        self._ready_timeout_s = ready_timeout_s
        self.failure: str | None = None
        self.exit_code = 1

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until ``stop`` is set, every role finished, or one failed for good; return the exit code."""
        fatal = asyncio.Event()
        stop_wait: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        fatal_wait: asyncio.Future[Any] = asyncio.ensure_future(fatal.wait())
        all_done: asyncio.Future[Any] | None = None
        try:
            try:
                if await self._start(fatal, {stop_wait, fatal_wait}):
                    all_done = asyncio.gather(*(s.task for s in self._slots if s.task))
                    await asyncio.wait({all_done, stop_wait, fatal_wait}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop_wait.cancel()
                fatal_wait.cancel()
            await self._shutdown()
        except asyncio.CancelledError:
            # Forced exit (a second signal): the roles must be gone before shared resources close.
            tasks = [slot.task for slot in self._slots if slot.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            if all_done is not None:
                all_done.cancel()
        if self.failure:
            logger.error("Stopping: %s", self.failure)
            return self.exit_code
        return 0

    async def _start(self, fatal: asyncio.Event, interrupts: set[asyncio.Future[Any]]) -> bool:
        """Start the roles consumers first, each after the previous is ready; False to stop instead.

        A role whose serve() returned without saying ready (its work was done) does not hold up
        the others; a stop request or a role failing for good ends the start-up early.
        """
        for slot in reversed(self._slots):
            slot.task = asyncio.create_task(self._keep_alive(slot, fatal), name=f"role:{slot.name}")
            ready_wait = asyncio.ensure_future(slot.ready.wait())
            try:
                while True:
                    done, _ = await asyncio.wait(
                        {ready_wait, slot.task, *interrupts},
                        timeout=self._ready_timeout_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    if done or not slot.unavailable:
                        break
                    slot.unavailable = False  # waiting for NATS or a store, and saying so: not hung
            finally:
                ready_wait.cancel()
            if fatal.is_set() or any(future in done for future in interrupts):
                return False
            if not done:
                self.failure = (
                    f"role {slot.name} was not ready within {self._ready_timeout_s:.0f} s "
                    "(see its log lines above); the roles that feed it were not started"
                )
                return False
            logger.debug("Role %s is %s", slot.name, "ready" if slot.ready.is_set() else "done")
        return True

    async def _shutdown(self) -> None:
        for slot in self._slots:
            slot.stop.set()
            if slot.task is None or slot.task.done():
                continue
            logger.info("Stopping %s", slot.name)
            done, _ = await asyncio.wait({slot.task}, timeout=self._grace_s)
            if not done:
                logger.warning("%s did not stop within %.0f s; cancelling it", slot.name, self._grace_s)
                slot.task.cancel()
                await asyncio.gather(slot.task, return_exceptions=True)

    async def _keep_alive(self, slot: _Slot, fatal: asyncio.Event) -> None:
        current_role.set(slot.name)
        failures: list[float] = []
        backoff = self._policy.backoff_initial_s
        while not slot.stop.is_set():
            try:
                await slot.role.serve(slot.stop, slot.ready)
                return
            except asyncio.CancelledError:
                raise
            except Exception as error:
                kind = fault_kind(error)
                debug = logger.isEnabledFor(logging.DEBUG)
                if kind == "permanent":
                    # the one line is run()'s "Stopping: role X cannot run: why"
                    logger.debug("Role %s cannot run", slot.name, exc_info=True)
                    self.failure = f"role {slot.name} cannot run: {error}"
                    self.exit_code = 2 if isinstance(error, ConfigError) else 1
                    fatal.set()
                    return
                if kind == "unavailable":
                    slot.unavailable = True
                    logger.warning(
                        "Role %s waits: %s (retrying in %.1f s)", slot.name, error, backoff, exc_info=debug
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(slot.stop.wait(), timeout=backoff)
                    backoff = min(backoff * 2, self._policy.backoff_max_s)
                    continue
                now = time.monotonic()
                failures = [t for t in failures if now - t < self._policy.window_s] + [now]
                logger.exception(
                    "Role %s crashed (%d failure(s) in %.0f s)",
                    slot.name,
                    len(failures),
                    self._policy.window_s,
                )
                if len(failures) >= self._policy.max_failures:
                    self.failure = (
                        f"role {slot.name} failed {len(failures)} times within "
                        f"{self._policy.window_s:.0f} s; see the tracebacks above"
                    )
                    fatal.set()
                    return
            logger.info("Restarting %s in %.1f s", slot.name, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slot.stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, self._policy.backoff_max_s)
