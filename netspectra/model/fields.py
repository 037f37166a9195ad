"""The five flow-key fields, their names as configs and the Go project spell them, and text forms."""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the config models import KeyField, and `config check` must not load numpy
    import numpy as np
    import numpy.typing as npt

#: The 12-byte prefix of an IPv4-mapped IPv6 address (RFC 4291 section 2.5.5.2).
IPV4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


class KeyField(StrEnum):
    """A flow-key field; the value is the spelling used in configs, files and the API."""

    SRC_IP = "SrcIP"
    DST_IP = "DstIP"
    SRC_PORT = "SrcPort"
    DST_PORT = "DstPort"
    PROTOCOL = "Protocol"


#: Canonical order of the fields in keys, flow strings and storage columns (Go's order).
FIELD_ORDER: tuple[KeyField, ...] = (
    KeyField.SRC_IP,
    KeyField.DST_IP,
    KeyField.SRC_PORT,
    KeyField.DST_PORT,
    KeyField.PROTOCOL,
)


def address_text(raw16: bytes | npt.NDArray[np.uint8]) -> str:
    """Text form of a 16-byte column address: dotted IPv4 when mapped, compressed IPv6 otherwise."""
    data = bytes(raw16)
    if data[:12] == IPV4_MAPPED_PREFIX:
        return str(ipaddress.IPv4Address(data[12:]))
    return str(ipaddress.IPv6Address(data))


def address_bytes(text: str) -> bytes:
    """The 16-byte column form of an address given as text (raises ValueError when malformed)."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv4Address):
        return IPV4_MAPPED_PREFIX + address.packed
    return address.packed
