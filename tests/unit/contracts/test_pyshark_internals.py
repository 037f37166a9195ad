"""pyshark's and asyncio's private names the pyshark source reads when it closes tshark's pipes.

netspectra/probe/sources/pyshark_adapter.py remembers ``Capture._running_processes`` before
``close_async`` empties it, and closes each ``asyncio.subprocess.Process._transport`` that pyshark
leaves open. Both reads fall back to nothing, so a library that moves them would not fail there:
the leaked transports would resurface as unraisable ResourceWarnings. This says why, by name.
"""

from __future__ import annotations

import asyncio
import asyncio.subprocess
import sys

import pyshark.capture.capture

from tests.unit.contracts.contract import Contract

PYSHARK = Contract("pyshark", "netspectra/probe/sources/pyshark_adapter.py")


def test_version_is_within_the_pin() -> None:
    PYSHARK.check(PYSHARK.version.startswith("0.6"), "the adapter was written for pyshark 0.6")


async def test_a_capture_keeps_its_tshark_processes_in_a_set() -> None:
    capture = pyshark.capture.capture.Capture(eventloop=asyncio.get_running_loop())
    processes = PYSHARK.attribute(capture, "_running_processes")
    PYSHARK.check(isinstance(processes, set), "Capture._running_processes is no longer a set")


async def test_an_asyncio_process_holds_its_transport() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "pass", stdout=asyncio.subprocess.PIPE
    )
    try:
        await process.communicate()
        transport = getattr(process, "_transport", None)
        PYSHARK.check(
            transport is not None and hasattr(transport, "close"),
            f"asyncio.subprocess.Process._transport is gone (Python {sys.version.split()[0]})",
        )
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
