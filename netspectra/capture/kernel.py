"""Frame decoding: from the first captured byte of a link-layer frame to the packet's flow key.

Every capture path ends here — the file walkers below and the
AF_PACKET probe — so one set of rules decides what a packet is. The rules follow gopacket (the Go
reference decodes with it) and were checked against tshark's ``ip.src``/``ipv6.src`` counting:

* the key comes from the OUTERMOST IPv4/IPv6 header and the TCP/UDP header right after it;
  tunnels (GRE, IP-in-IP, VXLAN, ...) are not entered, ICMP errors are not looked into;
* link types: Ethernet (1) with any stack of 802.1Q/802.1ad/0x9100/0x9200 tags, 802.3+LLC/SNAP,
  PPPoE session and MPLS label stacks in front of IP; raw IP (101, 12, 14, 228 — the IP
  version nibble decides, as tshark's ``ip`` dissector does; 229 must hold IPv6); Linux cooked
  SLL (113) and SLL2 (276); BSD NULL (0) and LOOP (108), whose AF value is accepted in either byte order
  (AF_INET 2; AF_INET6 24, 28 or 30);
* IPv6 extension headers (0, 43, 60, 44, 51 AH, 135, 139, 140) are walked so that
  ``protocol`` is the upper-layer protocol; when the capture ends inside the chain the walk
  stops and ``protocol`` is the header that could not be walked (ports 0);
* ports are read only for TCP (6) and UDP (17), and only from a packet that carries the L4
  header: never from IPv4 fragments with offset > 0 or IPv6 non-first fragments, whose payload
  is not a header; first fragments (IPv4 MF set with offset 0, IPv6 offset 0) do carry it, and
  their ports are read, as tshark reads them. ICMP and every other protocol have ports 0. AH on
  IPv4 is not walked (protocol 51, ports 0);
* a TCP/UDP header cut by the snap length before its 4 port bytes still yields the packet, with
  ports 0: tshark shows ``ip.src`` for it, so per-address counts match tshark; with the 4 port
  bytes captured the ports are read, however little of the rest of the header is there.

Where gopacket 1.1.19 (Go2NetSpectra's parser) answers otherwise — we keep tshark's answers;
``docs/go-compatibility.md`` lists each with its measured share (``bench/go_parser.py``):
gopacket gives ports 0 for IPv4 first fragments (MF set, offset 0: its IPv4 decoder hands any
fragment to a Fragment layer), for every IPv6 packet with a Fragment header (first or not), and
for a TCP header cut by the snap length (its TCP decoder needs 20 bytes and the data offset; it
fails, and no ports are read); it reports the first IPv6 next-header (0 hop-by-hop, 44
fragment, ...) as the protocol instead of the upper-layer one; and it drops frames whose outer
EtherType is 0x9100 (no decoder for that old QinQ TPID), which we read as a VLAN tag.
* an IPv4 header needs its 20 fixed bytes, an IPv6 header its 40, or the frame is skipped as
  ``truncated_ip``; IHL < 5 or a non-zero total length below the header length is
  ``bad_ip_header`` (tshark refuses those; gopacket reports an error after reading the
  addresses, and Go2NetSpectra counts the packet with ports 0).

Go compatibility (``probe.compat: go``): ``decode_frame(..., go=True)`` answers as gopacket 1.1.19
does, checked frame by frame against gopacket itself (tests/unit/capture/test_capture_compat.py):
the differences above, and also a UDP header with fewer than its 8 bytes captured (ports 0), a
TCP header with 20 bytes or more captured but fewer than its data offset (the real ports: the
TCP layer is kept with its error), the IPv4/IPv6 payload ends at the header's length field (the
IPv6 one counted after a first hop-by-hop header, as gopacket does), IPv6 routing headers other
than type 0 and any truncated extension header stop the walk (ports 0), AH on IPv4 is walked, a
bad IPv4 IHL or total length is counted with ports 0, the EtherType (not the version nibble)
chooses the IP decoder, BSD NULL family 10 is IPv6, and 0x9200 tags, LLC SAP 6, Linux SLL
protocol 4 and link types 12, 14 and 276 have no decoder (``go_undecoded``). The file and ring
walkers exist twice, made by one factory each with ``go`` as a closure constant, so choosing the
compat walker happens once per reader and the default walkers' machine code is that of a
decoder without the option (bench/parse.py measures both against the previous revision).
docs/go-compatibility.md says what it does not reproduce (tunnels, headers shorter than their
fixed part, jumbograms, option TLV errors).

Every capture loop (pcap, pcapng, the AF_PACKET ring) lives in this module: numba's on-disk cache
only notices edits of a function's own file, so a cached loop elsewhere that calls
:func:`decode_frame` (inlined or not) keeps running its old rules after an edit here until its
``__pycache__`` entries are deleted. The public kernel, for other njit code (tests, tools)::

    status = parse_frame(buf, offset, caplen, wirelen, linktype, ts_ns, i,
                         ts_col, src_col, dst_col, sport_col, dport_col, proto_col, len_col, ver_col)

writes row ``i`` of the :class:`~netspectra.model.packets.PacketColumns` arrays when ``status == OK``
(and writes nothing otherwise); ``SKIP_REASONS[status]`` names the reason of a skip. Loops that
need speed call :func:`decode_frame` and :func:`_address_words` instead and store the scalars they
return, as :func:`walk_pcap` does.

Numba kernel note (measured on 1 M packets, interleaved runs, thread CPU time): a helper that
takes the column arrays — one ``_write_row(buf, ..., row, src_col, ..., ver_col)`` for the four
row writers here, with ``inline="always"``, as ``register_jitable(inline="always")`` or not
inlined — runs the walkers at 0.30-0.33x: numba increfs and decrefs every array argument of
the inlined body on each packet (16 NRT calls per row; the refcount pruning pass does not remove
them across the helper's loops). Helpers here therefore take at most the frame buffer and return
scalars (``decode_frame``, ``_address_words``); storing those through ``uint64`` views of the
address columns measured 1.07x the speed of the old per-byte copies.
"""

