"""What the probes say they published, held against what arrived: the engine's gap.

The gap is the loss no client sees (messages in flight when a server died, dropped between
servers): packets the probes published minus packets that arrived (decoded or rejected). Three
rules make it right, where the naive "latest count minus everything received" read -4096 at
start-up and ~10^308 after one forged message:

* **From the first count the engine sees, per probe.** A probe's first count message seen by
  this engine is its *baseline*; only packets published after it are owed. A probe started
  before the engine subscribed published packets nobody here could receive; they are not this
  engine's loss (nor can it tell them from another engine's share). Our probe sends a count of
  0 before its first packet, so for a probe that starts after the engine the baseline is 0 and
  every loss counts. The received side is based the same way: arrivals before the first count
  the engine saw are not compared. What a probe had published before the engine heard from it
  and that never arrived is reported on its own (:attr:`ProbeCounts.before_first_count`), not
  hidden.
* **Measured at the count's place in the stream.** A count message is cumulative up to the
  moment it was sent; packets published after it may already have arrived when it is read
  (that is the -4096: a whole capture batch behind the count). The engine role records each
  count where it arrived among the packets (its cut) and compares it with what had arrived up
  to that cut. NATS delivers one connection's messages in order to a subscriber, so for one
  probe the gap is exact at every cut.
* **Validated.** Counts are cumulative, so one that goes backwards is refused (``decreasing``);
  format and range are :func:`netspectra.wire.subjects.decode_probe_count`'s checks. Refused
  messages are counted by reason and change nothing.

With several probes the cuts of one probe do not cover the others' packets published after
their own last count, so between counts the sum can run below zero: the gap is clamped at 0
(a lower bound until every probe's final count, exact from then on). With several engines in a
queue group each engine's gap is an upper bound (it receives only its share).

**Across restarts the gap continues.** Every snapshot carries :meth:`ProbeCounts.progress` (the
tallies and the packets arrived when it was taken); a store writer keeps the progress of the
last snapshot it accepted durably, and a restarted engine resumes from it
(:meth:`ProbeCounts.resumed`): the arrivals of the previous run that its stored snapshots hold
become this run's starting point, and a probe it knew keeps its baseline. So what the previous
run counted after its last stored snapshot, and what was published while no engine listened,
are owed and show in the gap: after a restart, every stored total equals the packets published
minus the gap (minus the rejected ones), exactly for one probe that reports again after the
restart (a probe that sent its last count to the killed run owes what it sent after the stored
snapshot's count, unseen: its gap stays a lower bound). The jump at a resumed probe's first
count is logged as the restart's loss (:attr:`ProbeCounts.restart_losses`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netspectra.wire.subjects import COUNT_REJECT_REASONS, ProbeCount

#: Version of :meth:`ProbeCounts.progress`; a progress of another version is not resumed.
PROGRESS_VERSION = 1


@dataclass(slots=True)
class _ProbeTally:
    baseline: int  # packets in the first count message this engine saw from the probe
    packets: int  # ... in the latest accepted one
    messages: int


class ProbeCounts:
    """The probes' count reports as the engine accepted them, and the gap they imply."""

    def __init__(self) -> None:
        self._probes: dict[str, _ProbeTally] = {}
        self.rejects: dict[str, int] = dict.fromkeys(COUNT_REJECT_REASONS, 0)
        self._arrived_at_first: int | None = None  # arrivals before the first count ever seen
        self._arrived_at_cut = 0  # arrivals up to the latest accepted count's cut
        #: Arrivals of earlier runs held by their stored snapshots (0 unless resumed): every
        #: ``arrived`` this run passes in is counted on top of them.
        self.arrived_before = 0
        self._resumed_unseen: set[str] = set()  # resumed probes not heard from in this run yet
        #: Per resumed probe: packets lost across the restart (the gap's jump at its first count).
        self.restart_losses: dict[str, int] = {}
        self._new_restart_loss: tuple[str, int] | None = None

    def progress(self, arrived: int) -> dict[str, Any]:
        """What a snapshot taken after ``arrived`` packets of this run carries (JSON-able)."""
        return {
            "version": PROGRESS_VERSION,
            "arrived": self.arrived_before + arrived,
            "arrived_at_first": self._arrived_at_first,
            "arrived_at_cut": self._arrived_at_cut,
            "probes": {name: [t.baseline, t.packets, t.messages] for name, t in self._probes.items()},
        }

    @classmethod
    def resumed(cls, progress: dict[str, Any]) -> ProbeCounts:
        """Continue from the progress of the last snapshot an earlier run stored.

        Raises ValueError when ``progress`` is not one this version wrote (the caller starts
        afresh and says so).
        """
        counts = cls()
        try:
            if progress.get("version") != PROGRESS_VERSION:
                raise ValueError(f"progress version {progress.get('version')!r}")
            arrived = _count(progress["arrived"])
            first = progress["arrived_at_first"]
            counts._arrived_at_first = None if first is None else _count(first)
            counts._arrived_at_cut = _count(progress["arrived_at_cut"])
            for name, (baseline, packets, messages) in dict(progress["probes"]).items():
                counts._probes[str(name)] = _ProbeTally(_count(baseline), _count(packets), _count(messages))
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"malformed progress: {error!r}") from None
        if counts._arrived_at_first is not None and not (
            counts._arrived_at_first <= counts._arrived_at_cut <= arrived
        ):
            raise ValueError("progress arrivals out of order")
        counts.arrived_before = arrived
        counts._resumed_unseen = set(counts._probes)
        return counts

    def reject(self, reason: str) -> None:
        self.rejects[reason] += 1

    def record(self, report: ProbeCount, arrived: int) -> bool:
        """Accept ``report``, read after ``arrived`` packets had arrived; False (and counted) if refused."""
        arrived += self.arrived_before
        before = self.gap or 0
        tally = self._probes.get(report.probe)
        if tally is None:
            self._probes[report.probe] = _ProbeTally(report.packets, report.packets, report.messages)
            if self._arrived_at_first is None:
                self._arrived_at_first = arrived
        elif report.packets < tally.packets or report.messages < tally.messages:
            self.reject("decreasing")
            return False
        else:
            tally.packets, tally.messages = report.packets, report.messages
        self._arrived_at_cut = arrived
        if report.probe in self._resumed_unseen:
            self._resumed_unseen.discard(report.probe)
            lost = max(0, (self.gap or 0) - before)
            self.restart_losses[report.probe] = lost
            self._new_restart_loss = (report.probe, lost)
        return True

    def take_restart_loss(self) -> tuple[str, int] | None:
        """(probe, packets) when the last :meth:`record` was a resumed probe's first count, once."""
        found, self._new_restart_loss = self._new_restart_loss, None
        return found

    @property
    def by_probe(self) -> dict[str, int]:
        """Latest cumulative packets per probe."""
        return {probe: tally.packets for probe, tally in self._probes.items()}

    @property
    def published(self) -> int | None:
        """Packets the probes report having published in all (None when none reported, e.g. Go probes)."""
        return sum(tally.packets for tally in self._probes.values()) if self._probes else None

    @property
    def before_first_count(self) -> int:
        """Packets published before this engine's first count from their probe that never arrived.

        Exact for one probe (a probe running before the engine subscribed); with several it is an
        upper bound, as the arrivals before the first count of a later probe are not told apart.
        """
        if self._arrived_at_first is None:
            return 0
        return max(0, sum(tally.baseline for tally in self._probes.values()) - self._arrived_at_first)

    @property
    def gap(self) -> int | None:
        """Packets published after each probe's baseline that had not arrived by the latest cut."""
        if self._arrived_at_first is None:
            return None
        owed = sum(tally.packets - tally.baseline for tally in self._probes.values())
        return max(0, owed - (self._arrived_at_cut - self._arrived_at_first))


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise TypeError(f"not a count: {value!r}")
    return value
