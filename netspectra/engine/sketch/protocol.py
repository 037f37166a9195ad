"""The contract every sketch algorithm (built-in or third-party) fulfils.

An algorithm is a class registered under the entry-point group ``netspectra.sketches``. It
declares ``Params`` (a pydantic model of its own config keys, validated when the task is
built, so a typo fails at start-up naming the task), and works on whole batches: the group
hands it numpy key matrices built once per batch, never single packets.

Sketches are state, and state merges: a ``mergeable`` algorithm writes its state as bytes
(:meth:`SketchBase.to_bytes`), and several engines' states (or several epochs') are read back
and merged into one answer. The byte format (:func:`encode_state`) is::

    b"NSSK" | format version (u16 LE) | header length (u32 LE) | header (JSON, UTF-8)
           | payload | CRC32 of everything before it (u32 LE)

The header names the algorithm, its counting parameters (seeds included), the key fields and
each array's name, dtype and shape; the payload is the arrays' bytes, in header order. A merge
compares algorithm, parameters and fields and refuses a difference by name, so two sketches
that hash differently can never be added cell by cell.

Version 2 (written since the cold heavy-hitter query was measured at 0.6 s, most of it zlib)
stores each array byte-shuffled (:mod:`~netspectra.engine.sketch.state_kernels`), unsigned
counters in the narrowest width holding their largest value (each array's ``stored`` bytes per
element in the header), and compresses the payload with zstd level 1 (pyarrow's codec): a
100 k-packet epoch of a 32768 x 2 count_min is ~95 kB instead of zlib's ~160 kB, and decodes in
~0.3 ms instead of ~3 ms (encodes in ~1 ms instead of ~18 ms). The arrays a decoder returns
have the header's dtype, whatever width they were stored in. Version 1 (payload zlib of the
arrays' raw bytes) is still read, so states stored before stay readable; any other version is
refused by number.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import numpy.typing as npt

from netspectra.engine.sketch.params import SketchParams
from netspectra.errors import PluginError
from netspectra.model.fields import KeyField
from netspectra.model.keys import flow_text, key_width
from netspectra.model.snapshot import HeavyHitter, HitterKind

KeyMatrix = npt.NDArray[np.uint8]
"""A ``(n, key_width)`` uint8 matrix, one key per row (see :mod:`netspectra.model.keys`)."""


STATE_MAGIC = b"NSSK"
STATE_FORMAT_VERSION = 2
#: Versions :func:`decode_state` reads (1: zlib of raw arrays, 2: shuffled arrays, zstd).
READABLE_STATE_VERSIONS = (1, 2)
_PREAMBLE = struct.Struct("<4sHI")  # magic, format version, header length
_CRC = struct.Struct("<I")
_MAX_HEADER = 1 << 20
_V2_CODEC = "zstd+shuffle"


class SketchStateError(PluginError):
    """Bytes that are not a readable sketch state (truncated, corrupted, wrong algorithm or version)."""


@dataclass(frozen=True, slots=True)
class SketchState:
    """A decoded state: what :func:`decode_state` found, checksum verified."""

    algorithm: str
    params: dict[str, Any]
    flow_fields: tuple[KeyField, ...]
    element_fields: tuple[KeyField, ...]
    #: a dict (version 1), or :class:`StateArrays` decompressing each array on first use (version 2)
    arrays: Mapping[str, npt.NDArray[Any]]


def _zstd() -> Any:
    """pyarrow's zstd codec, None where this pyarrow build lacks it (then version 1 is written)."""
    import pyarrow as pa

    return pa.Codec("zstd", compression_level=1) if pa.Codec.is_available("zstd") else None


def _narrows(dtype: np.dtype[Any]) -> bool:
    """Unsigned integers in native order are stored by value, in as few bytes as they need."""
    return dtype.kind == "u" and dtype.isnative