from __future__ import annotations

import sys

import numpy as np

from netspectra.jit import njit

# Frame status codes (indexes into SKIP_REASONS).
OK = 0
NON_IP = 1
TRUNCATED_L2 = 2
TRUNCATED_IP = 3
BAD_IP_HEADER = 4
BAD_IP_VERSION = 5
UNSUPPORTED_LINKTYPE = 6
UNKNOWN_INTERFACE = 7
#: ``compat: go`` only: gopacket 1.1.19 has no decoder on the way to IP (EtherType 0x9100 or
#: 0x9200, LLC SAP 6, Linux SLL protocol 4, link types 12, 14 and 276), so Go never counts it.
GO_UNDECODED = 8

#: Names of the skip reasons, indexed by status code (index 0 is a parsed packet, not a skip).
SKIP_REASONS: tuple[str, ...] = (
    "ok",
    "non_ip",
    "truncated_l2",
    "truncated_ip",
    "bad_ip_header",
    "bad_ip_version",
    "unsupported_linktype",
    "unknown_interface",
    "go_undecoded",
)

#: Link types the decoder understands (others are counted as ``unsupported_linktype``).
SUPPORTED_LINKTYPES: frozenset[int] = frozenset({0, 1, 12, 14, 101, 108, 113, 228, 229, 276})

_SNIFF = -1  # "look at the IP version nibble" pseudo-ethertype
_LLC = 1  # pseudo-ethertype: an 802.2 LLC header follows


@njit(cache=True, nogil=True, inline="always")
def _be16(b0: int, b1: int) -> int:  # scalars only: no array refcounting in the hot loop
    return (b0 << 8) | b1


@njit(cache=True, nogil=True, inline="always")
def _go_ports(buf, at, end, proto):  # type: ignore[no-untyped-def]
    """gopacket's ports: its TCP decoder fills them from 20 bytes on, its UDP decoder from 8."""
    if (proto == 6 and at + 20 <= end) or (proto == 17 and at + 8 <= end):
        return _be16(np.int64(buf[at]), np.int64(buf[at + 1])), _be16(
            np.int64(buf[at + 2]), np.int64(buf[at + 3])
        )
    return 0, 0


@njit(cache=True, nogil=True, inline="always")
def _go_ipv4(buf, p, end):  # type: ignore[no-untyped-def]
    """An IPv4 packet as gopacket 1.1.19 reads it (``compat: go``).

    Its decoder records the addresses and protocol before it checks anything, and Go2NetSpectra
    keeps a packet whose decoding failed after that: a bad IHL or total length gives ports 0, not
    a skip. The payload ends at the total length (0: the captured bytes, as with TSO); any
    fragment (MF set or an offset) is a Fragment layer, ports 0; AH is walked.
    """
    if p + 20 > end:
        return TRUNCATED_IP, 0, 0, 0, 0, 0  # gopacket: an IPv4 layer without addresses (not kept)
    proto = np.int64(buf[p + 9])
    ihl = (np.int64(buf[p]) & 15) * 4
    total = _be16(np.int64(buf[p + 2]), np.int64(buf[p + 3]))
    if total == 0:
        total = end - p
    if total < 20 or ihl < 20 or ihl > total or p + ihl > end:
        return OK, 4, p, proto, 0, 0
    if (np.int64(buf[p + 6]) & 0x20) or (np.int64(buf[p + 6]) & 0x1F) or buf[p + 7]:
        return OK, 4, p, proto, 0, 0
    stop = min(end, p + total)
    q = p + ihl
    nh = proto
    while nh == 51:
        if q + 12 > stop:
            return OK, 4, p, proto, 0, 0
        step = (np.int64(buf[q + 1]) + 2) * 4
        if q + step > stop:
            return OK, 4, p, proto, 0, 0
        nh = np.int64(buf[q])
        q += step
    sport, dport = _go_ports(buf, q, stop, nh)
    return OK, 4, p, proto, sport, dport


