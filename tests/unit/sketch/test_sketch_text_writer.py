"""The text writer's files, parsed back and compared with the snapshot they came from."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netspectra.config.models import WriterConfig
from netspectra.errors import ConfigError
from netspectra.model.snapshot import HeavyHitter, HitterKind, SketchResult, Snapshot
from netspectra.storage.text_writer import FILE_OF_KIND, TextWriter, hitter_files, hitter_texts

TAKEN_AT_NS = 1_700_000_000 * 10**9


def parse(path: Path) -> list[tuple[str, int]]:
    lines = path.read_text().splitlines()
    return [(line.rsplit(" ", 1)[0], int(line.rsplit(" ", 1)[1])) for line in lines]


async def test_writes_go_layout(tmp_path: Path) -> None:
    config = WriterConfig.model_validate({"type": "text", "text": {"root_path": str(tmp_path)}})
    writer = TextWriter.from_config(config, group="sketch", context=None)
    count = [
        HeavyHitter("10.0.0.1 443", 50, HitterKind.COUNT),
        HeavyHitter("10.0.0.2 80", 900, HitterKind.COUNT),
    ]
    size = [HeavyHitter("10.0.0.2 80", 123456, HitterKind.SIZE)]
    spread = [
        HeavyHitter("2001:db8::1", 7, HitterKind.SPREAD),
        HeavyHitter("192.0.2.1", 4000, HitterKind.SPREAD),
    ]
    snapshot = Snapshot(
        group="sketch",
        taken_at_ns=TAKEN_AT_NS,
        period_start_ns=0,
        sketches=(
            SketchResult("cm_all", "count_min", tuple(count + size)),
            SketchResult("ss_dst", "super_spread", tuple(spread)),
            SketchResult("cm_empty", "count_min", ()),
        ),
    )
    await writer.write(snapshot)
    await writer.close()
    directory = tmp_path / time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(1_700_000_000))
    assert sorted(p.name for p in directory.iterdir()) == ["cm_all", "cm_empty", "ss_dst"]
    assert parse(directory / "cm_all" / "count_hh.txt") == [("10.0.0.2 80", 900), ("10.0.0.1 443", 50)]
    assert parse(directory / "cm_all" / "size_hh.txt") == [("10.0.0.2 80", 123456)]
    assert parse(directory / "ss_dst" / "spread_ss.txt") == [("192.0.2.1", 4000), ("2001:db8::1", 7)]
    assert (directory / "cm_empty" / "count_hh.txt").read_text() == ""
    assert sorted(p.name for p in (directory / "cm_all").iterdir()) == ["count_hh.txt", "size_hh.txt"]


def test_refuses_exact_group(tmp_path: Path) -> None:
    config = WriterConfig.model_validate({"type": "text", "text": {"root_path": str(tmp_path)}})
    with pytest.raises(ConfigError, match="sketch heavy hitters only"):
        TextWriter.from_config(config, group="exact", context=None)


_FLOWS = st.one_of(
    st.sampled_from(["10.0.0.1 443", "10.0.0.2 80", "2001:db8::1", "", "a b"]),
    st.text(max_size=12),  # NUL, newlines, non-ASCII: the column path must fall back or agree
)
_VALUES = st.one_of(st.integers(0, 20), st.sampled_from([2**63, 2**64 - 1]), st.integers(0, 2**70))
_HITTERS = st.lists(st.builds(HeavyHitter, _FLOWS, _VALUES, st.sampled_from(list(HitterKind))), max_size=40)


@given(hitters=_HITTERS, algorithm=st.sampled_from(["count_min", "super_spread", "plugin_algo"]))
@settings(max_examples=300, deadline=None)
def test_column_built_files_equal_the_per_line_reference(hitters: list[HeavyHitter], algorithm: str) -> None:
    result = SketchResult("task", algorithm, tuple(hitters))
    expected = {kind: text.encode() for kind, text in hitter_texts(result).items()}
    got = hitter_files(result)
    assert list(got) == list(expected)  # the same files, in the same order
    assert {kind: bytes(text) for kind, text in got.items()} == expected


def test_column_built_files_of_many_tied_hitters_equal_the_reference() -> None:
    rng = np.random.default_rng(7)
    hitters = tuple(
        HeavyHitter(f"10.0.{int(a)}.{int(b)} {int(p)}", int(v), HitterKind(int(k)))
        for a, b, p, v, k in zip(
            *(rng.integers(0, 256, (3, 20_000))),
            rng.integers(0, 50, 20_000),
            rng.integers(0, 2, 20_000),
            strict=True,
        )
    )
    result = SketchResult("task", "count_min", hitters)
    expected = {kind: text.encode() for kind, text in hitter_texts(result).items()}
    assert {kind: bytes(text) for kind, text in hitter_files(result).items()} == expected


def test_lines_kernel_without_room_past_its_text_writes_the_same_bytes() -> None:
    """A buffer exactly as long as the lines: word copies give way to byte copies at its end."""
    from netspectra.storage.text_kernels import hitter_lines_kernel

    flows = ["10.0.0.1 443", "2001:db8::1", "", "a much longer flow text than one word"] * 5
    values = np.array([0, 9, 10, 2**64 - 1] * 5, np.uint64)
    text = np.frombuffer(("\n".join(flows) + "\n").encode(), np.uint8)  # no padding after it
    ends = np.flatnonzero(text == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))
    order = np.arange(len(flows))[::-1].copy()
    expected = "".join(f"{flows[row]} {int(values[row])}\n" for row in order).encode()
    guard = np.full(len(expected) + 16, 0xAA, np.uint8)
    assert hitter_lines_kernel(guard[: len(expected)], order, text, starts, ends, values) == len(expected)
    assert guard[: len(expected)].tobytes() == expected
    assert (guard[len(expected) :] == 0xAA).all()


def test_long_runs_of_ties_are_ordered_by_flow_as_python_orders_them() -> None:
    """Thousands of hitters sharing a few values (runs far longer than the merge's first widths),
    flows with shared prefixes, non-ASCII and NUL characters, duplicates."""
    rng = np.random.default_rng(3)
    alphabet = ["1", "0", ".", " ", "a", "\u00e9", "\u4e2d", "\x00", "\U0001f600"]
    flows = ["".join(rng.choice(alphabet, int(rng.integers(0, 12)))) for _ in range(5000)]
    hitters = tuple(
        HeavyHitter(flow, int(value), HitterKind(int(kind)))
        for flow, value, kind in zip(
            flows + flows[:500], rng.integers(0, 4, 5500), rng.integers(0, 2, 5500), strict=True
        )
    )
    result = SketchResult("task", "count_min", hitters)
    expected = {kind: text.encode() for kind, text in hitter_texts(result).items()}
    assert {kind: bytes(text) for kind, text in hitter_files(result).items()} == expected


async def test_files_formatted_on_several_threads_equal_the_sequential_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pieces cut at value changes, sorted and formatted side by side, make the same files."""
    from netspectra.storage import text_writer

    monkeypatch.setattr(text_writer, "_THREADED_HITTERS", 10)
    rng = np.random.default_rng(4)
    hitters = tuple(
        HeavyHitter(f"10.0.{int(flow) % 7}.{int(flow)}", int(value), HitterKind(int(kind)))
        for flow, value, kind in zip(
            rng.integers(0, 300, 3000), rng.integers(0, 40, 3000), rng.integers(0, 2, 3000), strict=True
        )
    )
    one_value = tuple(HeavyHitter(f"f{index}", 5, HitterKind.COUNT) for index in range(200))  # one run
    for result in (SketchResult("mixed", "count_min", hitters), SketchResult("flat", "count_min", one_value)):
        expected = {kind: text.encode() for kind, text in hitter_texts(result).items()}
        parts = text_writer.hitter_parts(result, threads=3)
        assert {kind: b"".join(pieces) for kind, pieces in parts.items()} == expected
        assert max(len(pieces) for pieces in parts.values()) == (3 if result.task == "mixed" else 1)
        writer = TextWriter(tmp_path / result.task, threads=3)
        await writer.write(Snapshot("sketch", TAKEN_AT_NS, 0, sketches=(result,)))
        directory = tmp_path / result.task / time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(1_700_000_000))
        for kind, text in expected.items():
            assert (directory / result.task / FILE_OF_KIND[kind]).read_bytes() == text
