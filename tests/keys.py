"""The pseudonymization keys the tests use (a plain module: importing it has no side effects,
unlike tests/conftest.py, which clears EDULAKE_* variables - crash runners need theirs).

Each key is 32 random bytes in its text form (hex), as a district would configure it;
``*_TEXT`` is what goes into EDULAKE_HMAC_KEY or a Secret block."""

from __future__ import annotations

from edulake.privacy.pseudonym import PseudonymKey

KEY_TEXT = "9f3c1a7e5b2d4086c1e9a3f7b5d20486e1c9a7f3b5d1e0286c4a9e7f3b1d5c08"
KEY = PseudonymKey.from_text(KEY_TEXT)
# A second key, for rotation and mismatch tests.
OTHER_KEY_TEXT = "3b8e6f1d9a2c4e7f0b5d8a1c6e9f2b4d7a0c3e5f8b1d4a6c9e2f5b7d0a3c6e81"
OTHER_KEY = PseudonymKey.from_text(OTHER_KEY_TEXT)
# The LibInsight tests' key (base64 text form, url-safe alphabet).
LIBINSIGHT_KEY_TEXT = "q7N2xW_p3Lk9Vb-4mRt8Zc1Jy6Hf0Ds5Ge2Ua7Oi3Qw="
LIBINSIGHT_KEY = PseudonymKey.from_text(LIBINSIGHT_KEY_TEXT)
