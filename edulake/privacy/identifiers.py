"""Names that identify a person: never kept in clear in stage2p without an explicit override.

A bundled list matched on the normalized snake_case name (``Entered By`` ->
``entered_by``, ``Student ID`` -> ``student_id``). A spec column or dataset field whose
name is on it may be ``hash``, ``hash-no-lookup``, ``mask`` or ``drop``, but never
``keep`` (nor added by schema drift as an unknown field) unless it says
``allow_identifier: true``: a field that only looks like one (a library's "Name of
database") is then a reviewed, written-down decision, not a default.
"""

from __future__ import annotations

import re
import unicodedata

# Exact names (after normalization).
IDENTIFIER_NAMES = frozenset(
    {
        "sis_id",
        "student_id",
        "student_number",
        "staff_id",
        "teacher_id",
        "user_id",
        "clever_user_id",
        "clever_id",
        "state_id",
        "email",
        "email_address",
        "e_mail",
        "entered_by",
        "name",
        "full_name",
        "first_name",
        "middle_name",
        "last_name",
        "surname",
        "given_name",
        "username",
        "user_name",
        "login",
        "patron",
        "patron_name",
        "patron_id",
        "patron_email",
        "student",
        "student_name",
        "staff",
        "staff_name",
        "staff_member",
        "librarian",
        "librarian_name",
        "phone",
        "phone_number",
        "telephone",
        "address",
        "home_address",
        "ip",
        "ip_address",
        "birth_date",
        "date_of_birth",
        "dob",
        "ssn",
        "library_card",
        "card_number",
        "barcode",
    }
)
# Suffixes: who did something (``entered_by``, ``created_by``, ``assigned_to``), e-mails.
IDENTIFIER_SUFFIXES = ("_by", "_email", "_e_mail", "_email_address", "_username")


def normalize(name: str) -> str:
    """A display label or column name as snake_case ASCII (``Entered By`` -> ``entered_by``)."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)  # camelCase -> camel_case
    return re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()


def is_identifier(name: str) -> bool:
    """Whether ``name`` (a label or column name) is on the bundled list of identifiers."""
    n = normalize(name)
    return n in IDENTIFIER_NAMES or n.endswith(IDENTIFIER_SUFFIXES)


def identifier_names(*names: str) -> list[str]:
    """The names among ``names`` that are identifiers (for error messages: names only)."""
    return [n for n in names if n and is_identifier(n)]
