"""The pseudonymization key the tests use (a plain module: importing it has no side effects,
unlike tests/conftest.py, which clears EDULAKE_* variables - crash runners need theirs)."""

from __future__ import annotations

from edulake.privacy.pseudonym import PseudonymKey

KEY = PseudonymKey(b"test-key-test-key-test-key-1234")
