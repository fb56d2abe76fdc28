"""Which pseudonymization key a lake's tables were built with, and refusing to mix keys.

The key id (a public fingerprint, see :class:`edulake.privacy.pseudonym.PseudonymKey`) is recorded
with every table: in each stage2p Parquet file (``edulake.key_id``), in each stage2np
lookup row, in the catalog table comment, and once per source in
``_system/keys/<source>.json``. A run whose key differs from the recorded one stops
before writing anything; changing keys is a rotation (:mod:`edulake.privacy.rotation`), which
marks itself in progress so no ordinary run mixes keys half-way.

Demo keys: the public demo key (key ids ``demo-...``) is allowed only on demo sources
(:func:`demo_refusal`), and the key record remembers that a source ever held it
(``demo_history``). Such a lake refuses every real key until that source's data is
rebuilt: its pseudonyms, lookups and records were made with a key anyone can use.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any
from urllib.parse import urlsplit

import pyarrow.parquet as pq

from edulake.core.lake import Lake, Zone
from edulake.privacy.lookup import KeyMismatchError, read_lookup


class KeyRotationInProgress(RuntimeError):
    """A key rotation started and did not finish: finish it before any ordinary run."""


class DemoKeyError(RuntimeError):
    """The public demo key was asked for where it is not allowed, or a lake that held it
    was given a real key."""


DEMO_KEY_PREFIX = "demo-"
# The local LibInsight stand-in's public client id (edulake.demo.libinsight_server).
LIBINSIGHT_DEMO_CLIENT_ID = "edulake-demo-client"


def _is_loopback(base_url: str) -> bool:
    host = urlsplit(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def demo_refusal(source: str, *, base_url: str = "", client_id: str = "") -> str | None:
    """Why demo mode is refused for this source, or None where it is allowed.

    Allowed only on data that is not real by construction: the Clever test data generator
    (``source="testdata"``) and the local LibInsight stand-in (a loopback ``base_url`` and
    the stand-in's demo client id, as the demo runner uses)."""
    if source == "testdata":
        return None
    if source == "libinsight":
        if _is_loopback(base_url) and client_id == LIBINSIGHT_DEMO_CLIENT_ID:
            return None
        return (
            "demo=True is refused for LibInsight except against the local stand-in "
            "(`python -m edulake demo-libinsight`): a lake made with the public demo key "
            "can be reversed by anyone. Configure a key (`python -m edulake keygen`, then "
            "the Secret block or EDULAKE_HMAC_KEY)"
        )
    return (
        f"demo=True is refused for source={source}: only source=testdata may use the public "
        "demo key (a lake made with it can be reversed by anyone). Configure a key "
        "(`python -m edulake keygen`, then the Secret block or EDULAKE_HMAC_KEY)"
    )


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


def demo_history(lake: Lake, source: str) -> bool:
    """Whether the source's data was ever made with the public demo key."""
    if lake.exists(Zone.SYSTEM, key_record_key(source)):
        record = lake.read_json(Zone.SYSTEM, key_record_key(source))
        if record.get("demo_history") or str(record["key_id"]).startswith(DEMO_KEY_PREFIX):
            return True
    recorded = recorded_key_id(lake, source)
    return recorded is not None and recorded.startswith(DEMO_KEY_PREFIX)


def refuse_real_key_on_demo_lake(lake: Lake, source: str, key_id: str) -> None:
    """A lake that ever held the demo key takes no real key until the source is rebuilt."""
    if key_id.startswith(DEMO_KEY_PREFIX) or not demo_history(lake, source):
        return
    raise DemoKeyError(
        f"this lake's {source} data was made with the public demo key, which anyone can use "
        f"to reverse its pseudonyms; a real key is refused here (nothing was written). "
        f"Rebuild it: delete stage2p/{source}/, stage2np/{source}/ and the {source} records "
        f"under _system/ (_system/keys/{source}*.json, _system/ledger/{source}/, "
        f"_system/processed/{source}/, _system/publish/{source}/, _system/{source}/), or use a "
        "fresh lake"
    )


def record_key(lake: Lake, source: str, key_id: str) -> None:
    """Record the source's key id; ``demo_history`` once set is never cleared."""
    history = key_id.startswith(DEMO_KEY_PREFIX) or (
        lake.exists(Zone.SYSTEM, key_record_key(source)) and demo_history(lake, source)
    )
    lake.write_json(
        Zone.SYSTEM,
        key_record_key(source),
        {
            "key_id": key_id,
            "recorded_at": dt.datetime.now(dt.UTC).isoformat(),
            "demo_history": history,
        },
    )


def ensure_key(lake: Lake, source: str, key_id: str, *, record: bool = True) -> None:
    """Refuse a run whose key differs from the lake's; record the key on first use.

    The same check for every source (Clever, LibInsight: ``source`` names its key record);
    call it before the first write. ``record=False`` checks only (erasure, which must not
    claim a key for a source that holds nothing yet)."""
    rotation = rotation_in_progress(lake, source)
    if rotation:
        raise KeyRotationInProgress(
            f"a {source} key rotation from key {rotation['from']} to key {rotation['to']} "
            "started and did not finish: re-run `python -m edulake rotate-key` with the new "
            "key to complete it (it is safe to repeat); ordinary runs are refused meanwhile"
        )
    refuse_real_key_on_demo_lake(lake, source, key_id)
    recorded = recorded_key_id(lake, source)
    if recorded is None:
        if record:
            record_key(lake, source, key_id)
    elif recorded != key_id:
        raise KeyMismatchError(
            f"this lake's {source} tables were pseudonymized with key {recorded}, but this "
            f"run's key is {key_id}: nothing was written. Configure the original key, or "
            "change keys deliberately with `python -m edulake rotate-key` (see "
            "docs/guarantees.md); pseudonyms of two keys are never mixed"
        )