def _as_unsigned(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """A flat unsigned view of ``array``'s memory: elements of 1, 2, 4 or 8 bytes shuffle as one
    unsigned word each (other dtypes byte by byte), so one kernel shuffles every dtype."""
    flat = array.reshape(-1)
    if _narrows(array.dtype):
        return flat
    size = array.dtype.itemsize
    return flat.view(f"u{size}") if size in (1, 2, 4, 8) else flat.view(np.uint8)


def _stored_width(array: npt.NDArray[Any]) -> int:
    if not _narrows(array.dtype):
        return _as_unsigned(array).dtype.itemsize
    largest = int(array.max()) if array.size else 0
    return max(1, -(-largest.bit_length() // 8))


def encode_state(
    algorithm: str,
    params: Mapping[str, Any],
    flow_fields: Sequence[KeyField],
    element_fields: Sequence[KeyField],
    arrays: Mapping[str, npt.NDArray[Any]],
    *,
    level: int = 1,
    version: int = STATE_FORMAT_VERSION,
    planes: frozenset[str] = frozenset(),
) -> bytes:
    """The versioned, checksummed bytes of one sketch's state (see the module docstring).

    Version 2 compresses each array on its own (a reader decompresses only the arrays it uses),
    and each array named in ``planes`` one frame per index of its first axis (count_min's linear
    counters: packets and bytes, so a query by packets decompresses a third of them). ``version``
    1 writes the old format (zlib at ``level``: ~300 MB/s), for tests of stores written before;
    it is also what a pyarrow without zstd gets.
    """
    if version not in READABLE_STATE_VERSIONS:
        raise ValueError(f"sketch state format version {version} is not writable here")
    contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    codec = _zstd() if version == 2 else None
    specs: list[dict[str, Any]] = []
    frames: list[bytes] = []
    for name, array in contiguous.items():
        spec: dict[str, Any] = {"name": name, "dtype": array.dtype.str, "shape": list(array.shape)}
        if codec is not None:
            split = name in planes and array.ndim >= 2 and array.shape[0] > 0
            entries = []
            for part in [array[index] for index in range(array.shape[0])] if split else [array]:
                width = _stored_width(part)
                data = codec.compress(_shuffled(part, width), asbytes=True) if part.size else b""
                entries.append([width, len(data)])
                frames.append(data)
            spec["frames"] = entries
        specs.append(spec)
    header = json.dumps(
        {
            "algorithm": algorithm,
            "params": dict(params),
            "flow_fields": [str(field.value) for field in flow_fields],
            "element_fields": [str(field.value) for field in element_fields],
            "arrays": specs,
            "codec": _V2_CODEC if codec is not None else "zlib",
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    if codec is not None:
        version, payload = 2, b"".join(frames)
    else:
        version = 1
        compressor = zlib.compressobj(level)
        payload = b"".join(compressor.compress(array.data) for array in contiguous.values() if array.size)
        payload += compressor.flush()
    body = _PREAMBLE.pack(STATE_MAGIC, version, len(header)) + header + payload
    return body + _CRC.pack(zlib.crc32(body))


def _shuffled(array: npt.NDArray[Any], width: int) -> bytes:
    """One array's byte planes, ``width`` bytes of each element (the version-2 frame, uncompressed)."""
    from netspectra.engine.sketch import state_kernels as kernels

    words = _as_unsigned(array)
    out = np.empty(words.size * width, np.uint8)
    kernels.shuffle_into(words, width, out)
    return out.tobytes()


def decode_state(data: bytes | bytearray | memoryview) -> SketchState:
    """Parse and verify a state; :class:`SketchStateError` says what is wrong with it."""
    raw = data if isinstance(data, bytes) else bytes(data)
    if len(raw) < _PREAMBLE.size + _CRC.size:
        raise SketchStateError(
            f"sketch state is truncated: {len(raw)} bytes, shorter than the {_PREAMBLE.size + _CRC.size}"
            "-byte frame"
        )
    magic, version, header_length = _PREAMBLE.unpack_from(raw)
    if magic != STATE_MAGIC:
        raise SketchStateError(f"not a NetSpectra sketch state: magic {magic!r}, expected {STATE_MAGIC!r}")
    if version not in READABLE_STATE_VERSIONS:
        readable = " and ".join(str(known) for known in READABLE_STATE_VERSIONS)
        raise SketchStateError(
            f"sketch state format version {version} is not readable here (this NetSpectra reads "
            f"versions {readable})"
        )
    if header_length > _MAX_HEADER or _PREAMBLE.size + header_length + _CRC.size > len(raw):
        raise SketchStateError(
            f"sketch state is truncated: {len(raw)} bytes, its header alone claims {header_length}"
        )
    (stored_crc,) = _CRC.unpack_from(raw, len(raw) - _CRC.size)
    computed = zlib.crc32(memoryview(raw)[: -_CRC.size])
    if stored_crc != computed:
        raise SketchStateError(
            f"sketch state is corrupted or truncated: CRC32 {computed:#010x} of its {len(raw)} bytes "
            f"does not match the stored {stored_crc:#010x}"
        )
    start = _PREAMBLE.size
    try:
        header = json.loads(raw[start : start + header_length])
        algorithm = str(header["algorithm"])
        specs = [
            (
                str(a["name"]),
                np.dtype(a["dtype"]),
                tuple(int(n) for n in a["shape"]),
                [(int(width), int(length)) for width, length in a["frames"]] if version == 2 else [],
            )
            for a in header["arrays"]
        ]
        flow_fields = tuple(KeyField(f) for f in header["flow_fields"])
        element_fields = tuple(KeyField(f) for f in header["element_fields"])
        params = dict(header["params"])
    except (ValueError, KeyError, TypeError) as error:
        raise SketchStateError(f"sketch state header is malformed: {error}") from error
    payload = memoryview(raw)[start + header_length : -_CRC.size]
    arrays: Mapping[str, npt.NDArray[Any]]
    if version == 1:
        arrays = _arrays_v1(algorithm, specs, payload)
    else:
        if header.get("codec") != _V2_CODEC:
            raise SketchStateError(
                f"sketch state of {algorithm!r} names codec {header.get('codec')!r}, not {_V2_CODEC!r}"
            )
        arrays = StateArrays(algorithm, specs, payload)
    return SketchState(algorithm, params, flow_fields, element_fields, arrays)


Spec = tuple[str, np.dtype[Any], tuple[int, ...], list[tuple[int, int]]]


def _arrays_v1(algorithm: str, specs: Sequence[Spec], compressed: memoryview) -> dict[str, npt.NDArray[Any]]:
    try:
        payload = zlib.decompress(compressed)
    except zlib.error as error:
        raise SketchStateError(
            f"sketch state payload of {algorithm!r} does not decompress: {error}"
        ) from error
    arrays: dict[str, npt.NDArray[Any]] = {}
    offset = 0
    for name, dtype, shape, _ in specs:
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = dtype.itemsize * count
        if offset + nbytes > len(payload):
            raise SketchStateError(
                f"sketch state of {algorithm!r} is truncated: array {name!r} {shape} needs {nbytes} bytes "
                f"at offset {offset}, the payload has {len(payload)}"
            )
        arrays[name] = np.frombuffer(payload, dtype, count, offset).reshape(shape).copy()
        offset += nbytes
    if offset != len(payload):
        raise SketchStateError(
            f"sketch state of {algorithm!r} has {len(payload) - offset} bytes after its last array"
        )
    return arrays


@dataclass(frozen=True, slots=True)
class _Frame:
    width: int  # stored bytes per element
    start: int  # offset in the payload
    length: int  # compressed bytes


class StateArrays(Mapping[str, npt.NDArray[Any]]):
    """The arrays of a version-2 state, each decompressed on first use (a merge by packets never
    decompresses the byte counters), in the dtype the header names whatever width they were
    stored in. The layout (frame offsets and sizes, widths) is checked when the state is decoded;
    a frame that still does not decompress raises :class:`SketchStateError` when it is used."""

    def __init__(self, algorithm: str, specs: Sequence[Spec], payload: memoryview) -> None:
        self._algorithm = algorithm
        self._payload = payload
        self._codec = _zstd()
        if self._codec is None:
            raise SketchStateError(
                f"sketch state of {algorithm!r} is zstd-compressed (format version 2) and this "
                "pyarrow has no zstd codec"
            )
        self._specs: dict[str, tuple[np.dtype[Any], tuple[int, ...], list[_Frame]]] = {}
        self._decoded: dict[str, npt.NDArray[Any]] = {}
        offset = 0
        for name, dtype, shape, entries in specs:
            count = int(np.prod(shape, dtype=np.int64))
            if len(entries) not in {1, shape[0] if shape else 1} or (count and not entries):
                raise SketchStateError(
                    f"sketch state header is malformed: array {name!r} {shape} in {len(entries)} frames"
                )
            frames = []
            word = _as_unsigned(np.empty(0, dtype)).dtype.itemsize
            for width, length in entries:
                if not 1 <= width <= word or (width != word and not _narrows(dtype)):
                    raise SketchStateError(
                        f"sketch state header is malformed: array {name!r} of {dtype} stored in {width} bytes"
                    )
                frames.append(_Frame(width, offset, length))
                offset += length
            self._specs[name] = (dtype, tuple(shape), frames)
        if offset != len(payload):
            raise SketchStateError(
                f"sketch state of {algorithm!r} is truncated or malformed: its frames claim {offset} "
                f"payload bytes, it has {len(payload)}"
            )

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        known = self._decoded.get(name)
        if known is None:
            dtype, shape, frames = self._specs[name]
            known = np.empty(shape, dtype)
            flat = known.reshape(len(frames), -1) if frames else known.reshape(0, 0)
            for index, frame in enumerate(frames):
                self._into(frame, flat[index], add=False)
            self._decoded[name] = known
        return known

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def shape_of(self, name: str) -> tuple[int, ...]:
        """``self[name].shape`` without decompressing it."""
        return self._specs[name][1]

    @property
    def nbytes(self) -> int:
        """Bytes of every array once decompressed (whether or not it is yet)."""
        return sum(
            dtype.itemsize * int(np.prod(shape, dtype=np.int64)) for dtype, shape, _ in self._specs.values()
        )

    def add_into(self, name: str, out: npt.NDArray[Any], plane: int | None = None) -> None:
        """``out += self[name]`` (or ``self[name][plane]``), without decompressing the other planes
        or making the array when it was not made yet: a merge adds 96 states' counters this way."""
        dtype, shape, frames = self._specs[name]
        want = shape if plane is None else shape[1:]
        if out.shape != tuple(want):
            raise SketchStateError(
                f"sketch state of {self._algorithm!r}: array {name!r} {want} does not fit {out.shape}"
            )
        direct = _narrows(dtype) and out.dtype.kind == "u" and out.dtype.itemsize >= dtype.itemsize
        if name not in self._decoded and direct and out.flags.c_contiguous:
            if plane is None:
                flat = out.reshape(len(frames), -1)
                for index, frame in enumerate(frames):
                    self._into(frame, flat[index], add=True)
                return
            if len(frames) > 1:
                self._into(frames[plane], out.reshape(-1), add=True)
                return
        np.add(out, self[name] if plane is None else self[name][plane], out=out)

    def _into(self, frame: _Frame, out: npt.NDArray[Any], *, add: bool) -> None:
        from netspectra.engine.sketch import state_kernels as kernels

        out = _as_unsigned(out)
        count = out.shape[0]
        if not count:
            return
        assert self._codec is not None
        size = count * frame.width
        try:
            data = self._codec.decompress(
                self._payload[frame.start : frame.start + frame.length], decompressed_size=size
            )
        except Exception as error:  # pyarrow raises OSError or ArrowException subclasses
            raise SketchStateError(
                f"sketch state payload of {self._algorithm!r} does not decompress to {size} bytes: {error}"
            ) from error
        planes = np.frombuffer(data, np.uint8)
        if planes.size != size:
            raise SketchStateError(
                f"sketch state of {self._algorithm!r} is truncated: a frame holds {planes.size} bytes, "
                f"its array needs {size}"
            )
        if add:
            kernels.unshuffle_add(planes, frame.width, out)
        else:
            kernels.unshuffle_into(planes, frame.width, out)


def peek_algorithm(data: bytes | bytearray | memoryview) -> str:
    """The algorithm name a state was written by (checksum verified), to pick the class that reads it."""
    return decode_state(data).algorithm


def sorted_unique_rows(
    keys: npt.NDArray[np.uint8],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(order, starts, group of each sorted row) of byte rows, in byte order, as ``np.unique`` sorts.

    ``np.unique(axis=0)`` sorts rows as a void dtype, ~15 ms for 2 k rows; big-endian uint64 words
    sorted with lexsort give the same order ~50x faster.
    """
    n, width = keys.shape
    words = -(-width // 8) or 1
    padded = np.zeros((n, words * 8), np.uint8)
    padded[:, :width] = keys
    columns = padded.view(">u8").astype(np.uint64)
    order = np.lexsort(tuple(columns[:, j] for j in reversed(range(words))))
    ordered = columns[order]
    changed = np.ones(n, bool)
    if n > 1:
        changed[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    starts = np.flatnonzero(changed)
    return order, starts, np.cumsum(changed) - 1


def unique_rows(keys: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.intp]]:
    """``np.unique(keys, axis=0, return_inverse=True)`` (same order), ~50x faster on key rows."""
    order, starts, groups = sorted_unique_rows(keys)
    inverse = np.empty(keys.shape[0], np.intp)
    inverse[order] = groups
    return keys[order[starts]], inverse


@runtime_checkable
class SketchAlgorithm(Protocol):
    """One sketch instance; the engine calls it from one thread at a time.

    Class attributes: ``Params`` (a :class:`SketchParams` subclass), ``summary`` (one line for
    ``netspectra plugins list``) and ``mergeable``. A sketch with ``mergeable = False`` still
    runs on one engine; only multi-engine and windowed answers need ``to_bytes``, ``from_bytes``
    and ``merge``, and for such a sketch they raise :class:`PluginError` saying why.
    """

    Params: ClassVar[type[SketchParams]]
    summary: ClassVar[str]
    mergeable: ClassVar[bool]

    def __init__(
        self,
        params: SketchParams,
        *,
        flow_fields: Sequence[KeyField],
        element_fields: Sequence[KeyField],
    ) -> None: ...

    def insert(self, flow_keys: KeyMatrix, element_keys: KeyMatrix, sizes: npt.NDArray[np.uint64]) -> None:
        """Count one batch: row ``i`` of each array is one packet."""

    def query(self, flow_keys: KeyMatrix) -> dict[HitterKind, npt.NDArray[np.uint64]]:
        """The current estimate of each flow, per kind this algorithm reports."""
        ...

    def heavy_hitters(self) -> tuple[HeavyHitter, ...]:
        """Flows at or above the thresholds, flow decoded to text, each kind sorted descending."""
        ...

    def reset(self) -> None:
        """Forget everything counted (start of a new period); parameters and seeds stay."""

    def merge(self, other: SketchAlgorithm) -> None:
        """Add ``other``'s counts into this sketch; raises :class:`PluginError` when incompatible."""

    def to_bytes(self) -> bytes:
        """The state that merges, as compact, versioned, checksummed bytes (:func:`encode_state`)."""
        ...

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """A sketch holding the state ``data`` (from :meth:`to_bytes`); :class:`SketchStateError`
        when the bytes are truncated, corrupted or not this algorithm's."""
        ...

    @property
    def memory_bytes(self) -> int:
        """Bytes of sketch state (the number compared across algorithms at equal memory)."""
        ...


class SketchBase:
    """Optional helper base: stores params and fields, decodes flows, checks merge compatibility."""

    Params: ClassVar[type[SketchParams]] = SketchParams
    summary: ClassVar[str] = ""
    mergeable: ClassVar[bool] = False
    #: The name written into states (the built-ins use their entry-point name); default: class name.
    state_name: ClassVar[str] = ""

    def __init__(
        self,
        params: SketchParams,
        *,
        flow_fields: Sequence[KeyField],
        element_fields: Sequence[KeyField] = (),
    ) -> None:
        self.params = params
        self.flow_fields = tuple(KeyField(f) for f in flow_fields)
        self.element_fields = tuple(KeyField(f) for f in element_fields)
        #: bytes of one flow key, and the little-endian uint64 words (zero-padded) kernels compare
        self.key_width = key_width(self.flow_fields)
        self.key_words = max(1, -(-self.key_width // 8))

    def decode_flow(self, key: bytes | npt.NDArray[np.uint8]) -> str:
        """The Go text form of one flow key, e.g. ``"10.0.0.1 443"``."""
        return flow_text(key, self.flow_fields)

    def hitters_from(
        self, keys: KeyMatrix, values: npt.NDArray[np.uint64], kind: HitterKind
    ) -> list[HeavyHitter]:
        """Records for (key, value) rows, sorted by value descending (ties: flow text, for stable files)."""
        records = [
            HeavyHitter(flow=self.decode_flow(keys[i]), value=int(values[i]), kind=kind)
            for i in range(keys.shape[0])
        ]
        records.sort(key=lambda hitter: (-hitter.value, hitter.flow))
        return records

    def cell_hitters(
        self,
        cell_keys: npt.NDArray[np.uint64],
        cell_values: npt.NDArray[np.uint64],
        threshold: int,
        kind: HitterKind,
    ) -> list[HeavyHitter]:
        """Heavy hitters from a table of cells: the distinct flows of the cells at or above
        ``threshold``, each with its largest cell value, sorted as :meth:`hitters_from` does.

        ``cell_keys`` holds each cell's flow key packed into uint64 words (last axis), ``cell_values``
        the cell values with the same leading shape. A flow may sit in several rows' cells (one per
        hash row): it is reported once, with its best estimate (Go's scan does the same).
        """
        flat_values = cell_values.reshape(-1)
        picked = np.flatnonzero(flat_values >= threshold)
        if picked.size == 0:
            return []
        width = self.key_width
        keys = cell_keys.reshape(-1, cell_keys.shape[-1])[picked].view(np.uint8)[:, :width]
        unique, inverse = unique_rows(keys)
        best = np.zeros(unique.shape[0], np.uint64)
        np.maximum.at(best, inverse.reshape(-1), flat_values[picked])
        return self.hitters_from(unique, best, kind)

    def check_mergeable(self, other: object, task: str = "") -> None:
        """Raise unless ``other`` has this exact type, parameters and key fields.

        The message names the task (when given) and each differing parameter with both values,
        so a refused merge of two engines' states says which config drifted.
        """
        name = type(self).__name__
        where = f"sketch task {task!r}: " if task else ""
        if not self.mergeable:
            raise PluginError(f"{where}{name} sketches cannot be merged")
        if type(other) is not type(self):
            raise PluginError(f"{where}cannot merge {type(other).__name__} into {name}: different algorithms")
        assert isinstance(other, SketchBase)
        mine, theirs = self.params.counting_params(), other.params.counting_params()
        if type(other.params) is not type(self.params) or mine != theirs:
            differences = ", ".join(
                f"{key} {mine.get(key)!r} vs {theirs.get(key)!r}"
                for key in sorted({*mine, *theirs})
                if mine.get(key) != theirs.get(key)
            )
            raise PluginError(f"{where}cannot merge {name} sketches with different parameters: {differences}")
        for label, ours, other_fields in (
            ("flow", self.flow_fields, other.flow_fields),
            ("element", self.element_fields, other.element_fields),
        ):
            if ours != other_fields:
                raise PluginError(
                    f"{where}cannot merge {name} sketches over different key fields: {label} fields "
                    f"{[f.value for f in ours]} vs {[f.value for f in other_fields]}"
                )

    # -- state ---------------------------------------------------------------------------------
    # A subclass that merges implements state_arrays() and load_state_arrays(); to_bytes and
    # from_bytes then frame, check and verify the bytes for it.

    @classmethod
    def algorithm_name(cls) -> str:
        return cls.state_name or cls.__name__

    def state_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """The arrays that make up the mergeable state (override together with load_state_arrays)."""
        raise PluginError(f"{type(self).__name__} sketches do not serialise their state")

    def load_state_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        """Take over ``arrays`` (names, dtypes and shapes already checked against state_arrays())."""
        raise PluginError(f"{type(self).__name__} sketches do not serialise their state")

    def to_bytes(self) -> bytes:
        if not self.mergeable:
            raise PluginError(f"{type(self).__name__} sketches cannot be merged, so they write no state")
        return encode_state(
            self.algorithm_name(),
            self.params.counting_params(),
            self.flow_fields,
            self.element_fields,
            self.state_arrays(),
            planes=self.state_planes,
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> Self:
        return cls.from_state(decode_state(data))

    @classmethod
    def blank_like(cls, state: SketchState) -> Self:
        """An empty sketch with ``state``'s parameters and key fields, its arrays not read (a merge
        that fills every array itself: count_min's ``from_sums``)."""
        name = cls.algorithm_name()
        if state.algorithm != name:
            raise SketchStateError(f"sketch state was written by {state.algorithm!r}, not {name!r}")
        try:
            params = cls.Params.model_validate(state.params)
        except ValueError as error:
            raise SketchStateError(f"sketch state of {name!r} carries invalid parameters: {error}") from error
        return cls(params, flow_fields=state.flow_fields, element_fields=state.element_fields)

    @classmethod
    def from_state(cls, state: SketchState) -> Self:
        """A sketch holding an already decoded state (a query keeps decoded epochs in a cache)."""
        name = cls.algorithm_name()
        sketch = cls.blank_like(state)
        expected = sketch.state_arrays()
        for array_name, array in expected.items():
            got = state.arrays.get(array_name)
            if got is None:
                raise SketchStateError(f"sketch state of {name!r} lacks array {array_name!r}")
            fixed_shape = array_name not in sketch.variable_state_arrays
            if (
                got.dtype != array.dtype
                or (fixed_shape and got.shape != array.shape)
                or got.ndim != array.ndim
            ):
                raise SketchStateError(
                    f"sketch state of {name!r}: array {array_name!r} is {got.dtype}{got.shape}, "
                    f"its parameters need {array.dtype}{array.shape}"
                )
        sketch.load_state_arrays({key: state.arrays[key] for key in expected})
        return sketch

    #: state arrays whose length varies (candidate lists): only their dtype and rank are checked
    variable_state_arrays: ClassVar[frozenset[str]] = frozenset()
    #: state arrays stored one frame per index of their first axis (see :func:`encode_state`)
    state_planes: ClassVar[frozenset[str]] = frozenset()
