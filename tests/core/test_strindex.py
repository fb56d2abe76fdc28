"""The vectorized pseudonym cache: same answers as plain HMAC, across batches and threads."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pytest

from edulake.core import strindex
from edulake.core.strindex import StringIndex, hash64
from edulake.privacy.lookup import IdentityTracker
from edulake.privacy.pseudonym import Pseudonymizer, PseudonymKey, clean_ids

KEY = PseudonymKey(
    bytes.fromhex("5e0b7c2f9a4d1e8b3c6f0a9d2e5b8c1f4a7d0e3b6c9f2a5d8e1b4c7f0a3d6e92")
)


def plain(value: str | None) -> str | None:
    if value is None:
        return None
    return hmac.new(KEY.secret, value.encode("utf-8"), hashlib.sha256).hexdigest()


def ids(rng: np.random.Generator, n: int) -> list[str]:
    return [f"{x:x}" for x in rng.integers(0, 1 << 40, n)]


def test_encode_matches_plain_hmac_across_batches_with_nulls():
    rng = np.random.default_rng(1)
    pool = ids(rng, 3000) + ["", "é✓ünïcode", "a" * 300, "x,y", "7", "07"]
    p = Pseudonymizer(KEY)
    codes_of: dict[str, int] = {}
    for batch_no in range(6):
        picks = rng.integers(0, len(pool), 2000)
        values = [None if i % 7 == 0 else pool[k] for i, k in enumerate(picks)]
        arr = pa.array(values, pa.string())
        if batch_no % 2:
            arr = arr.slice(3)  # offsets that do not start at zero
            values = values[3:]
        pseudo, codes = p.encode(arr)
        assert pseudo.to_pylist() == [plain(v) for v in values]
        assert codes.null_count == sum(v is None for v in values)
        for v, c in zip(values, codes.to_pylist(), strict=True):
            if v is not None:
                assert codes_of.setdefault(v, c) == c  # a value keeps its code
    assert len(set(codes_of.values())) == len(codes_of)  # one code per distinct value
    seen = np.array(sorted(codes_of.values()))
    assert p.values_of(seen).to_pylist() == sorted(codes_of, key=codes_of.__getitem__)
    assert p.pseudonyms_of(seen).to_pylist() == [
        plain(p.values_of(seen)[i].as_py()) for i in range(len(seen))
    ]


def test_chunked_empty_and_all_null_inputs():
    p = Pseudonymizer(KEY)
    assert p.pseudonymize(pa.array([], pa.string())).to_pylist() == []
    assert p.pseudonymize(pa.array([None, None], pa.string())).to_pylist() == [None, None]
    chunked = pa.chunked_array([["a", None], ["b", "a"]])
    assert p.pseudonymize(chunked).to_pylist() == [plain("a"), None, plain("b"), plain("a")]
    out = p.pseudonymize(clean_ids(pa.array([" 5 ", "  ", "5"]))).to_pylist()
    assert out == [plain("5"), None, plain("5")]


def test_hash_collisions_never_mix_values(monkeypatch):
    # Force every string to the same hash: the index must still answer exactly.
    monkeypatch.setattr(strindex, "hash64", lambda v: np.zeros(len(v), np.uint64))
    idx = StringIndex(lambda xs: [x.upper() for x in xs], pa.string())
    first = idx.codes(pa.array(["a", "b", "a", None, "c"]))
    again = idx.codes(pa.array(["c", "b", "a", "d"]))
    assert first.to_pylist()[0] == first.to_pylist()[2]
    by_value = dict(zip(["a", "b", "a", None, "c"], first.to_pylist(), strict=True))
    assert again.to_pylist()[:3] == [by_value["c"], by_value["b"], by_value["a"]]
    assert idx.payload_of(again).to_pylist() == ["C", "B", "A", "D"]
    assert len(idx) == 4


def test_hash64_depends_on_every_byte_and_length():
    values = ["", "a", "a\x00", "abcdefgh", "abcdefgi", "abcdefghX", "Xbcdefgh", "é"]
    hashes = hash64(pa.array(values))
    assert len(set(hashes.tolist())) == len(values)
    # The same strings at other offsets hash the same.
    shifted = pa.array(["pad", *values]).slice(1)
    assert hash64(shifted).tolist() == hashes.tolist()


def test_growth_keeps_every_code():
    rng = np.random.default_rng(2)
    values = ids(rng, 50_000)
    idx = StringIndex(lambda xs: xs, pa.string())
    codes = idx.codes(pa.array(values)).to_numpy()
    for lo in range(0, 50_000, 7_000):  # many growths on the way
        idx.codes(pa.array(ids(rng, 7_000)))
    assert idx.codes(pa.array(values)).to_numpy().tolist() == codes.tolist()
    assert idx.values_of(codes).to_pylist() == values


def test_threads_share_one_pseudonymizer():
    rng = np.random.default_rng(3)
    pool = ids(rng, 20_000)
    batches = [[pool[k] for k in rng.integers(0, len(pool), 5_000)] for _ in range(16)]
    p = Pseudonymizer(KEY)
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda b: p.encode(pa.array(b)), batches))
    codes: dict[str, int] = {}
    for batch, (pseudo, c) in zip(batches, results, strict=True):
        assert pseudo.to_pylist() == [plain(v) for v in batch]
        for v, code in zip(batch, c.to_pylist(), strict=True):
            assert codes.setdefault(v, code) == code


def test_tracker_codes_agree_with_string_tracking():
    p = Pseudonymizer(KEY)
    days = [dt.date(2022, 1, d) for d in (3, 4, 5)]
    rows = [("a", days[1]), ("b", days[0]), ("a", days[2]), (None, days[0]), ("c", days[1])]
    by_codes = IdentityTracker(p.key_id, p)
    by_strings = IdentityTracker(p.key_id)
    for chunk in (rows[:2], rows[2:]):
        values = pa.array([v for v, _ in chunk], pa.string())
        dates = pa.array([d for _, d in chunk], pa.date32())
        pseudo, codes = p.encode(values)
        local = IdentityTracker(p.key_id, p)
        local.add_codes(codes, dates)
        by_codes.merge(local)
        by_strings.add(values, pseudo, dates)
    single_day = IdentityTracker(p.key_id, p)
    single_day.add_codes(p.encode(pa.array(["a", "a"]))[1], pa.array([days[2]] * 2, pa.date32()))
    by_codes.merge(single_day)

    def rows_of(t: pa.Table) -> list[dict]:
        return sorted(t.to_pylist(), key=lambda r: r["value"])

    assert rows_of(by_codes.table()) == rows_of(by_strings.table())
    assert [r["value"] for r in rows_of(by_codes.table())] == ["a", "b", "c"]
    a = rows_of(by_codes.table())[0]
    assert (a["first_seen"], a["last_seen"], a["pseudonym"]) == (days[1], days[2], plain("a"))


def test_tracker_refuses_codes_without_pseudonymizer():
    with pytest.raises(ValueError, match="pseudonymizer"):
        IdentityTracker("k").add_codes(pa.array([0]), pa.array([dt.date(2022, 1, 3)]))


@pytest.mark.parametrize("secret", [KEY.secret, bytes(reversed(KEY.secret))])
def test_batch_hmac_equals_hmac(secret):
    p = Pseudonymizer(PseudonymKey(secret))
    values = ["1", "", "é✓", "x" * 200]
    expected = [hmac.new(secret, v.encode(), hashlib.sha256).hexdigest() for v in values]
    assert p.pseudonymize(pa.array(values)).to_pylist() == expected
    assert [p.pseudonym(v) for v in values] == expected


def test_trim_memory_releases_only_above_the_limit():
    from edulake.core.memory import trim_memory

    assert trim_memory(limit=1 << 50) is False  # far below: nothing to do
    assert trim_memory(limit=0) is True  # above: hands memory back
