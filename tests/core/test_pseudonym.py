from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import pyarrow as pa
import pytest

from edulake.privacy.pseudonym import (
    DEMO_KEY,
    KEY_BYTES,
    MissingKeyError,
    Pseudonymizer,
    PseudonymKey,
    WeakKeyError,
    clean_ids,
    decode_key_text,
    generate_key_text,
)

RAW = bytes.fromhex("9f3c1a7e5b2d4086c1e9a3f7b5d20486e1c9a7f3b5d1e0286c4a9e7f3b1d5c08")
RAW2 = bytes.fromhex("3b8e6f1d9a2c4e7f0b5d8a1c6e9f2b4d7a0c3e5f8b1d4a6c9e2f5b7d0a3c6e81")


def test_keyed_hmac_not_plain_sha():
    p = Pseudonymizer(PseudonymKey(RAW))
    assert p.pseudonym("12345") == hmac.new(RAW, b"12345", hashlib.sha256).hexdigest()
    assert p.pseudonym("12345") != hashlib.sha256(b"12345").hexdigest()
    assert Pseudonymizer(PseudonymKey(RAW2)).pseudonym("12345") != p.pseudonym("12345")


def test_blank_and_null_stay_null_and_equal_values_equal():
    p = Pseudonymizer(PseudonymKey(RAW))
    out = p.pseudonymize(clean_ids(pa.array(["7", "", "  ", None, " 7 "]))).to_pylist()
    assert out[1] is None and out[2] is None and out[3] is None
    assert out[0] == out[4] == p.pseudonym("7")


def test_key_resolution_refuses_without_key_unless_demo():
    with pytest.raises(MissingKeyError, match="EDULAKE_HMAC_KEY"):
        PseudonymKey.resolve(None, demo=False)
    demo = PseudonymKey.resolve(None, demo=True)
    assert demo.demo and demo.secret == DEMO_KEY and demo.key_id.startswith("demo-")
    real = PseudonymKey.resolve(RAW.hex(), demo=True)
    assert not real.demo and not real.key_id.startswith("demo-")


def test_key_never_in_repr():
    key = PseudonymKey(RAW)
    for shown in (repr(key), repr(Pseudonymizer(key))):
        assert RAW.hex() not in shown and str(RAW) not in shown


# --- the text form: 32 random bytes as hex or base64, decoded --------------------------


def test_the_key_is_the_decoded_bytes_not_the_text():
    text = RAW.hex()
    assert PseudonymKey.from_text(text).secret == RAW
    # the pseudonym is HMAC with the 32 decoded bytes, not with the 64 characters
    p = Pseudonymizer(PseudonymKey.from_text(text))
    assert p.pseudonym("S1") == hmac.new(RAW, b"S1", hashlib.sha256).hexdigest()
    assert p.pseudonym("S1") != hmac.new(text.encode(), b"S1", hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "text",
    [
        RAW.hex(),
        RAW.hex().upper(),
        f"  {RAW.hex()}\n",  # a key file with a final newline
        base64.b64encode(RAW).decode(),  # 44 characters with padding
        base64.b64encode(RAW).decode().rstrip("="),
        base64.urlsafe_b64encode(RAW).decode(),
        RAW.hex().encode(),  # bytes of the text form
    ],
)
def test_hex_and_base64_forms_decode_to_the_same_key(text):
    assert decode_key_text(text) == RAW
    assert PseudonymKey.resolve(text, demo=False).key_id == PseudonymKey(RAW).key_id


WEAK = {
    "the 16-byte key accepted before": "aaaaaaaaaaaaaaaa",
    "32 ASCII letters": "a" * 32,
    "64 hex of one byte": "aa" * 32,
    "64 hex, a pattern": "0123456789abcdef" * 4,
    "base64 of ASCII text": base64.b64encode(b"test-key-test-key-test-key-12345").decode(),
    "base64 of 32 zero bytes": base64.b64encode(bytes(32)).decode(),
    "hex of 16 random bytes": secrets.token_hex(16),
    "hex of 48 random bytes": secrets.token_hex(48),
    "base64 of 24 random bytes": base64.b64encode(secrets.token_bytes(24)).decode(),
    "a passphrase": "correct horse battery staple and more words",
    "63 hex characters": RAW.hex()[:63],
    "non-ASCII": "ключ" * 11,
}


@pytest.mark.parametrize("what", sorted(WEAK))
def test_weak_or_malformed_keys_are_refused_without_echoing_them(what):
    text = WEAK[what]
    with pytest.raises(WeakKeyError, match="keygen") as info:
        PseudonymKey.resolve(text, demo=False)
    message = str(info.value)
    assert text not in message and text.strip() not in message
    assert (info.value.__cause__ is None and info.value.__context__ is None) or (
        text not in str(info.value.__context__)
    )


def test_raw_key_bytes_are_checked_too():
    with pytest.raises(WeakKeyError, match="32 random bytes"):
        PseudonymKey(b"k" * 16)
    with pytest.raises(WeakKeyError, match="not random enough"):
        PseudonymKey(b"k" * 32)
    with pytest.raises(WeakKeyError, match="not random enough"):
        PseudonymKey(bytes(range(8)) * 4)


def test_generated_keys_are_accepted_and_distinct():
    texts = {generate_key_text() for _ in range(200)}
    assert len(texts) == 200
    for text in texts:
        assert len(text) == 2 * KEY_BYTES and len(PseudonymKey.from_text(text).secret) == 32


# --- the key id is no oracle --------------------------------------------------------------


def test_key_id_is_keyed_hmac_of_a_label():
    expected = hmac.new(RAW, b"edulake key id v1", hashlib.sha256).hexdigest()[:16]
    assert PseudonymKey(RAW).key_id == expected
    assert PseudonymKey(DEMO_KEY, demo=True).key_id.startswith("demo-")
    assert PseudonymKey(RAW).key_id != PseudonymKey(RAW2).key_id


def test_the_old_key_id_oracle_no_longer_matches():
    """The old id was SHA-256(label || key): anyone could test key guesses offline.

    The attack: an analyst sees key_id in a catalog comment and tries candidate keys with
    the old public formula. With a keyed id and a 32-byte random key nothing matches; the
    only way to test a guess is a full 256-bit key, i.e. guessing the key itself."""
    key = PseudonymKey(RAW)
    old_formula = hashlib.sha256(b"edulake-key-id\x00" + RAW).hexdigest()[:16]
    assert key.key_id != old_formula
    # a guess that is not the key never reproduces the id under the new formula
    for guess in (b"a" * 32, RAW[:-1] + bytes([RAW[-1] ^ 1]), RAW.hex().encode()):
        assert hmac.new(guess, b"edulake key id v1", hashlib.sha256).hexdigest()[:16] != (
            key.key_id
        )
