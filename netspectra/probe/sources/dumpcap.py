"""Live capture through Wireshark's capture engine: ``dumpcap -i IF [-f BPF] -P -w -`` parsed by numba.

dumpcap is the capture process under tshark and pyshark; its pcap stream is fed to the
incremental :class:`~netspectra.capture.stream.CaptureStreamParser`. dumpcap's own statistics
(packets captured / dropped by the kernel) are read from its stderr at exit and reported.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
from collections.abc import AsyncIterator

from netspectra.capture.stream import CaptureStreamParser
from netspectra.errors import CaptureError
from netspectra.model.packets import PacketColumns
from netspectra.probe.sources.afpacket import check_interface

logger = logging.getLogger(__name__)

_DROPPED = re.compile(r"Packets received/dropped on interface '[^']*':\s*(\d+)/(\d+)")


def find_dumpcap() -> str:
    """dumpcap's path (PATH, else where pyshark's tshark helpers look), or a CaptureError naming the fix."""
    path = shutil.which("dumpcap")
    if path is None:
        try:
            from pyshark.tshark.tshark import get_process_path

            candidate = get_process_path(process_name="dumpcap")
            path = candidate if shutil.which(candidate) else None
        except Exception:
            path = None
    if path is None:
        raise CaptureError(
            "dumpcap is not installed: `apt-get install wireshark-common` (or tshark), "
            "or use probe.source: afpacket"
        )
    return path


class DumpcapSource:
    name = "dumpcap"

    def __init__(
        self,
        iface: str,
        *,
        bpf_filter: str = "",
        snaplen: int = 262_144,
        buffer_mb: int = 64,
        compat: str | None = None,
    ) -> None:
        check_interface(iface)
        self.binary = find_dumpcap()
        self.command = [
            self.binary,
            "-i",
            iface,
            "-P",
            "-w",
            "-",
            "-q",
            "-s",
            str(snaplen),
            "-B",
            str(buffer_mb),
        ]
        if bpf_filter:
            self.command += ["-f", bpf_filter]
        self.parser = CaptureStreamParser(compat=compat)
        self.process: asyncio.subprocess.Process | None = None
        self.received = 0
        self.dropped = 0
        self.stderr = b""

    def stats(self) -> dict[str, int]:
        return {
            "packets": self.parser.packets,
            "dumpcap_received": self.received,
            "dumpcap_dropped": self.dropped,
        }

    async def batches(self) -> AsyncIterator[PacketColumns]:
        self.process = await asyncio.create_subprocess_exec(
            *self.command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert self.process.stdout is not None
        while True:
            data = await self.process.stdout.read(1 << 20)
            if not data:
                break
            batch = self.parser.feed(data)
            if len(batch):
                yield batch
        await self._finish()

    async def _finish(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.terminate()
        assert self.process.stderr is not None
        self.stderr = await self.process.stderr.read()
        code = await self.process.wait()
        text = self.stderr.decode(errors="replace")
        for received, dropped in _DROPPED.findall(text):
            self.received, self.dropped = int(received), int(dropped)
        if code not in (0, -15) and "ermission" in text:
            raise CaptureError(
                "dumpcap may not capture: run as root, or `sudo setcap cap_net_raw,cap_net_admin=eip "
                f"{self.binary}`; dumpcap said: {text.strip()}"
            )
        if code not in (0, -15):
            logger.warning("dumpcap exited with %s: %s", code, text.strip())
        self.process = None

    async def close(self) -> None:
        await self._finish()