@njit(cache=True, nogil=True, inline="always")
def _go_ipv6(buf, p, end):  # type: ignore[no-untyped-def]
    """An IPv6 packet as gopacket 1.1.19 reads it (``compat: go``).

    The protocol is the first next-header; a first hop-by-hop header is part of the IPv6 layer
    and the payload length counts from its end (gopacket's reading); a payload length of 0 fails
    (jumbograms are not reproduced: ports 0). Hop-by-hop and destination options, routing type 0
    and AH are walked, each needing all its bytes; a Fragment header (first or not), another
    routing type or any other header gives ports 0.
    """
    if p + 40 > end:
        return TRUNCATED_IP, 0, 0, 0, 0, 0  # gopacket: an IPv6 layer without addresses (not kept)
    first = np.int64(buf[p + 6])
    length = _be16(np.int64(buf[p + 4]), np.int64(buf[p + 5]))
    q = p + 40
    nh = first
    if first == 0:
        if q + 2 > end:
            return OK, 6, p, first, 0, 0
        step = (np.int64(buf[q + 1]) + 1) * 8
        if q + step > end:
            return OK, 6, p, first, 0, 0
        nh = np.int64(buf[q])
        q += step
    if length == 0:
        return OK, 6, p, first, 0, 0
    stop = min(end, q + length)
    while True:
        if nh == 0 or nh == 60 or nh == 43:
            if q + 2 > stop:
                return OK, 6, p, first, 0, 0
            step = (np.int64(buf[q + 1]) + 1) * 8
            if q + step > stop or (nh == 43 and (buf[q + 2] != 0 or (step - 8) % 16 != 0)):
                return OK, 6, p, first, 0, 0
            nh = np.int64(buf[q])
            q += step
        elif nh == 51:
            if q + 12 > stop:
                return OK, 6, p, first, 0, 0
            step = (np.int64(buf[q + 1]) + 2) * 4
            if q + step > stop:
                return OK, 6, p, first, 0, 0
            nh = np.int64(buf[q])
            q += step
        else:
            break
    sport, dport = _go_ports(buf, q, stop, nh)
    return OK, 6, p, first, sport, dport


