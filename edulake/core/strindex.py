"""A growing set of distinct strings, each with a stable code, looked up a whole Arrow array at a time.

Why not a dict: a Python dict lookup holds the GIL and costs about half a microsecond per
value, which at tens of millions of identifiers a run is most of the processing time,
on one core. Why not ``pc.index_in``: it rebuilds its hash table from the whole value
set on every call, so each batch would pay for every identity ever seen.

So the index keeps its own open-addressing hash table in numpy arrays: a 64-bit hash of
each string is computed from the Arrow buffers with vectorized numpy, probed into the
table, and every hit is *verified* by comparing the stored string with the looked-up one
(Arrow ``equal``), so a hash collision can never map a value to another value's code:
colliding values go to a small exact dict instead. Lookups read an immutable snapshot
and take no lock, so threads run them in parallel (numpy and Arrow release the GIL);
inserts, rare once the identities are known, take a lock and publish a new snapshot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_EMPTY = -1
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_MIN_CAPACITY = 1 << 12


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every input bit affects every output bit."""
    h = (h ^ (h >> _S30)) * _M1
    h = (h ^ (h >> _S27)) * _M2
    out: np.ndarray = h ^ (h >> _S31)
    return out


def hash64(values: pa.StringArray) -> np.ndarray:
    """A 64-bit hash of each string (nulls hash as empty strings), from the raw buffers."""
    n = len(values)
    if n == 0:
        return np.zeros(0, np.uint64)
    offsets = np.frombuffer(values.buffers()[1], np.int32, n + 1, values.offset * 4)
    start = offsets[:-1].astype(np.int64)
    lengths = (offsets[1:] - offsets[:-1]).astype(np.int64)
    data_buf = values.buffers()[2]
    raw = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    # 8 readable bytes after every start, so each word is one unaligned load.
    padded = np.zeros(len(raw) + 8, np.uint8)
    padded[: len(raw)] = raw
    words = np.ndarray((len(padded) - 7,), "<u8", padded.data, 0, (1,))
    h = lengths.astype(np.uint64) * _GOLD
    rows: np.ndarray | None = None  # None: all rows
    k = 0
    while True:
        left = lengths - 8 * k if rows is None else lengths[rows] - 8 * k
        active = left > 0
        if not active.any():
            break
        if rows is None and not active.all():
            rows = np.flatnonzero(active)
            left = left[rows]
        elif rows is not None:
            rows, left = rows[active], left[active]
        at = start + 8 * k if rows is None else start[rows] + 8 * k
        w = words[at]
        short = left < 8
        if short.any():
            bits = (np.minimum(left[short], 8) * 8).astype(np.uint64)
            w[short] &= (np.uint64(1) << bits) - np.uint64(1)
        salt = np.uint64((k * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)  # word position
        if rows is None:
            h = _mix((h ^ w) + salt)
        else:
            h[rows] = _mix((h[rows] ^ w) + salt)
        k += 1
    return _mix(h ^ _ONES)


@dataclass(frozen=True)
class _Snapshot:
    """One consistent state of the index (never mutated once published)."""

    slot_hash: np.ndarray  # uint64 per slot
    slot_code: np.ndarray  # int64 per slot, _EMPTY when free
    values: pa.ChunkedArray  # value per code
    payload: pa.ChunkedArray  # payload per code (e.g. the pseudonym)
    overflow: dict[str, int] = field(default_factory=dict)  # values whose hash collided

    @property
    def size(self) -> int:
        return len(self.values)


def _empty_snapshot(payload_type: pa.DataType) -> _Snapshot:
    return _Snapshot(
        np.zeros(_MIN_CAPACITY, np.uint64),
        np.full(_MIN_CAPACITY, _EMPTY, np.int64),
        pa.chunked_array([], pa.string()),
        pa.chunked_array([], payload_type),
    )


def _probe(snap: _Snapshot, hashes: np.ndarray) -> np.ndarray:
    """Code of the first slot holding each hash, or _EMPTY (linear probing)."""
    mask = np.int64(len(snap.slot_code) - 1)
    codes = np.full(len(hashes), _EMPTY, np.int64)
    todo = np.arange(len(hashes))
    h = hashes
    pos = (h & np.uint64(mask)).astype(np.int64)
    while todo.size:
        c = snap.slot_code[pos]
        match = (c != _EMPTY) & (snap.slot_hash[pos] == h)
        codes[todo[match]] = c[match]
        go_on = (c != _EMPTY) & ~match
        todo, h, pos = todo[go_on], h[go_on], (pos[go_on] + 1) & mask
    return codes


def _place(
    slot_hash: np.ndarray, slot_code: np.ndarray, hashes: np.ndarray, codes: np.ndarray
) -> None:
    """Insert (hash, code) pairs into free slots, in place, vectorized."""
    mask = np.int64(len(slot_code) - 1)
    pos = (hashes & np.uint64(mask)).astype(np.int64)
    todo = np.arange(len(hashes))
    while todo.size:
        p = pos[todo]
        free = slot_code[p] == _EMPTY
        # One winner per free slot this round; the others probe on.
        cand = todo[free]
        _, first = np.unique(p[free], return_index=True)
        won = cand[first]
        slot_code[pos[won]] = codes[won]
        slot_hash[pos[won]] = hashes[won]
        keep = np.ones(len(todo), bool)
        keep[np.flatnonzero(free)[first]] = False
        todo = todo[keep]
        busy = slot_code[pos[todo]] != _EMPTY
        pos[todo[busy]] = (pos[todo[busy]] + 1) & mask


class StringIndex:
    """Distinct strings with stable codes 0..n-1 and a payload each, for vectorized lookups.

    ``payload_of`` computes the payload of new values (a list in, a list out); it runs
    once per distinct value over the index's lifetime.
    """

    def __init__(
        self, payload_of: Callable[[list[str]], list[str]], payload_type: pa.DataType
    ) -> None:
        self._payload_of = payload_of
        self._payload_type = payload_type
        self._snap = _empty_snapshot(payload_type)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._snap.size

    def codes(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """The code of every value (null stays null), adding values never seen before."""
        values = _as_string_array(values)
        snap = self._snap
        codes = self._lookup(snap, values)
        valid = _valid_mask(values)
        missing = valid & (codes == _EMPTY)
        if missing.any():
            snap = self._add(values.filter(pa.array(missing)))
            codes[missing] = self._lookup(snap, values.filter(pa.array(missing)))
        return pa.array(codes, pa.int64(), mask=~valid if not valid.all() else None)

    def values_of(self, codes: pa.Array | np.ndarray) -> pa.Array:
        """The strings of codes."""
        return _take(self._snap.values, codes)

    def payload_of(self, codes: pa.Array | np.ndarray) -> pa.Array:
        """The payloads of codes (null codes give null)."""
        return _take(self._snap.payload, codes)

    # -- internals -------------------------------------------------------------------

    @staticmethod
    def _lookup(snap: _Snapshot, values: pa.StringArray) -> np.ndarray:
        """Codes of values already in ``snap`` (verified), _EMPTY for the rest."""
        codes = _probe(snap, hash64(values))
        if values.null_count:
            codes[~_valid_mask(values)] = _EMPTY  # a null is no value (it hashes as "")
        hit = codes != _EMPTY
        if hit.any():
            hit_idx = np.flatnonzero(hit)
            stored = _take(snap.values, codes[hit_idx])
            looked_up = values if len(hit_idx) == len(values) else values.take(hit_idx)
            same = pc.equal(stored, looked_up)
            if not pc.all(same).as_py():  # a hash collision: never trust it
                codes[hit_idx[~same.to_numpy(zero_copy_only=False)]] = _EMPTY
        if snap.overflow:
            for i in np.flatnonzero(codes == _EMPTY).tolist():
                v = values[i].as_py()
                if v is not None and v in snap.overflow:
                    codes[i] = snap.overflow[v]
        return codes

    def _add(self, new: pa.StringArray) -> _Snapshot:
        """Add values (under the lock: another thread may have added some meanwhile)."""
        with self._lock:
            snap = self._snap
            distinct = pc.unique(new)
            still = self._lookup(snap, distinct) == _EMPTY
            distinct = distinct.filter(pa.array(still))
            if len(distinct) == 0:
                return snap
            texts = distinct.to_pylist()
            payload = pa.array(self._payload_of(texts), self._payload_type)
            first = snap.size
            codes = np.arange(first, first + len(texts), dtype=np.int64)
            hashes = hash64(distinct)
            slot_hash, slot_code = snap.slot_hash, snap.slot_code
            if (first + len(texts)) * 2 > len(slot_code):
                slot_hash, slot_code = self._grown(snap, first + len(texts))
            else:
                slot_hash, slot_code = slot_hash.copy(), slot_code.copy()
            # A new value whose hash is already taken (by another value) goes to overflow.
            taken = _probe(_Snapshot(slot_hash, slot_code, snap.values, snap.payload), hashes)
            _, first_of = np.unique(hashes, return_index=True)
            dup_in_batch = np.ones(len(hashes), bool)
            dup_in_batch[first_of] = False
            to_overflow = (taken != _EMPTY) | dup_in_batch
            overflow = dict(snap.overflow)
            if to_overflow.any():
                for i in np.flatnonzero(to_overflow).tolist():
                    overflow[texts[i]] = int(codes[i])
            place = ~to_overflow
            _place(slot_hash, slot_code, hashes[place], codes[place])
            values = _append(snap.values, distinct)
            payloads = _append(snap.payload, payload)
            self._snap = _Snapshot(slot_hash, slot_code, values, payloads, overflow)
            return self._snap

    @staticmethod
    def _grown(snap: _Snapshot, size: int) -> tuple[np.ndarray, np.ndarray]:
        """A table with room for ``size`` entries at most half full, old entries placed."""
        capacity = max(_MIN_CAPACITY, 1 << int(np.ceil(np.log2(size * 2 + 1))))
        slot_hash = np.zeros(capacity, np.uint64)
        slot_code = np.full(capacity, _EMPTY, np.int64)
        used = snap.slot_code != _EMPTY
        _place(slot_hash, slot_code, snap.slot_hash[used], snap.slot_code[used])
        return slot_hash, slot_code


def _append(data: pa.ChunkedArray, new: pa.Array) -> pa.ChunkedArray:
    """``data`` + ``new`` in few chunks: a chunk is merged into the one before it once it
    is a quarter of its size, so there are O(log n) chunks (``take`` stays fast) and each
    value is copied O(log n) times in all."""
    chunks = [*data.chunks, new]
    while len(chunks) > 1 and 4 * len(chunks[-1]) >= len(chunks[-2]):
        chunks[-2:] = [pa.concat_arrays(chunks[-2:])]
    return pa.chunked_array(chunks, data.type)


def _as_string_array(values: pa.Array | pa.ChunkedArray) -> pa.StringArray:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if values.type != pa.string():
        values = pc.cast(values, pa.string())
    return values  # type: ignore[return-value]


def _valid_mask(values: pa.Array) -> np.ndarray:
    if values.null_count == 0:
        return np.ones(len(values), bool)
    return pc.is_valid(values).to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def _take(data: pa.ChunkedArray, codes: pa.Array | np.ndarray) -> pa.Array:
    taken = pc.take(data, codes if isinstance(codes, pa.Array) else pa.array(codes))
    if isinstance(taken, pa.ChunkedArray):
        return taken.combine_chunks()
    return taken
