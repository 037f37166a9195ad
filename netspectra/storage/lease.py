"""One live incarnation per engine id and writer group in a store, checked across hosts.

Rows carry ``<engine_id>@<incarnation>``, so two engines started under one engine id would not
overwrite each other any more, but they would still count one stream twice under one name, and
an operator could not tell them apart. So each writer holds a lease on (engine id, group) in the
store itself (``engine_leases``), the one place every host shares: a heartbeat row every
:data:`HEARTBEAT_S` seconds, a Released row at an orderly stop. A writer refuses to start while
another incarnation's heartbeat is younger than :data:`LEASE_TIMEOUT_S` (in the store's clock,
so hosts' clocks need not agree), unless that incarnation used the very spool directory this
writer now holds locked: then it was this engine's own previous process, killed, and the new
one takes over at once.

ClickHouse has no transactions, so two writers starting in the same instant could both see no
holder; each re-reads after writing its heartbeat and stops if any other live claimant shows up
then. In that race both may stop (and be started again), but two never both keep writing.

**A lease can lapse.** While the store is away (or this process is stopped, or cut off) no
heartbeat lands, and after :data:`LEASE_TIMEOUT_S` another engine may claim the id. So a holder
whose last heartbeat that landed is nearly that old (:data:`HELD_FOR_S`, by our monotonic clock:
the store's whole seconds can run ahead of it) no longer counts as holding:
before its next insert or heartbeat it claims again, and if another incarnation took over
meanwhile that claim raises EngineIdInUseError with :attr:`EngineLease.lost` set: the writer
stops writing and the process stops with that error (its snapshots stay in its spool), rather
than two engines writing under one id.

**And a holder looks.** Timing alone trusts two clocks to agree on when a lease lapsed. So each
heartbeat is followed by a read of the lease rows: a live incarnation with another spool that was
not among the rows when this writer claimed has claimed since, so it judged our lease lapsed (its
view is the store's, which decides): this writer yields as above (``lost``, a Released row, the
error). The newcomer does not yield in turn: our incarnation was among the rows it saw when it
claimed. Between a wrong takeover and our next heartbeat at most :data:`HEARTBEAT_S` of snapshots
land beside the newcomer's, under our own incarnation's EngineId.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

from netspectra.errors import EngineIdInUseError
from netspectra.storage import sql
from netspectra.storage.rows import as_arrow
from netspectra.storage.sql import SqlBackend

logger = logging.getLogger(__name__)

#: Seconds between heartbeats, and the age after which a silent holder counts as gone.
HEARTBEAT_S = 5.0
LEASE_TIMEOUT_S = 20.0
#: How long after its last heartbeat landed a holder still counts itself as holding: a heartbeat
#: short of the timeout. The store judges a lease's age in whole seconds of its own clock from a
#: Heartbeat truncated to the second, so it may call the lease lapsed up to ~2 s before our
#: monotonic clock reaches LEASE_TIMEOUT_S; a holder resumed in that window wrote on without
#: claiming again, beside the engine that had just taken the id (a CI run of
#: test_engine_restart.py: SIGSTOP for 19.6 s, and both engines kept writing for 60 s).
HELD_FOR_S = LEASE_TIMEOUT_S - HEARTBEAT_S


@dataclass(frozen=True, slots=True)
class LeaseRow:
    incarnation: str
    holder: str
    host: str
    pid: int
    heartbeat: int
    released: bool


class EngineLease:
    """The lease of one writer (engine id, group) in one store; see the module docstring."""

    def __init__(
        self,
        backend: SqlBackend,
        *,
        engine_id: str,
        writer: str,
        incarnation: str,
        holder: str,
        store: str,
    ) -> None:
        self._backend = backend
        self.engine_id = engine_id
        self.writer = writer
        self.incarnation = incarnation
        self.holder = holder
        self.store = store
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.claimed = False
        #: We held this lease and another incarnation took it while our heartbeats did not land.
        self.lost = False
        self._was_claimed = False
        #: The incarnations with lease rows when we claimed: older than our claim, never a newcomer.
        self._known_at_claim: frozenset[str] = frozenset()
        self._last_landed = 0.0  # time.monotonic() of our last heartbeat the store took
        self._skew = 0  # store clock minus ours, in seconds

    async def _rows(self) -> tuple[int, list[LeaseRow]]:
        (now,) = (await self._backend.select(sql.STORE_NOW))[0]
        rows = await self._backend.select(
            sql.LEASE_HOLDERS, {"engine": self.engine_id, "writer": self.writer}
        )
        return int(now), [
            LeaseRow(str(inc), str(holder), str(host), int(pid), int(beat), bool(int(released)))
            for inc, holder, host, pid, beat, released in rows
        ]

    def _live_others(self, now: int, rows: list[LeaseRow]) -> list[LeaseRow]:
        return [
            row
            for row in rows
            if row.incarnation != self.incarnation
            and not row.released
            and now - row.heartbeat < LEASE_TIMEOUT_S
        ]

    def _refuse(self, now: int, other: LeaseRow) -> EngineIdInUseError:
        age = max(0, now - other.heartbeat)
        wait = max(1, int(LEASE_TIMEOUT_S) - age)
        return EngineIdInUseError(
            f"engine id {self.engine_id!r} already writes {self.writer!r} to {self.store}: incarnation "
            f"{other.incarnation} on host {other.host} (pid {other.pid}), last heartbeat {age} s ago. "
            "Two engines under one id would count under one name; give each engine its own "
            f"engine.engine_id, or, if that engine is gone, start again in {wait} s"
        )

    @property
    def held(self) -> bool:
        """Claimed, and our last heartbeat landed recently enough that nobody else can have claimed."""
        return self.claimed and time.monotonic() - self._last_landed < HELD_FOR_S

    async def ensure_held(self) -> None:
        """Claim again if the lease may have lapsed (see the module docstring); raises as :meth:`claim`."""
        if not self.held:
            self.claimed = False
            await self.claim()

    async def claim(self) -> None:
        """Take the lease or raise EngineIdInUseError naming the live holder; StorageError if unreachable."""
        now, rows = await self._rows()
        self._skew = now - int(time.time())
        for other in self._live_others(now, rows):
            if other.holder != self.holder:
                if self._was_claimed:
                    self.lost = True
                    logger.error(
                        "Engine id %r (%s): our lease lapsed while no heartbeat reached the store and "
                        "incarnation %s (pid %d on %s) took it; this engine stops writing",
                        self.engine_id,
                        self.writer,
                        other.incarnation,
                        other.pid,
                        other.host,
                    )
                raise self._refuse(now, other)
            logger.info(
                "Engine id %r (%s): incarnation %s used this spool and is gone (pid %d on %s); taking over",
                self.engine_id,
                self.writer,
                other.incarnation,
                other.pid,
                other.host,
            )
        await self._beat(released=False)
        now, rows = await self._rows()
        for rival in self._live_others(now, rows):
            if rival.holder != self.holder:  # started in the same instant: neither keeps it
                await self._beat(released=True)
                raise self._refuse(now, rival)
        self._known_at_claim = frozenset(row.incarnation for row in rows)
        self.claimed = True
        self._was_claimed = True
        logger.info(
            "Engine id %r writes %s to %s as incarnation %s",
            self.engine_id,
            self.writer,
            self.store,
            self.incarnation,
        )

    async def renew(self) -> None:
        """Heartbeat, then look for an incarnation that claimed since we did (module docstring)."""
        if not self.claimed:
            return
        await self.ensure_held()
        await self._beat(released=False)
        now, rows = await self._rows()
        for rival in self._live_others(now, rows):
            if rival.holder == self.holder or rival.incarnation in self._known_at_claim:
                continue
            self.claimed = False
            self.lost = True
            logger.error(
                "Engine id %r (%s): incarnation %s (pid %d on %s) claimed it since we did, so the "
                "store saw our lease lapse; this engine stops writing",
                self.engine_id,
                self.writer,
                rival.incarnation,
                rival.pid,
                rival.host,
            )
            await self._beat(released=True)
            raise self._refuse(now, rival)

    async def release(self) -> None:
        if self.claimed:
            self.claimed = False
            await self._beat(released=True)

    async def _beat(self, *, released: bool) -> None:
        values = {
            "EngineId": [self.engine_id],
            "Writer": [self.writer],
            "Incarnation": [self.incarnation],
            "Holder": [self.holder],
            "Host": [self.host],
            "Pid": [self.pid],
            "Heartbeat": [int(time.time()) + self._skew],
            "Released": [int(released)],
        }
        sent = time.monotonic()
        await self._backend.insert(
            "engine_leases", {name: as_arrow(name, column) for name, column in values.items()}
        )
        if not released:
            self._last_landed = sent
