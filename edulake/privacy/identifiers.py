"""Column names that hold personal identifiers, whatever a spec says about them.

The PII audit does not trust the specs: it collects the values of every column whose
name says "identifier" (:func:`is_identifier_name`), beside the columns the specs hash.
A name is normalised first (lower case, spaces and hyphens as ``_``, leading ``_``
dropped: ``_entered_by``, ``Entered By`` and ``entered-by`` are all ``entered_by``) and
matched whole against :data:`IDENTIFIER_PATTERNS` (regular expressions).

Deliberately not identifiers: ``school_name``, ``resource_name``, ``clever_school_id``
and other names of things that are not people (they are published on purpose).
"""

from __future__ import annotations

import re

IDENTIFIER_PATTERNS: tuple[str, ...] = (
    # ids of people
    r"sis_id",
    r"student_(id|number)",
    r"staff_id",
    r"teacher_id",
    r"user_id",
    r"clever_(user_)?id",
    r"state_id",
    r"patron_id",
    # e-mail addresses and user names
    r"e_?mail(_address)?",
    r"[a-z0-9_]*_e_?mail(_address)?",
    r"user_?name",
    r"[a-z0-9_]*_username",
    r"login",
    # who did something: entered_by, created_by, modified_by, ...
    r"entered_by",
    r"[a-z0-9_]*_by",
    # names of people
    r"name",
    r"(first|last|middle|full|given|family|sur|preferred)_?name",
    r"(student|staff|teacher|patron|person|contact|librarian)(_name|_member)?",
    # other personal data
    r"(phone|telephone)(_number)?",
    r"(home_)?address",
    r"ip(_address)?",
    r"birth_date|date_of_birth|dob|ssn",
    r"library_card|card_number|barcode",
)

_COMPILED = tuple(re.compile(p) for p in IDENTIFIER_PATTERNS)


def normalise(name: str) -> str:
    """``_Entered By`` -> ``entered_by``."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower()).lstrip("_")


def is_identifier_name(name: str) -> bool:
    """True when a column called ``name`` holds identifiers of people."""
    n = normalise(name)
    return any(p.fullmatch(n) for p in _COMPILED)
