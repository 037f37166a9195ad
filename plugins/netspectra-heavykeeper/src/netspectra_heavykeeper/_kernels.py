"""HeavyKeeper's kernel, apart from the class so that importing the class does not import numba."""

from __future__ import annotations

import numba as nb
import numpy as np

from netspectra.sketch_api import murmur3_row


@nb.njit(cache=True, nogil=True)
def insert_batch(  # type: ignore[no-untyped-def]
    keys, seeds, fingerprint_seed, fingerprints, counters, decay, top_keys, top_fps, top_counts, used, state
):
    """Count a batch; returns (slots used, random state). Module-level, scalar helpers only."""
    width = np.uint32(counters.shape[1])
    k = top_counts.shape[0]
    key_bytes = keys.shape[1]
    last = np.uint64(decay.shape[0] - 1)
    # the smallest count in the top-k table and its slot (valid once the table is full)
    min_slot = 0
    for slot in range(used):
        if top_counts[slot] < top_counts[min_slot]:
            min_slot = slot
    for i in range(keys.shape[0]):
        fp = murmur3_row(keys, i, fingerprint_seed)
        estimate = np.uint64(0)
        for r in range(seeds.shape[0]):
            bucket = murmur3_row(keys, i, seeds[r]) % width
            held = counters[r, bucket]
            if held == 0 or fingerprints[r, bucket] == fp:
                fingerprints[r, bucket] = fp
                counters[r, bucket] = held + 1
                if held + 1 > estimate:
                    estimate = held + 1
            else:
                state = np.uint64(state * np.uint64(6364136223846793005) + np.uint64(1442695040888963407))
                draw = state >> np.uint64(32)
                if draw < decay[held if held < last else last]:
                    if held == 1:
                        fingerprints[r, bucket] = fp
                        counters[r, bucket] = 1
                        if estimate < 1:
                            estimate = np.uint64(1)
                    else:
                        counters[r, bucket] = held - 1
        # A flow below the table's minimum can neither enter nor raise its own (larger) entry.
        if used == k and estimate <= top_counts[min_slot]:
            continue
        found = -1
        for slot in range(used):
            if top_fps[slot] == fp:
                same = True
                for j in range(key_bytes):
                    if top_keys[slot, j] != keys[i, j]:
                        same = False
                        break
                if same:
                    found = slot
                    break
        if found >= 0:
            if estimate > top_counts[found]:
                top_counts[found] = estimate
        else:
            slot = used if used < k else min_slot
            if used < k:
                used += 1
            for j in range(key_bytes):
                top_keys[slot, j] = keys[i, j]
            top_fps[slot] = fp
            top_counts[slot] = estimate
        min_slot = 0
        for slot in range(used):
            if top_counts[slot] < top_counts[min_slot]:
                min_slot = slot
    return used, state
