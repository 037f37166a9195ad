"""The state format, version 2 (shuffled, narrowed, one zstd frame per array) and version 1 (zlib).

Truth: the arrays the sketch itself holds (``state_arrays``), and, for the old format, the same
state written as version 1, which stores keep: both must decode to the same arrays, merge to the
same sketch, and a damaged version-2 state must be refused as a damaged version-1 one is.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from netspectra.engine.sketch.count_min import CountMin, CountMinParams
from netspectra.engine.sketch.merging import labelled, merge_states
from netspectra.engine.sketch.protocol import SketchStateError, StateArrays, decode_state, encode_state
from netspectra.model.fields import KeyField
from netspectra.model.snapshot import HitterKind
from tests.unit.sketch.sketch_traffic import zipf_trace

SRC = (KeyField.SRC_IP,)
PARAMS = CountMinParams(width=2048, depth=2, count_thereshold=40, size_thereshold=40_000, candidates=256)


def sketch(seed: int) -> CountMin:
    trace = zipf_trace(packets=20_000, flows=5_000, alpha=1.1, seed=seed)
    out = CountMin(PARAMS, flow_fields=SRC)
    out.insert(trace.flow_keys, trace.element_keys, trace.sizes)
    return out


def version_1(of: CountMin) -> bytes:
    return encode_state(
        of.algorithm_name(), of.params.counting_params(), of.flow_fields, of.element_fields,
        of.state_arrays(), version=1,
    )  # fmt: skip


def header(data: bytes) -> dict[str, object]:
    (length,) = struct.unpack_from("<I", data, 6)
    return dict(json.loads(data[10 : 10 + length]))


def reframe(data: bytes, body: bytes) -> bytes:
    """``body`` (everything before the CRC) with a CRC that matches it: damage the CRC cannot see."""
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_both_versions_decode_to_the_sketchs_own_arrays() -> None:
    source = sketch(1)
    arrays = source.state_arrays()
    new, old = source.to_bytes(), version_1(source)
    assert (new[4], old[4]) == (2, 1)
    assert len(new) < len(old)  # shuffled + zstd is smaller than zlib of the raw counters
    for data in (new, old):
        state = decode_state(data)
        assert set(state.arrays) == set(arrays)
        for name, array in arrays.items():
            got = state.arrays[name]
            assert got.dtype == array.dtype and got.shape == array.shape, name
            assert np.array_equal(got, array), name
    # unsigned counters are stored in the width their largest value needs; the packets plane of
    # the linear counters is a frame of its own
    linear = next(spec for spec in header(new)["arrays"] if spec["name"] == "linear")  # type: ignore[attr-defined]
    assert len(linear["frames"]) == 2
    assert [width for width, _ in linear["frames"]] == [
        max(1, -(-int(plane.max()).bit_length() // 8)) for plane in arrays["linear"]
    ]


def test_a_value_above_32_bits_keeps_every_byte() -> None:
    arrays = {"big": np.array([0, 1, 2**40 + 5, 2**64 - 1], np.uint64), "signed": np.array([-3, 7], np.int64)}
    state = decode_state(encode_state("x", {}, SRC, (), arrays))
    assert np.array_equal(state.arrays["big"], arrays["big"]) and state.arrays["big"].dtype == np.uint64
    assert np.array_equal(state.arrays["signed"], arrays["signed"])


def test_old_and_new_rows_merge_to_the_same_sketch() -> None:
    sources = [sketch(seed) for seed in range(6)]
    new = [labelled(f"epoch {i}", s.to_bytes()) for i, s in enumerate(sources)]
    mixed = [labelled(f"epoch {i}", version_1(s) if i % 2 else s.to_bytes()) for i, s in enumerate(sources)]
    for kinds in ([HitterKind.COUNT], [HitterKind.SIZE], [HitterKind.COUNT, HitterKind.SIZE]):
        expected = merge_states("t", CountMin, new, kinds)
        got = merge_states("t", CountMin, mixed, kinds)
        assert isinstance(expected, CountMin) and isinstance(got, CountMin)
        assert np.array_equal(expected.linear_counts, got.linear_counts)
        assert np.array_equal(expected.linear_bytes, got.linear_bytes)
        for kind in kinds:
            assert expected.top_hitters(kind, 500) == got.top_hitters(kind, 500)
            assert expected.top_hitters(kind, 500)
    # merging by one kind adds only that kind's linear counters; the sum is the sketches' own
    packets = merge_states("t", CountMin, new, [HitterKind.COUNT])
    assert isinstance(packets, CountMin)
    assert np.array_equal(packets.linear_counts, sum(s.linear_counts for s in sources))
    assert not packets.linear_bytes.any()


def test_add_into_is_adding_the_decoded_array() -> None:
    source = sketch(2)
    linear = source.state_arrays()["linear"]
    for plane in (None, 0, 1):
        state = decode_state(source.to_bytes())
        assert isinstance(state.arrays, StateArrays)
        assert state.arrays.nbytes == sum(a.nbytes for a in source.state_arrays().values())
        target = np.full(linear.shape if plane is None else linear.shape[1:], 3, np.uint64)
        state.arrays.add_into("linear", target, plane)  # from the stored bytes
        assert np.array_equal(target, 3 + (linear if plane is None else linear[plane]))
        state.arrays["linear"]  # decoded now: the same sum from the array
        state.arrays.add_into("linear", target, plane)
        assert np.array_equal(target, 3 + 2 * (linear if plane is None else linear[plane]))
    with pytest.raises(SketchStateError, match="does not fit"):
        decode_state(source.to_bytes()).arrays.add_into("linear", np.zeros(5, np.uint64))


def test_damaged_version_2_states_are_refused_naming_the_fault() -> None:
    data = sketch(3).to_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    with pytest.raises(SketchStateError, match=r"corrupted.*CRC32"):
        CountMin.from_bytes(bytes(flipped))
    with pytest.raises(SketchStateError, match=r"CRC32|truncated"):
        CountMin.from_bytes(data[: len(data) - 100])
    # damage the CRC cannot see (a writer's bug): frames that do not add up, a frame that does
    # not decompress, a width wider than the dtype
    body = data[:-4]
    with pytest.raises(SketchStateError, match="frames claim"):
        decode_state(reframe(data, body + b"\0"))
    (length,) = struct.unpack_from("<I", data, 6)
    payload_at = 10 + length
    garbled = bytearray(body)
    garbled[payload_at + 8] ^= 0xFF
    with pytest.raises(SketchStateError, match=r"decompress|truncated"):
        CountMin.from_bytes(reframe(data, bytes(garbled)))
    spec = header(data)
    spec["arrays"][0]["frames"][0][0] = 9  # type: ignore[index]
    text = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    wide = data[:6] + struct.pack("<I", len(text)) + text + body[payload_at:]
    with pytest.raises(SketchStateError, match="malformed"):
        decode_state(reframe(data, wide))
    newer = bytearray(body)
    newer[4] = 3
    with pytest.raises(SketchStateError, match=r"version 3 .*versions 1 and 2"):
        decode_state(reframe(data, bytes(newer)))


def test_to_bytes_is_deterministic_and_round_trips() -> None:
    source = sketch(4)
    data = source.to_bytes()
    assert data == source.to_bytes()
    again = CountMin.from_bytes(data)
    assert again.to_bytes() == data
    assert CountMin.from_bytes(version_1(source)).to_bytes() == data  # an old row re-encodes as new
