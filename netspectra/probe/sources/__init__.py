"""Where the probe's packets come from: live interfaces (AF_PACKET ring, dumpcap, pyshark), a file,
or flow exporters (NetFlow/IPFIX/sFlow collectors, whose batches are FlowColumns).

Every source is an async iterator of :class:`~netspectra.model.packets.PacketColumns` batches with a
``stats()`` dict (packets, and the drops the capture layer reports) and ``close()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from netspectra.config.models import ProbeConfig
from netspectra.errors import CaptureError
from netspectra.model.packets import PacketColumns


class PacketSource(Protocol):
    name: str

    def batches(self) -> AsyncIterator[PacketColumns]: ...

    def stats(self) -> dict[str, int]: ...

    async def close(self) -> None: ...


def open_source(config: ProbeConfig) -> PacketSource:
    """The source ``probe.source`` names, checked (interface exists, privileges, binaries)."""
    if config.source == "file":
        if not config.pcap:
            raise CaptureError("probe.source is 'file' but probe.pcap is not set: pass --pcap FILE")
        from netspectra.probe.sources.file import FileReplaySource

        return FileReplaySource(config.pcap, rate=config.rate, speed=config.speed, compat=config.compat)
    if config.source in ("netflow", "sflow"):
        from netspectra.probe.sources.flow_export import FlowExportSource

        return FlowExportSource(config)  # type: ignore[return-value]  # yields FlowColumns
    if not config.iface:
        raise CaptureError(f"probe.source is {config.source!r} but no interface is set: pass --iface IF")
    if config.source == "afpacket":
        from netspectra.probe.sources.afpacket import AfPacketSource

        return AfPacketSource(
            config.iface,
            snaplen=config.snaplen,
            buffer_mb=config.buffer_mb,
            fanout_group=config.fanout_group,
            bpf_filter=config.bpf_filter,
            compat=config.compat,
        )
    if config.source == "dumpcap":
        from netspectra.probe.sources.dumpcap import DumpcapSource

        return DumpcapSource(
            config.iface,
            bpf_filter=config.bpf_filter,
            snaplen=config.snaplen,
            buffer_mb=config.buffer_mb,
            compat=config.compat,
        )
    from netspectra.probe.sources.pyshark_adapter import PysharkSource

    return PysharkSource(config.iface, bpf_filter=config.bpf_filter, display_filter=config.display_filter)
