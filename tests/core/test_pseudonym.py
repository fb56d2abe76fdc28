from __future__ import annotations

import hashlib
import hmac

import pyarrow as pa
import pytest

from edulake.privacy.pseudonym import (
    DEMO_KEY,
    MissingKeyError,
    Pseudonymizer,
    PseudonymKey,
    clean_ids,
)


def test_keyed_hmac_not_plain_sha():
    key = PseudonymKey(b"k" * 32)
    p = Pseudonymizer(key)
    assert p.pseudonym("12345") == hmac.new(b"k" * 32, b"12345", hashlib.sha256).hexdigest()
    assert p.pseudonym("12345") != hashlib.sha256(b"12345").hexdigest()
    assert Pseudonymizer(PseudonymKey(b"j" * 32)).pseudonym("12345") != p.pseudonym("12345")


def test_blank_and_null_stay_null_and_equal_values_equal():
    p = Pseudonymizer(PseudonymKey(b"k" * 32))
    out = p.pseudonymize(clean_ids(pa.array(["7", "", "  ", None, " 7 "]))).to_pylist()
    assert out[1] is None and out[2] is None and out[3] is None
    assert out[0] == out[4] == p.pseudonym("7")


def test_key_resolution_refuses_without_key_unless_demo():
    with pytest.raises(MissingKeyError, match="EDULAKE_HMAC_KEY"):
        PseudonymKey.resolve(None, demo=False)
    demo = PseudonymKey.resolve(None, demo=True)
    assert demo.demo and demo.secret == DEMO_KEY and demo.key_id.startswith("demo-")
    real = PseudonymKey.resolve("s" * 32, demo=True)
    assert not real.demo and not real.key_id.startswith("demo-")
    with pytest.raises(ValueError, match="at least"):
        PseudonymKey(b"short")


def test_key_never_in_repr():
    key = PseudonymKey(b"topsecret-topsecret-1234")
    assert "topsecret" not in repr(key)
    assert "topsecret" not in repr(Pseudonymizer(key))