@njit(cache=True, nogil=True, inline="always")
def decode_frame(buf, off, caplen, linktype, go=False):  # type: ignore[no-untyped-def]
    """Decode one frame; returns ``(status, ip_version, l3_offset, protocol, src_port, dst_port)``.

    ``l3_offset`` is the absolute index of the outermost IP header in ``buf``: the source address
    starts at ``l3 + 12`` (IPv4) or ``l3 + 8`` (IPv6), the destination 4 resp. 16 bytes later.
    ``go`` (``compat: go``) answers as gopacket 1.1.19 does (see "Go compatibility" above). Callers
    pass it as a compile-time constant (a walker's closure constant, or omitted): each walker
    variant is compiled with one value, and LLVM removes the other value's branches, so the
    default walkers run the code they ran before the option existed.
    """
    end = off + caplen
    p = off
    et = _SNIFF
    if linktype == 1:
        if caplen < 14:
            return TRUNCATED_L2, 0, 0, 0, 0, 0
        et = _be16(np.int64(buf[p + 12]), np.int64(buf[p + 13]))
        p += 14
        if et <= 1500:
            et = _LLC
    elif go and (linktype == 12 or linktype == 14 or linktype == 276):
        return GO_UNDECODED, 0, 0, 0, 0, 0  # gopacket has no decoder for these link types
    elif go and linktype == 228:
        et = 0x0800  # gopacket's IPv4 decoder, whatever the version nibble says
    elif go and linktype == 229:
        et = 0x86DD
    elif linktype == 101 or linktype == 228 or linktype == 229 or linktype == 12 or linktype == 14:
        et = _SNIFF
    elif linktype == 113 or linktype == 276:
        hdr = 16 if linktype == 113 else 20
        if caplen < hdr:
            return TRUNCATED_L2, 0, 0, 0, 0, 0
        q = p + 14 if linktype == 113 else p
        et = _be16(np.int64(buf[q]), np.int64(buf[q + 1]))
        p += hdr
        if et == 4:
            if go:
                return GO_UNDECODED, 0, 0, 0, 0, 0  # gopacket: no EtherType 4 decoder
            et = _LLC
        elif et < 1536:
            return NON_IP, 0, 0, 0, 0, 0
    elif linktype == 0 or linktype == 108:
        if caplen < 4:
            return TRUNCATED_L2, 0, 0, 0, 0, 0
        af = (
            np.int64(buf[p])
            | (np.int64(buf[p + 1]) << 8)
            | (np.int64(buf[p + 2]) << 16)
            | (np.int64(buf[p + 3]) << 24)
        )
        if af & 0xFFFF0000:
            af = (
                ((af & 0xFF) << 24)
                | (((af >> 8) & 0xFF) << 16)
                | (((af >> 16) & 0xFF) << 8)
                | ((af >> 24) & 0xFF)
            )
        p += 4
        if af == 2:
            et = 0x0800
        elif af == 24 or af == 28 or af == 30 or (go and af == 10):
            et = 0x86DD  # gopacket also takes 10 (Linux's AF_INET6)
        else:
            return NON_IP, 0, 0, 0, 0, 0
    else:
        return UNSUPPORTED_LINKTYPE, 0, 0, 0, 0, 0

    # Tags and shims in front of IP, any depth (each step consumes bytes, so this ends).
    while True:
        if go and (et == 0x9100 or et == 0x9200):
            return GO_UNDECODED, 0, 0, 0, 0, 0  # old QinQ TPIDs: no gopacket decoder
        if et == 0x8100 or et == 0x88A8 or et == 0x9100 or et == 0x9200:
            if p + 4 > end:
                return TRUNCATED_L2, 0, 0, 0, 0, 0
            et = _be16(np.int64(buf[p + 2]), np.int64(buf[p + 3]))
            p += 4
            if et <= 1500:
                et = _LLC
        elif et == _LLC:
            if p + 3 > end:
                return TRUNCATED_L2, 0, 0, 0, 0, 0
            if buf[p] == 0xAA and buf[p + 1] == 0xAA and buf[p + 2] == 3:
                if p + 8 > end:
                    return TRUNCATED_L2, 0, 0, 0, 0, 0
                et = _be16(np.int64(buf[p + 6]), np.int64(buf[p + 7]))
                p += 8
                if et < 1536:
                    return NON_IP, 0, 0, 0, 0, 0
            elif go:
                return GO_UNDECODED, 0, 0, 0, 0, 0  # gopacket's LLC leads only to SNAP (and STP)
            elif buf[p] == 0x06 and buf[p + 1] == 0x06 and buf[p + 2] == 3:
                p += 3  # LLC SAP 6: IPv4 directly
                et = 0x0800
            else:
                return NON_IP, 0, 0, 0, 0, 0
        elif et == 0x8864:  # PPPoE session: 6-byte header, then the PPP protocol
            if p + 8 > end:
                return TRUNCATED_L2, 0, 0, 0, 0, 0
            ppp = _be16(np.int64(buf[p + 6]), np.int64(buf[p + 7]))
            p += 8
            if ppp == 0x0021:
                et = 0x0800
            elif ppp == 0x0057:
                et = 0x86DD
            else:
                return NON_IP, 0, 0, 0, 0, 0
        elif et == 0x8847 or et == 0x8848:  # MPLS: pop to bottom of stack, then sniff
            while True:
                if p + 4 > end:
                    return TRUNCATED_L2, 0, 0, 0, 0, 0
                bottom = buf[p + 2] & 1
                p += 4
                if bottom:
                    break
            if p >= end:
                return TRUNCATED_L2, 0, 0, 0, 0, 0
            nibble = buf[p] >> 4
            if nibble != 4 and nibble != 6:
                return NON_IP, 0, 0, 0, 0, 0
            et = _SNIFF
        else:
            break

    if et != 0x0800 and et != 0x86DD and et != _SNIFF:
        return NON_IP, 0, 0, 0, 0, 0
    if p >= end:
        return TRUNCATED_IP, 0, 0, 0, 0, 0
    version = np.int64(buf[p]) >> 4
    if go and et == 0x0800:
        version = 4  # gopacket hands the bytes to the decoder the EtherType names
    elif go and et == 0x86DD:
        version = 6
    if go and version == 4:
        return _go_ipv4(buf, p, end)
    if go and version == 6:
        return _go_ipv6(buf, p, end)
    if linktype == 229 and version != 6:  # tshark hands LINKTYPE_IPV6 to its IPv6 dissector only
        return BAD_IP_VERSION, 0, 0, 0, 0, 0
    if version == 4:
        if p + 20 > end:
            return TRUNCATED_IP, 0, 0, 0, 0, 0
        ihl = (np.int64(buf[p]) & 15) * 4
        total = _be16(np.int64(buf[p + 2]), np.int64(buf[p + 3]))
        if ihl < 20 or (total != 0 and total < ihl):
            return BAD_IP_HEADER, 0, 0, 0, 0, 0
        proto = np.int64(buf[p + 9])
        frag_offset = _be16(np.int64(buf[p + 6]) & 0x1F, np.int64(buf[p + 7]))
        l4 = p + ihl
        if frag_offset == 0 and (proto == 6 or proto == 17) and l4 + 4 <= end:
            sport = _be16(np.int64(buf[l4]), np.int64(buf[l4 + 1]))
            dport = _be16(np.int64(buf[l4 + 2]), np.int64(buf[l4 + 3]))
            return OK, 4, p, proto, sport, dport
        return OK, 4, p, proto, 0, 0
    if version == 6:
        if p + 40 > end:
            return TRUNCATED_IP, 0, 0, 0, 0, 0
        nh = np.int64(buf[p + 6])
        q = p + 40
        walked = True
        while True:
            if nh == 0 or nh == 43 or nh == 60 or nh == 135 or nh == 139 or nh == 140:
                if q + 2 > end:
                    walked = False
                    break
                step = (np.int64(buf[q + 1]) + 1) * 8
                nh = np.int64(buf[q])
                q += step
            elif nh == 44:
                if q + 4 > end:
                    walked = False
                    break
                frag_offset = _be16(np.int64(buf[q + 2]), np.int64(buf[q + 3])) >> 3
                nh = np.int64(buf[q])
                q += 8
                if frag_offset != 0:
                    walked = False  # the rest is a fragment of payload, not headers
                    break
            elif nh == 51:
                if q + 2 > end:
                    walked = False
                    break
                step = (np.int64(buf[q + 1]) + 2) * 4
                nh = np.int64(buf[q])
                q += step
            else:
                break
        if walked and (nh == 6 or nh == 17) and q + 4 <= end:
            sport = _be16(np.int64(buf[q]), np.int64(buf[q + 1]))
            dport = _be16(np.int64(buf[q + 2]), np.int64(buf[q + 3]))
            return OK, 6, p, nh, sport, dport
        return OK, 6, p, nh, 0, 0
    return BAD_IP_VERSION, 0, 0, 0, 0, 0


