"""Which pseudonymization key a lake's tables were built with, and refusing to mix keys.

The key id (a public fingerprint, see :class:`edulake.privacy.pseudonym.PseudonymKey`) is recorded
with every table: in each stage2p Parquet file (``edulake.key_id``), in each stage2np
lookup row, in the catalog table comment, and once per source in
``_system/keys/<source>.json``. A run whose key differs from the recorded one stops
before writing anything; changing keys is a rotation (:mod:`edulake.privacy.rotation`), which
marks itself in progress so no ordinary run mixes keys half-way.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow.parquet as pq

from edulake.core.lake import Lake, Zone
from edulake.privacy.lookup import KeyMismatchError, read_lookup


class KeyRotationInProgress(RuntimeError):
    """A key rotation started and did not finish: finish it before any ordinary run."""


def key_record_key(source: str) -> str:
    return f"keys/{source}.json"


def rotation_record_key(source: str) -> str:
    return f"keys/{source}.rotation.json"


def recorded_key_id(lake: Lake, source: str) -> str | None:
    """The key id the source's tables use: the key record, else what the data says."""
    if lake.exists(Zone.SYSTEM, key_record_key(source)):
        return str(lake.read_json(Zone.SYSTEM, key_record_key(source))["key_id"])
    # lakes built before the key record: the lookups, then any stage2p file
    for obj in lake.list(Zone.STAGE2NP, source):
        if obj.key.endswith("_lookup/lookup.parquet"):
            column = obj.key.split("/")[1].removesuffix("_lookup")
            ids = set(read_lookup(lake, source, column)["key_id"].to_pylist())
            if ids:
                return str(sorted(ids)[0])
    for obj in lake.list(Zone.STAGE2P, source):
        if obj.key.endswith(".parquet"):
            with lake.open_input_file(Zone.STAGE2P, obj.key) as f:
                meta = pq.read_schema(f).metadata or {}
            if b"edulake.key_id" in meta:
                return str(meta[b"edulake.key_id"].decode())
    return None


def rotation_in_progress(lake: Lake, source: str) -> dict[str, Any] | None:
    if lake.exists(Zone.SYSTEM, rotation_record_key(source)):
        return dict(lake.read_json(Zone.SYSTEM, rotation_record_key(source)))
    return None


def record_key(lake: Lake, source: str, key_id: str) -> None:
    lake.write_json(
        Zone.SYSTEM,
        key_record_key(source),
        {"key_id": key_id, "recorded_at": dt.datetime.now(dt.UTC).isoformat()},
    )


def ensure_key(lake: Lake, source: str, key_id: str) -> None:
    """Refuse a run whose key differs from the lake's; record the key on first use."""
    rotation = rotation_in_progress(lake, source)
    if rotation:
        raise KeyRotationInProgress(
            f"a {source} key rotation from key {rotation['from']} to key {rotation['to']} "
            "started and did not finish: re-run `python -m edulake rotate-key` with the new "
            "key to complete it (it is safe to repeat); ordinary runs are refused meanwhile"
        )
    recorded = recorded_key_id(lake, source)
    if recorded is None:
        record_key(lake, source, key_id)
    elif recorded != key_id:
        raise KeyMismatchError(
            f"this lake's {source} tables were pseudonymized with key {recorded}, but this "
            f"run's key is {key_id}: nothing was written. Configure the original key, or "
            "change keys deliberately with `python -m edulake rotate-key` (see "
            "docs/guarantees.md); pseudonyms of two keys are never mixed"
        )
