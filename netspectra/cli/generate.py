"""CLI: ``netspectra generate`` writes a synthetic trace with known content (for tests, demos, benchmarks)."""

from __future__ import annotations

import time
from enum import StrEnum
from pathlib import Path

import typer


class CaptureFormat(StrEnum):
    PCAP = "pcap"
    PCAPNG = "pcapng"


def generate(
    out: Path = typer.Argument(..., help="Capture file to write."),
    packets: int = typer.Option(100_000, "--packets", min=0, help="Number of frames."),
    flows: int = typer.Option(10_000, "--flows", min=1, help="Number of flows (Zipf-distributed sizes)."),
    seed: int = typer.Option(1, "--seed", help="Random seed: the same seed writes the same bytes."),
    snaplen: int = typer.Option(96, "--snaplen", min=1, max=262_144, help="Bytes captured per frame."),
    capture_format: CaptureFormat = typer.Option(CaptureFormat.PCAP, "--format", help="pcap or pcapng."),
    spreaders: int = typer.Option(0, "--spreaders", min=0, help="Planted super-spreader destinations."),
    fanout: int = typer.Option(1000, "--fanout", min=1, help="Distinct sources per planted spreader."),
    nanosecond: bool = typer.Option(False, "--nanosecond", help="Nanosecond timestamps."),
) -> None:
    """Write a seeded synthetic trace (IPv4/IPv6, TCP/UDP/ICMP, VLAN/QinQ, fragments, ARP)."""
    from netspectra.synth import TrafficSpec, write_trace

    try:
        spec = TrafficSpec(
            packets=packets,
            flows=flows,
            seed=seed,
            snaplen=snaplen,
            format=capture_format.value,  # type: ignore[arg-type]
            spreaders=spreaders,
            spreader_fanout=fanout if spreaders else 0,
            nanosecond=nanosecond,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    started = time.perf_counter()
    truth = write_trace(out, spec)
    elapsed = time.perf_counter() - started
    skipped = ", ".join(f"{k}={v}" for k, v in sorted(truth.skipped.items())) or "none"
    typer.echo(
        f"Wrote {out}: {packets} frames ({len(truth.packets)} IP packets, skipped: {skipped}) "
        f"in {elapsed:.2f}s"
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("generate")(generate)