#: Bytes 8-15 of an IPv4-mapped IPv6 address (``00 00 ff ff`` + the IPv4 address) without the
#: IPv4 address, as the native word a ``uint64`` view of the address column reads.
_V4_MAPPED = np.uint64(int.from_bytes(bytes([0, 0, 0xFF, 0xFF, 0, 0, 0, 0]), sys.byteorder))
_LITTLE_ENDIAN = sys.byteorder == "little"


@njit(cache=True, nogil=True, inline="always")
def _native_word(buf, at, count, first):  # type: ignore[no-untyped-def]
    """``buf[at:at + count]`` as bytes ``first..first + count - 1`` of a native ``uint64`` (the
    other bytes 0): what a ``uint64`` view of the address column reads for those bytes."""
    word = np.uint64(0)
    for k in range(count):
        byte = first + k if _LITTLE_ENDIAN else 7 - first - k
        word |= np.uint64(buf[at + k]) << np.uint64(8 * byte)
    return word


@njit(cache=True, nogil=True, inline="always")
def _address_words(buf, l3, version):  # type: ignore[no-untyped-def]
    """The packet's source and destination address columns as native words ``(src[0:8], src[8:16],
    dst[0:8], dst[8:16])``; IPv4 becomes IPv4-mapped IPv6 (``::ffff:a.b.c.d``).

    The one copy of the address rule for every row writer in this module. It takes the frame and
    returns scalars, and each caller stores them through a word view of its columns: a helper that
    takes the column arrays pays their reference counting on every packet, inlined or not
    (measured 3x slower; see the module docstring).
    """
    if version == 4:
        zero = np.uint64(0)
        return (
            zero,
            _V4_MAPPED | _native_word(buf, l3 + 12, 4, 4),
            zero,
            _V4_MAPPED | _native_word(buf, l3 + 16, 4, 4),
        )
    return (
        _native_word(buf, l3 + 8, 8, 0),
        _native_word(buf, l3 + 16, 8, 0),
        _native_word(buf, l3 + 24, 8, 0),
        _native_word(buf, l3 + 32, 8, 0),
    )


@njit(cache=True, nogil=True)
def parse_frame(  # type: ignore[no-untyped-def]
    buf,
    offset,
    caplen,
    wirelen,
    linktype,
    ts_ns,
    i,
    ts_col,
    src_col,
    dst_col,
    sport_col,
    dport_col,
    proto_col,
    len_col,
    ver_col,
):
    """Decode one frame and, if it is an IP packet, write it into row ``i``; returns its status."""
    status, version, l3, proto, sport, dport = decode_frame(buf, offset, caplen, linktype)
    if status != OK:
        return status
    src_w = src_col.view(np.uint64)  # the 16 address bytes of a row as two native words
    dst_w = dst_col.view(np.uint64)
    ts_col[i] = ts_ns
    src_w[i, 0], src_w[i, 1], dst_w[i, 0], dst_w[i, 1] = _address_words(buf, l3, version)
    sport_col[i], dport_col[i], proto_col[i] = sport, dport, proto
    len_col[i], ver_col[i] = wirelen, version
    return OK


@njit(cache=True, nogil=True)
def parse_frames(  # type: ignore[no-untyped-def]
    buf, offsets, caplens, linktypes, src_col, dst_col, sport_col, dport_col, proto_col, ver_col, status
):
    """Decode frame ``i`` at ``buf[offsets[i]:offsets[i] + caplens[i]]`` into row ``i``, for every i.

    For frames that arrive inside other records (sFlow's sampled packet headers): rows are not
    compacted, ``status[i]`` says whether row ``i`` was written (OK) or why not. It lives here, not
    beside its caller, for the numba cache rule above: a copy of decode_frame compiled into another
    module's cached kernel would not notice an edit of this file.
    """
    src_w = src_col.view(np.uint64)
    dst_w = dst_col.view(np.uint64)
    for i in range(offsets.shape[0]):
        st, version, l3, proto, sport, dport = decode_frame(buf, offsets[i], caplens[i], linktypes[i])
        status[i] = st
        if st != OK:
            continue
        src_w[i, 0], src_w[i, 1], dst_w[i, 0], dst_w[i, 1] = _address_words(buf, l3, version)
        sport_col[i], dport_col[i], proto_col[i] = sport, dport, proto
        ver_col[i] = version


# -- container walkers ------------------------------------------------------------------------
# They live in this module because numba's on-disk cache only notices edits to a function's own
# file: a walker in another module would keep running a stale inlined copy of decode_frame.
#
# A walker consumes only COMPLETE records of ``buf[pos:end]`` and stops at the first incomplete one
# (NEED_MORE), when the output columns are full (OUT_FULL), at a pcapng section or interface block
# that Python interprets (NEED_HEADER: rare, with options awkward in numba), or at a record header
# that cannot be right (CORRUPT_*). ``counters`` is int64 ``[frames, packets, bytes, skip[1], ...]``
# (COUNTER_SKIP_BASE + status).

NEED_MORE = 0
OUT_FULL = 1
NEED_HEADER = 2
CORRUPT_CAPLEN = 3
CORRUPT_BLOCK = 4

COUNTER_FRAMES = 0
COUNTER_PACKETS = 1
COUNTER_BYTES = 2
COUNTER_SKIP_BASE = 2  # + status (statuses start at 1)
COUNTER_SIZE = COUNTER_SKIP_BASE + len(SKIP_REASONS)

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 1
PCAPNG_OPB = 2  # obsolete Packet Block
PCAPNG_SPB = 3
PCAPNG_EPB = 6


@njit(cache=True, nogil=True, inline="always")
def _u32(b0: int, b1: int, b2: int, b3: int, big: bool) -> int:
    if big:
        return (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
    return (b3 << 24) | (b2 << 16) | (b1 << 8) | b0


def _walk_pcap_variant(go: bool):  # type: ignore[no-untyped-def]
    """:func:`walk_pcap` (``go`` False) or its ``compat: go`` twin; see "Go compatibility"."""

    def walk(  # type: ignore[no-untyped-def]
        buf,
        pos,
        end,
        big_endian,
        frac_to_ns,
        rec_header_len,
        max_caplen,
        linktype,
        ts_col,
        src_col,
        dst_col,
        sport_col,
        dport_col,
        proto_col,
        len_col,
        ver_col,
        n,
        capacity,
        counters,
    ):
        """Walk classic pcap records in ``buf[pos:end]``; returns ``(pos, n, reason)``.

        ``frac_to_ns`` is 1000 for microsecond files and 1 for nanosecond files; ``rec_header_len``
        is 16, or 24 for the Kuznetzov "modified" format.
        """
        src_w = src_col.view(np.uint64)  # the 16 address bytes of a row as two native words
        dst_w = dst_col.view(np.uint64)
        while n < capacity:
            if pos + rec_header_len > end:
                return pos, n, NEED_MORE
            sec = _u32(
                np.int64(buf[pos]), np.int64(buf[pos + 1]), np.int64(buf[pos + 2]), np.int64(buf[pos + 3]),
                big_endian,
            )  # fmt: skip
            frac = _u32(
                np.int64(buf[pos + 4]), np.int64(buf[pos + 5]),
                np.int64(buf[pos + 6]), np.int64(buf[pos + 7]),
                big_endian,
            )  # fmt: skip
            caplen = _u32(
                np.int64(buf[pos + 8]), np.int64(buf[pos + 9]),
                np.int64(buf[pos + 10]), np.int64(buf[pos + 11]),
                big_endian,
            )  # fmt: skip
            wirelen = _u32(
                np.int64(buf[pos + 12]), np.int64(buf[pos + 13]), np.int64(buf[pos + 14]),
                np.int64(buf[pos + 15]), big_endian,
            )  # fmt: skip
            if caplen > max_caplen:
                return pos, n, CORRUPT_CAPLEN
            data = pos + rec_header_len
            if data + caplen > end:
                return pos, n, NEED_MORE
            counters[COUNTER_FRAMES] += 1
            status, version, l3, proto, sport, dport = decode_frame(buf, data, caplen, linktype, go)
            pos = data + caplen
            if status != OK:
                counters[COUNTER_SKIP_BASE + status] += 1
                continue
            ts_col[n] = sec * 1_000_000_000 + frac * frac_to_ns
            src_w[n, 0], src_w[n, 1], dst_w[n, 0], dst_w[n, 1] = _address_words(buf, l3, version)
            sport_col[n], dport_col[n], proto_col[n] = sport, dport, proto
            len_col[n], ver_col[n] = wirelen, version
            counters[COUNTER_PACKETS] += 1
            counters[COUNTER_BYTES] += wirelen
            n += 1
        return pos, n, OUT_FULL

    walk.__name__ = walk.__qualname__ = "walk_pcap_go" if go else "walk_pcap"
    return njit(cache=True, nogil=True)(walk)


walk_pcap = _walk_pcap_variant(False)
walk_pcap_go = _walk_pcap_variant(True)


@njit(cache=True, nogil=True, inline="always")
def _units_to_ns(units: int, exponent: int, binary: bool) -> int:
    """pcapng timestamp units (10^-e or 2^-e seconds) to nanoseconds, in integers."""
    if binary:
        if exponent <= 32:
            whole = units >> exponent
            part = units & ((1 << exponent) - 1)
            return whole * 1_000_000_000 + ((part * 1_000_000_000) >> exponent)
        return int(np.int64(np.float64(units) / (2.0**exponent) * 1e9))
    if exponent <= 9:
        scale = 1
        for _ in range(9 - exponent):
            scale *= 10
        return units * scale
    scale = 1
    for _ in range(min(exponent - 9, 18)):
        scale *= 10
    return units // scale


def _walk_pcapng_variant(go: bool):  # type: ignore[no-untyped-def]
    """:func:`walk_pcapng` (``go`` False) or its ``compat: go`` twin; see "Go compatibility"."""

    def walk(  # type: ignore[no-untyped-def]
        buf,
        pos,
        end,
        big_endian,
        max_block,
        if_linktype,
        if_ts_exponent,
        if_ts_binary,
        if_ts_offset_ns,
        if_snaplen,
        n_interfaces,
        ts_col,
        src_col,
        dst_col,
        sport_col,
        dport_col,
        proto_col,
        len_col,
        ver_col,
        n,
        capacity,
        counters,
    ):
        """Walk pcapng blocks of one section in ``buf[pos:end]``; returns ``(pos, n, reason)``.

        Enhanced (6), simple (3) and obsolete (2) packet blocks are parsed; section (SHB) and
        interface (IDB) blocks return ``NEED_HEADER`` once complete; every other block is skipped.
        """
        src_w = src_col.view(np.uint64)  # the 16 address bytes of a row as two native words
        dst_w = dst_col.view(np.uint64)
        while n < capacity:
            if pos + 12 > end:
                return pos, n, NEED_MORE
            btype = _u32(
                np.int64(buf[pos]), np.int64(buf[pos + 1]), np.int64(buf[pos + 2]), np.int64(buf[pos + 3]),
                big_endian,
            )  # fmt: skip
            if btype == PCAPNG_SHB:
                return pos, n, NEED_HEADER
            blen = _u32(
                np.int64(buf[pos + 4]), np.int64(buf[pos + 5]),
                np.int64(buf[pos + 6]), np.int64(buf[pos + 7]),
                big_endian,
            )  # fmt: skip
            if blen < 12 or blen % 4 != 0 or blen > max_block:
                return pos, n, CORRUPT_BLOCK
            if pos + blen > end:
                return pos, n, NEED_MORE
            if btype == PCAPNG_IDB:
                return pos, n, NEED_HEADER
            if btype in (PCAPNG_EPB, PCAPNG_OPB, PCAPNG_SPB):
                if btype == PCAPNG_SPB:
                    if blen < 16:
                        return pos, n, CORRUPT_BLOCK
                    wirelen = _u32(
                        np.int64(buf[pos + 8]), np.int64(buf[pos + 9]), np.int64(buf[pos + 10]),
                        np.int64(buf[pos + 11]), big_endian,
                    )  # fmt: skip
                    caplen = min(wirelen, blen - 16)
                    if n_interfaces > 0 and if_snaplen[0] > 0:
                        caplen = min(caplen, if_snaplen[0])
                    iface = 0
                    data = pos + 12
                    units = np.int64(0)
                else:
                    if blen < 32:
                        return pos, n, CORRUPT_BLOCK
                    if btype == PCAPNG_EPB:
                        iface = _u32(
                            np.int64(buf[pos + 8]), np.int64(buf[pos + 9]), np.int64(buf[pos + 10]),
                            np.int64(buf[pos + 11]), big_endian,
                        )  # fmt: skip
                    elif big_endian:
                        iface = (np.int64(buf[pos + 8]) << 8) | np.int64(buf[pos + 9])
                    else:
                        iface = (np.int64(buf[pos + 9]) << 8) | np.int64(buf[pos + 8])
                    hi = _u32(
                        np.int64(buf[pos + 12]), np.int64(buf[pos + 13]), np.int64(buf[pos + 14]),
                        np.int64(buf[pos + 15]), big_endian,
                    )  # fmt: skip
                    lo = _u32(
                        np.int64(buf[pos + 16]), np.int64(buf[pos + 17]), np.int64(buf[pos + 18]),
                        np.int64(buf[pos + 19]), big_endian,
                    )  # fmt: skip
                    caplen = _u32(
                        np.int64(buf[pos + 20]), np.int64(buf[pos + 21]), np.int64(buf[pos + 22]),
                        np.int64(buf[pos + 23]), big_endian,
                    )  # fmt: skip
                    wirelen = _u32(
                        np.int64(buf[pos + 24]), np.int64(buf[pos + 25]), np.int64(buf[pos + 26]),
                        np.int64(buf[pos + 27]), big_endian,
                    )  # fmt: skip
                    if caplen > blen - 32:
                        return pos, n, CORRUPT_CAPLEN
                    data = pos + 28
                    units = (hi << 32) | lo
                counters[COUNTER_FRAMES] += 1
                if iface >= n_interfaces:
                    counters[COUNTER_SKIP_BASE + UNKNOWN_INTERFACE] += 1
                    pos += blen
                    continue
                status, version, l3, proto, sport, dport = decode_frame(
                    buf, data, caplen, if_linktype[iface], go
                )
                if status != OK:
                    counters[COUNTER_SKIP_BASE + status] += 1
                    pos += blen
                    continue
                ts_col[n] = (
                    _units_to_ns(units, if_ts_exponent[iface], if_ts_binary[iface] != 0)
                    + if_ts_offset_ns[iface]
                )
                src_w[n, 0], src_w[n, 1], dst_w[n, 0], dst_w[n, 1] = _address_words(buf, l3, version)
                sport_col[n], dport_col[n], proto_col[n] = sport, dport, proto
                len_col[n], ver_col[n] = wirelen, version
                counters[COUNTER_PACKETS] += 1
                counters[COUNTER_BYTES] += wirelen
                n += 1
            pos += blen
        return pos, n, OUT_FULL

    walk.__name__ = walk.__qualname__ = "walk_pcapng_go" if go else "walk_pcapng"
    return njit(cache=True, nogil=True)(walk)


walk_pcapng = _walk_pcapng_variant(False)
walk_pcapng_go = _walk_pcapng_variant(True)


# -- AF_PACKET ring walker ----------------------------------------------------------------------
# The live probe's loop (netspectra.probe.sources.afpacket owns the socket and the ring). It lives
# here, with the file walkers, for the same cache reason: in another module its cached machine
# code would keep a stale copy of decode_frame after an edit of this file.

TP_STATUS_USER = 1
#: Offset of sockaddr_ll.sll_pkttype in a frame: after the 48-byte tpacket3_hdr, 10 bytes in.
TPACKET3_PKTTYPE_OFFSET = 48 + 10
PACKET_OUTGOING = 4


def _walk_tpacket_v3_variant(go: bool):  # type: ignore[no-untyped-def]
    """:func:`walk_tpacket_v3` (``go`` False) or its ``compat: go`` twin; see "Go compatibility"."""

    def walk(  # type: ignore[no-untyped-def]
        ring,
        block_size,
        block_nr,
        block,
        linktype,
        skip_outgoing,
        ts,
        src,
        dst,
        sport,
        dport,
        proto,
        length,
        ver,
        skips,
        state,
    ):
        """Walk the ready blocks of an AF_PACKET TPACKET_V3 ring from ``block``; returns rows written.

        ``ring`` is the mmap-ed ring as uint8, ``state`` int64 ``[next block, frames seen]``, ``skips``
        int64 per status. A walked block is handed back to the kernel (status word zeroed). With
        ``skip_outgoing`` (loopback) frames the host sends are dropped: ``lo`` shows each packet leaving
        and arriving, and libpcap keeps one. Stops before a block that no longer fits the columns.
        """
        rows = 0
        capacity = ts.shape[0]
        src_w = src.view(np.uint64)  # the 16 address bytes of a row as two native words
        dst_w = dst.view(np.uint64)
        while True:
            base = block * block_size
            status = np.uint32(ring[base + 8]) | (np.uint32(ring[base + 9]) << 8)
            if (status & TP_STATUS_USER) == 0:
                break
            num = (
                np.int64(ring[base + 12])
                | (np.int64(ring[base + 13]) << 8)
                | (np.int64(ring[base + 14]) << 16)
                | (np.int64(ring[base + 15]) << 24)
            )
            if rows + num > capacity:
                break
            pkt = base + (
                np.int64(ring[base + 16])
                | (np.int64(ring[base + 17]) << 8)
                | (np.int64(ring[base + 18]) << 16)
                | (np.int64(ring[base + 19]) << 24)
            )
            for _ in range(num):
                nxt = (
                    np.int64(ring[pkt])
                    | (np.int64(ring[pkt + 1]) << 8)
                    | (np.int64(ring[pkt + 2]) << 16)
                    | (np.int64(ring[pkt + 3]) << 24)
                )
                sec = (
                    np.int64(ring[pkt + 4])
                    | (np.int64(ring[pkt + 5]) << 8)
                    | (np.int64(ring[pkt + 6]) << 16)
                    | (np.int64(ring[pkt + 7]) << 24)
                )
                nsec = (
                    np.int64(ring[pkt + 8])
                    | (np.int64(ring[pkt + 9]) << 8)
                    | (np.int64(ring[pkt + 10]) << 16)
                    | (np.int64(ring[pkt + 11]) << 24)
                )
                caplen = (
                    np.int64(ring[pkt + 12])
                    | (np.int64(ring[pkt + 13]) << 8)
                    | (np.int64(ring[pkt + 14]) << 16)
                    | (np.int64(ring[pkt + 15]) << 24)
                )
                wire = (
                    np.int64(ring[pkt + 16])
                    | (np.int64(ring[pkt + 17]) << 8)
                    | (np.int64(ring[pkt + 18]) << 16)
                    | (np.int64(ring[pkt + 19]) << 24)
                )
                mac = np.int64(ring[pkt + 24]) | (np.int64(ring[pkt + 25]) << 8)
                off = pkt + mac
                if skip_outgoing and ring[pkt + TPACKET3_PKTTYPE_OFFSET] == PACKET_OUTGOING:
                    pkt += nxt  # loopback: every packet is seen leaving and arriving; keep one (as libpcap)
                    continue
                result, version, l3, p, sp, dp = decode_frame(ring, off, caplen, linktype, go)
                state[1] += 1
                if result != OK:
                    skips[result] += 1
                else:
                    ts[rows] = sec * 1_000_000_000 + nsec
                    src_w[rows, 0], src_w[rows, 1], dst_w[rows, 0], dst_w[rows, 1] = _address_words(
                        ring, l3, version
                    )
                    sport[rows], dport[rows], proto[rows] = sp, dp, p
                    length[rows], ver[rows] = wire, version
                    rows += 1
                pkt += nxt
            # hand the block back to the kernel
            ring[base + 8] = 0
            ring[base + 9] = 0
            ring[base + 10] = 0
            ring[base + 11] = 0
            block = (block + 1) % block_nr
        state[0] = block
        return rows

    walk.__name__ = walk.__qualname__ = "walk_tpacket_v3_go" if go else "walk_tpacket_v3"
    return njit(cache=True, nogil=True)(walk)


walk_tpacket_v3 = _walk_tpacket_v3_variant(False)
walk_tpacket_v3_go = _walk_tpacket_v3_variant(True)
